//! Wire formats of `/kith/search/1.0.0` and `/kith/broker/1.0.0` (see
//! `docs/protocols/search.md`): frames of a 4-byte big-endian length and a JSON body. The
//! length is checked against the reader's limit before any of the body is read, and a
//! broker reads bodies only within a byte budget shared by all its streams.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kith_overlay::StreamProtocol;
use serde::de::DeserializeOwned;
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

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("bad frame: {0}")]
    Malformed(String),
}

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
    /// Search your catalogue; with `ttl > 1`, also ask your neighbours (flooding).
    Query {
        qid: u64,
        text: String,
        ttl: u8,
        limit: u32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum SearchResponse {
    Hits {
        hits: Vec<WireHit>,
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

/// A frame as bytes: length, then JSON.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let body = serde_json::to_vec(msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|_| WireError::TooLarge {
        len: body.len(),
        max: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a frame's body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(body).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Writes one frame.
pub async fn write_frame<W, T>(io: &mut W, msg: &T) -> Result<(), WireError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    io.write_all(&encode(msg)?).await?;
    io.flush().await?;
    Ok(())
}

/// Reads a frame's length, checked against `max`; `None` at a clean end of stream.
pub async fn read_len<R: AsyncRead + Unpin>(
    io: &mut R,
    max: usize,
) -> Result<Option<usize>, WireError> {
    let mut len = [0u8; 4];
    match io.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    Ok(Some(len))
}

/// Reads a body of `len` bytes (already checked) and decodes it.
pub async fn read_body<R, T>(io: &mut R, len: usize) -> Result<T, WireError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    decode(&body)
}

/// Reads one frame of at most `max` bytes; `None` at a clean end of stream.
pub async fn read_frame<R, T>(io: &mut R, max: usize) -> Result<Option<T>, WireError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    match read_len(io, max).await? {
        Some(len) => read_body(io, len).await.map(Some),
        None => Ok(None),
    }
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

    fn read_all<T: DeserializeOwned>(bytes: Vec<u8>, max: usize) -> Vec<Result<T, String>> {
        futures::executor::block_on(async move {
            let mut r = futures::io::Cursor::new(bytes);
            let mut out = Vec::new();
            loop {
                match read_frame::<_, T>(&mut r, max).await {
                    Ok(Some(v)) => out.push(Ok(v)),
                    Ok(None) => return out,
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        return out;
                    }
                }
            }
        })
    }

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
            let refused = matches!(r.first(), Some(Err(e)) if e.contains("over the"));
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
