//! `/kith/vault/1.0.0`: an owner stores, fetches, audits and deletes shares on a holder.
//!
//! One request per stream, owner to holder: a JSON [`Request`] frame (4-byte big-endian
//! length, then JSON; at most [`MAX_FRAME`] bytes); `store` is followed by the share's
//! bytes as one blob frame (4-byte length, then the bytes; at most [`MAX_SHARE`]). The
//! holder answers with one JSON [`Response`] frame; `share` is followed by the share as a
//! blob frame, `proof` by the audited leaves, concatenated, as one blob frame.
//!
//! A share is named by the root of its hash tree ([`crate::tree`]): BLAKE3 over 64 KiB
//! leaves, then over the leaf hashes and the length. A holder checks a share against its
//! name before it keeps it; an owner checks every share and every audited leaf it reads.

use futures::AsyncRead;
use kith_core::frame::FrameError;
use kith_overlay::StreamProtocol;
use serde::{Deserialize, Serialize};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/vault/1.0.0");
/// A JSON frame (a proof carries up to [`MAX_LEAVES`] hashes of 64 hex digits).
pub const MAX_FRAME: usize = 1 << 20;
/// The largest share: a segment of [`crate::codec::SEGMENT`] bytes, sealed, in one share
/// (k = 1), with room for padding.
pub const MAX_SHARE: u64 = (crate::codec::SEGMENT as u64) + (1 << 16);
/// Leaves of a share (MAX_SHARE / 64 KiB, rounded up).
pub const MAX_LEAVES: usize = (MAX_SHARE as usize).div_ceil(crate::tree::LEAF);
/// Leaves audited in one request.
pub const MAX_AUDIT: usize = 8;
/// The DHT key holders that offer space provide.
pub const HOLDERS_KEY: &[u8] = b"/kith/vault/holders";
/// The prefix of the DHT records that point to an owner's index.
pub const ROOT_PREFIX: &str = "/kith/vault/root/";
/// The prefix of the DHT records that point a group's members to an object.
pub const SHARED_PREFIX: &str = "/kith/vault/shared/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "req", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// How much the holder offers, and how much of it this owner may use.
    Offer,
    /// Keep this share (its bytes follow).
    Store { share: String, size: u64 },
    /// Send this share back.
    Fetch { share: String },
    /// Prove possession: the share's leaf hashes and these leaves.
    Audit { share: String, leaves: Vec<u32> },
    /// Drop this share (only the owner that stored it may).
    Delete { share: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "resp", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Offer(Offer),
    Stored,
    /// The share follows as a blob frame.
    Share {
        size: u64,
    },
    /// The leaf hashes (hex), then the asked leaves as one blob frame.
    Proof {
        size: u64,
        hashes: Vec<String>,
    },
    Deleted,
    NotFound,
    Refused {
        reason: String,
    },
    Busy,
}

/// What a holder offers, as one owner sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Bytes this holder lends in all.
    pub offered: u64,
    /// Bytes it holds for everyone.
    pub used: u64,
    /// Bytes it holds for the asking owner.
    pub yours: u64,
    /// Bytes more the asking owner may store: the holder's free space, within its
    /// fairness allowance for this owner.
    pub free_for_you: u64,
}

pub use kith_core::frame::write_blob;

/// Reads a blob frame of exactly `want` bytes, at most `max`; checks before allocating.
pub async fn read_blob<R: AsyncRead + Unpin>(
    io: &mut R,
    want: u64,
    max: u64,
) -> Result<Vec<u8>, FrameError> {
    let b = kith_core::frame::read_blob(io, want.min(max)).await?;
    if b.len() as u64 != want {
        return Err(FrameError::Malformed(format!(
            "a blob of {} bytes where {want} were announced",
            b.len()
        )));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_round_trip() -> Result<(), FrameError> {
        let r = Request::Audit {
            share: "ab".into(),
            leaves: vec![1, 7],
        };
        let bytes = kith_core::frame::encode(&r)?;
        assert_eq!(kith_core::frame::decode::<Request>(&bytes[4..])?, r);
        Ok(())
    }

    #[test]
    fn blobs_over_the_limit_or_not_as_announced_are_refused() {
        let mut io = futures::io::Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        let r = futures::executor::block_on(read_blob(&mut io, 5, 1024));
        assert!(matches!(r, Err(FrameError::TooLarge { .. })));
        let mut io = futures::io::Cursor::new(vec![0, 0, 0, 3, 1, 2, 3]);
        let r = futures::executor::block_on(read_blob(&mut io, 4, 1024));
        assert!(matches!(r, Err(FrameError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = kith_core::frame::decode::<Request>(&b);
            let _ = kith_core::frame::decode::<Response>(&b);
            let mut io = futures::io::Cursor::new(b);
            let _ = futures::executor::block_on(read_blob(&mut io, 10, 64));
        }
    }
}
