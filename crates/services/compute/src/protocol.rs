//! `/kith/compute/1.0.0`: a volunteer asks a master for work and returns results.
//!
//! One request per stream, volunteer to master: a JSON [`Request`] frame (4-byte
//! big-endian length, then JSON; at most [`MAX_FRAME`] bytes), then for `result` the
//! output as one blob frame (4-byte length, then the bytes; at most the job's output
//! limit). The master answers with one JSON [`Response`] frame; `units` is followed by one
//! blob frame for every unit whose input travels inline (those of at most
//! [`INLINE_MAX`] bytes), in order. Larger inputs and the module are content in the
//! store, fetched by their content IDs (share), so they move with transfer and swarm.
//! Every blob is checked against the BLAKE3 hash its descriptor names.

use kith_overlay::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::sandbox::Fault;
use crate::spec::Limits;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/compute/1.0.0");
/// A JSON frame.
pub const MAX_FRAME: usize = 256 << 10;
/// Inputs up to this size travel inline.
pub const INLINE_MAX: u64 = 256 << 10;
/// Units asked for (and handed out) at once.
pub const MAX_SLOTS: u8 = 32;
/// The DHT key masters of public jobs provide.
pub const JOBS_KEY: &[u8] = b"/kith/compute/jobs";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "req", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Up to `slots` units the volunteer can run within `memory` bytes each; of one
    /// group's jobs only, when `group` is set.
    Work {
        slots: u8,
        memory: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    /// What became of a unit this volunteer was given; for `done`, its output follows.
    Result {
        job: String,
        unit: String,
        outcome: Outcome,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// The output's BLAKE3 hash (hex) and size.
    Done { hash: String, size: u64 },
    /// The unit faulted in the sandbox.
    Failed { fault: Fault },
}

/// A unit handed to a volunteer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub job: String,
    pub name: String,
    /// The module: BLAKE3 hash (hex), size and content ID in the store.
    pub module: Blob,
    pub input: Blob,
    pub limits: Limits,
    /// Seconds since the Unix epoch by which the master wants the result.
    pub deadline: u64,
}

/// Bytes named by their BLAKE3 hash; `content` is the content ID to fetch them by, or
/// `None` when they travel inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blob {
    pub hash: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// How a master scores a volunteer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Standing {
    /// Results that agreed with the quorum.
    pub agreed: u64,
    /// Results that disagreed with it.
    pub faults: u64,
    /// Agreements since the last fault.
    pub streak: u64,
    /// 0 to 1: (agreed + 1) / (agreed + 4 × faults + 1).
    pub reputation: f64,
    /// No more work for this volunteer.
    pub dropped: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resp", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Units {
        units: Vec<Unit>,
        standing: Standing,
    },
    NoWork {
        /// Seconds before asking again is worth it.
        retry_after: u64,
        reason: String,
        standing: Standing,
    },
    Accepted {
        standing: Standing,
    },
    Refused {
        reason: String,
    },
    Busy,
}

pub use kith_core::frame::{read_blob, write_blob};

/// BLAKE3 of `b`, as hex.
pub fn hash(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_core::frame::FrameError;
    use proptest::prelude::*;

    #[test]
    fn requests_round_trip() -> Result<(), FrameError> {
        let r = Request::Result {
            job: "j1".into(),
            unit: "u07".into(),
            outcome: Outcome::Failed {
                fault: Fault::OutOfFuel,
            },
        };
        let bytes = kith_core::frame::encode(&r)?;
        assert_eq!(kith_core::frame::decode::<Request>(&bytes[4..])?, r);
        Ok(())
    }

    #[test]
    fn blobs_over_the_limit_are_refused_before_reading() {
        let mut io = futures::io::Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        let r = futures::executor::block_on(read_blob(&mut io, 1024));
        assert!(matches!(r, Err(FrameError::TooLarge { .. })));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = kith_core::frame::decode::<Request>(&b);
            let _ = kith_core::frame::decode::<Response>(&b);
            let mut io = futures::io::Cursor::new(b);
            let _ = futures::executor::block_on(read_blob(&mut io, 64));
        }
    }
}
