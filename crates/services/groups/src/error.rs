//! The groups service's errors: refusals by reason ([`Denied`]), what a peer answered
//! and who it was, and the underlying error of everything else.

use std::path::PathBuf;

use kith_core::person::{CertError, PersonId};
use kith_core::tasks::TaskError;
use kith_overlay::PeerId;

use crate::denied::Denied;
use crate::log::Rejected;
use crate::op::MAX_NAME;

/// Most groups a device is in.
pub const MAX_GROUPS: usize = 256;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not allowed: who may do what in a group, and what a join or sync must show.
    #[error(transparent)]
    Refused(#[from] Denied),
    /// A peer refused, in its own words.
    #[error("{peer} refused: {reason}")]
    PeerRefused { peer: PeerId, reason: String },
    #[error("{peer} did not answer in time")]
    Timeout { peer: PeerId },
    #[error("no group {0:?} (kith group ls lists yours)")]
    NoSuchGroup(String),
    #[error("several groups are named {0:?}; use the group ID")]
    Ambiguous(String),
    #[error("a group name has 1 to {MAX_NAME} characters")]
    BadName,
    #[error("at most {MAX_GROUPS} groups")]
    TooManyGroups,
    #[error("already in {name} ({group})")]
    AlreadyIn { name: String, group: String },
    #[error("{person} is not a member of {group}")]
    NotInGroup { person: PersonId, group: String },
    #[error("not a person ID: {0}")]
    BadPerson(#[source] CertError),
    /// What a peer answered to a join or a sync is not the group asked for.
    #[error("{peer} answered with no genesis")]
    NoGenesis { peer: PeerId },
    #[error("{peer} answered for another group")]
    OtherGroup { peer: PeerId },
    #[error("the inviting device {peer} did not add this device")]
    NotAdded { peer: PeerId },
    /// This device's own operation was not taken into the log.
    #[error("{0}")]
    Rejected(#[from] Rejected),
    #[error(transparent)]
    Invite(#[from] crate::invite::InviteError),
    #[error(transparent)]
    Op(#[from] crate::op::OpError),
    #[error(transparent)]
    People(#[from] kith_people::Error),
    #[error(transparent)]
    Seal(#[from] kith_core::seal::SealError),
    #[error("protocol: {0}")]
    Frame(#[from] kith_core::frame::FrameError),
    #[error("network: {0}")]
    Overlay(#[from] kith_overlay::OverlayError),
    #[error("cannot use {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Poisoned(#[from] kith_core::sync::Poisoned),
}
