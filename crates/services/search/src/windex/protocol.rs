//! The word index's wire format (`/kith/windex/1.0.0`): requests, answers and their
//! limits; see `docs/protocols/search.md`.

use kith_overlay::StreamProtocol;
use serde::{Deserialize, Serialize};

use super::record::WordRecord;

pub const INDEX_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/windex/1.0.0");

/// The DHT key a word's index lives at.
pub fn word_key(word: &str) -> Vec<u8> {
    format!("/kith/windex/{word}").into_bytes()
}

/// Largest request read.
pub const MAX_REQUEST_FRAME: usize = 1 << 20;
/// Largest answer frame read.
pub const MAX_ANSWER_FRAME: usize = 1 << 20;
/// Most records in one put.
pub const MAX_PUT_RECORDS: usize = 64;
/// Most matching names one query is answered with.
pub const MAX_QUERY_MATCHES: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum IndexRequest {
    /// Keep these records (each signed by its holder).
    Put { records: Vec<WordRecord> },
    /// The records of `word` with a name matching the query `text`.
    Query {
        word: String,
        text: String,
        limit: u32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum IndexResponse {
    /// Of a put: how many were kept (or removed), and the words refused for lack of room.
    Stored {
        stored: u32,
        full: Vec<String>,
    },
    Records {
        records: Vec<WordRecord>,
    },
    /// Of a query: the nodes closest to the word this node knows (the asker goes on to
    /// those closer than the ones it has asked), with their addresses.
    Closer {
        peers: Vec<PeerAddrs>,
    },
    End {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerAddrs {
    pub peer: String,
    pub addrs: Vec<String>,
}

/// Most peers in a `Closer` answer, and addresses per peer.
pub const MAX_CLOSER: usize = 20;
pub const MAX_CLOSER_ADDRS: usize = 4;
