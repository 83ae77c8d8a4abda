//! `/kith/cache/1.0.0`: a source asks a cache node to fetch content ahead of the readers
//! of the cache node's region.
//!
//! One request per stream, source to cache node: a JSON [`Request`] frame (4-byte
//! big-endian length, then JSON; at most [`MAX_FRAME`] bytes). The cache node answers
//! with one JSON [`Response`] frame. Cache nodes (a node started with `--cache`) provide
//! [`NODES_KEY`] in the DHT.

use kith_core::ContentId;
use kith_overlay::StreamProtocol;
use serde::{Deserialize, Serialize};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/cache/1.0.0");
/// The largest frame either way.
pub const MAX_FRAME: usize = 4096;
/// The DHT key cache nodes provide.
pub const NODES_KEY: &[u8] = b"/kith/cache/nodes";
/// The longest region name a request may carry.
pub const MAX_REGION: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "req", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Fetch `id` (`bytes` long, as its manifest says: a claim, which the cache node
    /// checks against the root manifest it reads) ahead: `demand` peers of `region` asked
    /// the source for it.
    Prefetch {
        id: ContentId,
        bytes: u64,
        region: String,
        demand: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "resp", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// Fetching it now.
    Accepted,
    /// Already here (cached, being fetched, or shared by this node).
    Have,
    /// Not taken: the reason.
    Refused { reason: String },
    /// Too many requests at once.
    Busy,
}

/// A request the grammar lets through but the protocol does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    #[error("region name over {MAX_REGION} bytes")]
    RegionTooLong,
}

impl Request {
    /// Checks what the frame's grammar cannot.
    pub fn check(&self) -> Result<(), Invalid> {
        match self {
            Request::Prefetch { region, .. } if region.len() > MAX_REGION => {
                Err(Invalid::RegionTooLong)
            }
            Request::Prefetch { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            for req in kith_core::frame::read_all::<Request>(bytes.clone(), MAX_FRAME).into_iter().flatten() {
                let _ = req.check();
            }
            let _ = kith_core::frame::read_all::<Response>(bytes, MAX_FRAME);
        }

        #[test]
        fn huge_lengths_are_refused(len in (MAX_FRAME as u32 + 1)..u32::MAX) {
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.extend_from_slice(b"{}");
            let got = kith_core::frame::read_all::<Request>(bytes, MAX_FRAME);
            prop_assert!(got.iter().all(Result::is_err));
        }
    }

    #[test]
    fn requests_round_trip_and_long_regions_are_refused() {
        let id = ContentId::manifest(b"x");
        let req = Request::Prefetch {
            id,
            bytes: 10,
            region: "127.0.1.0/24".into(),
            demand: 3,
        };
        let bytes = kith_core::frame::encode(&req).unwrap_or_default();
        let back = kith_core::frame::read_all::<Request>(bytes, MAX_FRAME);
        assert!(matches!(back.first(), Some(Ok(r)) if *r == req));
        assert!(req.check().is_ok());
        let long = Request::Prefetch {
            id,
            bytes: 10,
            region: "x".repeat(MAX_REGION + 1),
            demand: 3,
        };
        assert_eq!(long.check(), Err(Invalid::RegionTooLong));
    }
}
