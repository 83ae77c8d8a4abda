//! Wire formats of `/kith/search/1.0.0` and `/kith/broker/1.0.0` (see
//! `docs/protocols/search.md`): frames of a 4-byte big-endian length and a JSON body. The
//! length is checked against the reader's limit before any of the body is read, and a
//! broker reads bodies only within a byte budget shared by all its streams.

use kith_overlay::StreamProtocol;
use serde::{Deserialize, Serialize};

pub const SEARCH_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/search/1.0.0");
pub const BROKER_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/broker/1.0.0");

/// Largest query frame a node reads.
pub const MAX_QUERY_FRAME: usize = 8 * 1024;
/// Largest answer frame (search hits, broker answers) a node reads.
pub const MAX_ANSWER_FRAME: usize = 1 << 20;
/// Largest request a broker reads (a catalogue is registered in frames of at most this).
pub const MAX_BROKER_FRAME: usize = 1 << 20;
/// Longest file name or path in a catalogue entry.
pub const MAX_NAME_BYTES: usize = 1024;

pub use kith_core::frame::{
    FrameError as WireError, decode, encode, read as read_frame, read_body, read_len,
    write as write_frame,
};

/// One item of a catalogue: a shared file or folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Content ID (a manifest).
    pub id: String,
    /// File or folder name.
    pub name: String,
    /// Path inside the share, starting with the share's name.
    pub path: String,
    pub size: u64,
    /// `file` or `dir`.
    pub kind: String,
    /// For a revision of a named document: the name (`PEER_ID/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

impl Entry {
    /// Checks an entry received from the network.
    pub fn check(&self) -> Result<(), WireError> {
        let bad = |m: String| Err(WireError::Malformed(m));
        if self.id.parse::<kith_core::ContentId>().is_err() {
            return bad(format!("bad content ID {:?}", truncate(&self.id)));
        }
        if self.name.len() > MAX_NAME_BYTES || self.path.len() > MAX_NAME_BYTES {
            return bad("name or path too long".into());
        }
        if self.kind != "file" && self.kind != "dir" {
            return bad(format!("bad kind {:?}", truncate(&self.kind)));
        }
        if self
            .name_key
            .as_ref()
            .is_some_and(|k| k.len() > MAX_NAME_BYTES)
        {
            return bad("name key too long".into());
        }
        Ok(())
    }

    /// The approximate size of the entry on the wire (for batching registrations).
    pub fn wire_len(&self) -> usize {
        96 + self.id.len()
            + self.name.len()
            + self.path.len()
            + self.name_key.as_ref().map_or(0, String::len)
    }
}

/// A search answer from one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireHit {
    pub entry: Entry,
    /// The peer that holds it.
    pub peer: String,
    /// Addresses of that peer, when the answerer knows them (the broker does).
    #[serde(default)]
    pub addrs: Vec<String>,
    #[serde(default)]
    pub score: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum SearchRequest {
    /// Search your catalogue; with `ttl > 1`, also ask your neighbours (flooding). With
    /// `group`, search only what is shared with that group (asked of its members only,
    /// never forwarded; a non-member gets an empty answer).
    Query {
        qid: u64,
        text: String,
        ttl: u8,
        limit: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum SearchResponse {
    Hits {
        hits: Vec<WireHit>,
    },
    /// Answers to a group query: a list of hits as JSON, sealed with the group's key
    /// (hex), so that only members can read them whichever way they travel.
    Sealed {
        data: String,
    },
    /// The last frame; `error` says why a query was refused.
    End {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum BrokerRequest {
    /// Replaces everything the sender has registered.
    Register {
        entries: Vec<Entry>,
        addrs: Vec<String>,
    },
    Add {
        entries: Vec<Entry>,
    },
    Remove {
        ids: Vec<String>,
    },
    /// "I am still online."
    Heartbeat,
    Search {
        text: String,
        limit: u32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum BrokerResponse {
    /// `known` is false when the broker holds nothing of the sender (e.g. it restarted):
    /// the sender registers again.
    Ok {
        known: bool,
        ttl_secs: u64,
    },
    Hits {
        hits: Vec<WireHit>,
    },
    Error {
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[tokio::test]
    async fn frames_round_trip_and_are_bounded() -> Result<(), WireError> {
        let req = SearchRequest::Query {
            qid: 7,
            text: "hello".into(),
            ttl: 3,
            limit: 10,
            group: None,
        };
        let buf = encode(&req)?;
        let mut r = futures::io::Cursor::new(buf.clone());
        let back: Option<SearchRequest> = read_frame(&mut r, MAX_QUERY_FRAME).await?;
        assert!(matches!(
            back,
            Some(SearchRequest::Query { qid: 7, ttl: 3, .. })
        ));
        // Clean EOF after the frame.
        assert!(
            read_frame::<_, SearchRequest>(&mut r, MAX_QUERY_FRAME)
                .await?
                .is_none()
        );
        // A frame over the limit is refused before it is read.
        let mut r = futures::io::Cursor::new(buf);
        assert!(matches!(
            read_frame::<_, SearchRequest>(&mut r, 4).await,
            Err(WireError::TooLarge { .. })
        ));
        // Garbage is an error, not a panic.
        let mut g = futures::io::Cursor::new(vec![0, 0, 0, 3, b'x', b'y', b'z']);
        assert!(
            read_frame::<_, SearchRequest>(&mut g, MAX_QUERY_FRAME)
                .await
                .is_err()
        );
        Ok(())
    }

    use kith_core::frame::read_all;

    proptest! {
        /// Arbitrary bytes on either protocol: frames or errors, never a panic, and no
        /// frame over its limit is read.
        #[test]
        fn arbitrary_bytes_decode_to_frames_or_errors(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = read_all::<SearchRequest>(bytes.clone(), MAX_QUERY_FRAME);
            let _ = read_all::<SearchResponse>(bytes.clone(), MAX_ANSWER_FRAME);
            let _ = read_all::<BrokerRequest>(bytes.clone(), MAX_BROKER_FRAME);
            let _ = read_all::<BrokerResponse>(bytes, MAX_ANSWER_FRAME);
        }

        #[test]
        fn huge_lengths_are_refused_before_reading(len in (MAX_BROKER_FRAME as u32 + 1)..) {
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.extend_from_slice(b"{}");
            let r = read_all::<BrokerRequest>(bytes, MAX_BROKER_FRAME);
            let refused = matches!(r.first(), Some(Err(kith_core::frame::FrameError::TooLarge { .. })));
            prop_assert!(refused);
        }

        #[test]
        fn arbitrary_entries_are_checked_not_trusted(
            id in ".{0,80}", name in ".{0,1100}", kind in ".{0,8}", size in any::<u64>(),
        ) {
            let e = Entry { id, path: name.clone(), name, size, kind, name_key: None, revision: None };
            let _ = e.check();
        }
    }
}
