//! The people service's errors: each keeps its cause (the I/O or decode error and the
//! file, the peer and what it said), and each refusal of this device is a variant.

use std::path::PathBuf;

use kith_core::tasks::TaskError;
use kith_overlay::PeerId;

use crate::protocol::MAX_DEVICES;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This device refuses (the user's input, or what a peer sent).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A peer refused, in its own words.
    #[error("{peer} refused: {reason}")]
    PeerRefused { peer: PeerId, reason: String },
    #[error("{peer} did not answer in time")]
    Timeout { peer: PeerId },
    #[error("{0} is busy (too many streams open); try again shortly")]
    Busy(PeerId),
    #[error(
        "this device does not hold the person key (it stays on the device where the person was made: {0})"
    )]
    NoPersonKey(String),
    #[error(transparent)]
    BadCode(#[from] crate::protocol::BadCode),
    #[error(transparent)]
    Cert(#[from] kith_core::person::CertError),
    #[error(transparent)]
    Seal(#[from] kith_core::seal::SealError),
    #[error("cannot use {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] kith_core::identity::IdentityError),
    #[error("cannot read {}: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("protocol: {0}")]
    Frame(#[from] kith_core::frame::FrameError),
    #[error("network: {0}")]
    Overlay(#[from] kith_overlay::OverlayError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Poisoned(#[from] kith_core::sync::Poisoned),
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Why this device refuses a request, a certificate or a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("{0:?} is not a device ID")]
    NotADeviceId(String),
    #[error("this device holds the person key and cannot revoke itself")]
    RevokeSelf,
    #[error("{0} is not a device of this person (or is revoked already)")]
    NotMyDevice(PeerId),
    #[error("a device of another person")]
    AnotherPerson,
    #[error("at most {MAX_DEVICES} devices")]
    TooManyDevices,
    #[error("this device has no certificate")]
    NoCertificate,
    #[error("{0}")]
    BadCert(kith_core::person::CertError),
    #[error("this device was revoked by its person")]
    Revoked,
    #[error("this node listens on no address")]
    NoAddress,
    #[error("{0} link codes are outstanding; wait for them to expire")]
    TooManyCodes(usize),
    #[error("malformed proof")]
    MalformedProof,
    #[error("malformed seal key")]
    MalformedSeal,
    #[error("unknown, used or expired link code (a code works once, for 10 minutes)")]
    UnknownCode,
    #[error("this device's person has other devices; only a device on its own can be linked")]
    HasOtherDevices,
    #[error("the code names no device")]
    CodeNamesNoDevice,
    #[error("the device closed the stream")]
    Closed,
    #[error("the linking device is no device of the person")]
    LinkerNotOfPerson,
}
