//! Wire formats of `/kith/group/1.0.0` (see `docs/protocols/groups.md`), in kith's JSON
//! frames, and of the announcements on a group's gossip topic.
//!
//! A member asks another member for what it lacks (`Sync`, with the hashes it holds);
//! a device of a person asks another device of the same person which groups it is in
//! (`Groups`); a new member joins with an invite (`Join`). Answers are `Ops` frames (the
//! last one with `more: false`), `Groups`, or `Refused`. Gossip carries only the heads of
//! a log, so nothing about a group is readable on the topic but that it changed.

use kith_core::person::DeviceCert;
use kith_overlay::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::op::Op;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/group/1.0.0");
/// Prefix of the groups' gossip topics: `/kith/group/GROUP_ID`.
pub const TOPIC_PREFIX: &str = "/kith/group/";
/// Largest frame read.
pub const MAX_FRAME: usize = 2 << 20;
/// Most hashes a `Sync` may name.
pub const MAX_HAVE: usize = crate::op::MAX_OPS;
/// Most heads in an announcement.
pub const MAX_HEADS: usize = 16;
/// Operation bytes sent per `Ops` frame (one big operation may exceed it alone).
pub const OPS_PER_FRAME: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Sync {
        group: String,
        have: Vec<String>,
        /// Heads the asker was told of: a member that lacks them yet (it is taking
        /// them itself) waits a moment for them before it answers.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        want: Vec<String>,
    },
    Groups,
    /// From another device of the same person: "my person's groups changed; ask me
    /// which they are" (answered with an empty `Groups`).
    Notify,
    Join {
        group: String,
        invite: String,
        devices: Vec<DeviceCert>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Ops { ops: Vec<Op>, more: bool },
    Groups { groups: Vec<String> },
    Refused { reason: String },
}

/// What a member gossips when its log changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heads {
    pub group: String,
    pub heads: Vec<String>,
}

/// The gossip topic of the group whose genesis hashes to `genesis`.
pub fn topic(genesis: &crate::op::Hash) -> String {
    let t = blake3::keyed_hash(genesis, b"kith-group-topic-v1");
    let hex = t.to_hex();
    format!("{TOPIC_PREFIX}{}", hex.get(..32).unwrap_or_default())
}

/// `ops` in frames of about [`OPS_PER_FRAME`] bytes.
pub fn batches(ops: Vec<Op>) -> Vec<Vec<Op>> {
    let mut out: Vec<Vec<Op>> = vec![Vec::new()];
    let mut bytes = 0;
    for op in ops {
        let n = op.encode().len();
        if bytes + n > OPS_PER_FRAME
            && let Some(last) = out.last()
            && !last.is_empty()
        {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        if let Some(last) = out.last_mut() {
            last.push(op);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_core::frame::read_all;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_frames_are_decoded_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = read_all::<Request>(bytes.clone(), MAX_FRAME);
            let _ = read_all::<Response>(bytes.clone(), MAX_FRAME);
            let _ = serde_json::from_slice::<Heads>(&bytes);
        }
    }
}
