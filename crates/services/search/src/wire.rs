//! Wire formats of `/kith/search/1.0.0` and `/kith/broker/1.0.0` (see
//! `docs/protocols/search.md`): length-prefixed JSON frames, bounded in size.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kith_overlay::StreamProtocol;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::SearchError;

pub const SEARCH_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/search/1.0.0");
pub const BROKER_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/broker/1.0.0");

/// Largest frame on either protocol (a catalogue registration is the biggest).
pub const MAX_FRAME: usize = 4 << 20;
/// Longest file name or path in a catalogue entry.
pub const MAX_NAME_BYTES: usize = 1024;

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

impl Entry {
    /// Checks an entry received from the network.
    pub fn check(&self) -> Result<(), String> {
        if self.id.parse::<kith_core::ContentId>().is_err() {
            return Err(format!("bad content ID {:?}", truncate(&self.id)));
        }
        if self.name.len() > MAX_NAME_BYTES || self.path.len() > MAX_NAME_BYTES {
            return Err("name or path too long".into());
        }
        if self.kind != "file" && self.kind != "dir" {
            return Err(format!("bad kind {:?}", truncate(&self.kind)));
        }
        if self
            .name_key
            .as_ref()
            .is_some_and(|k| k.len() > MAX_NAME_BYTES)
        {
            return Err("name key too long".into());
        }
        Ok(())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
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

/// Writes one frame: a 4-byte big-endian length, then JSON.
pub async fn write_frame<W, T>(io: &mut W, msg: &T) -> Result<(), SearchError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(msg).map_err(|e| SearchError::Protocol(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(SearchError::Protocol(format!(
            "frame of {} bytes is over the {MAX_FRAME}-byte limit",
            body.len()
        )));
    }
    let len = u32::try_from(body.len()).map_err(|e| SearchError::Protocol(e.to_string()))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(&body).await?;
    io.flush().await?;
    Ok(())
}

/// Reads one frame; `None` at a clean end of stream.
pub async fn read_frame<R, T>(io: &mut R, max: usize) -> Result<Option<T>, SearchError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    match io.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(SearchError::Protocol(format!(
            "frame of {len} bytes is over the {max}-byte limit"
        )));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| SearchError::Protocol(format!("bad frame: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_are_bounded() {
        let mut buf = Vec::new();
        let req = SearchRequest::Query {
            qid: 7,
            text: "hello".into(),
            ttl: 3,
            limit: 10,
        };
        write_frame(&mut buf, &req).await.unwrap();
        let mut r = futures::io::Cursor::new(buf.clone());
        let back: SearchRequest = read_frame(&mut r, MAX_FRAME).await.unwrap().unwrap();
        assert!(matches!(back, SearchRequest::Query { qid: 7, ttl: 3, .. }));
        // Clean EOF after the frame.
        assert!(
            read_frame::<_, SearchRequest>(&mut r, MAX_FRAME)
                .await
                .unwrap()
                .is_none()
        );
        // A frame over the limit is refused before it is read.
        let mut r = futures::io::Cursor::new(buf);
        assert!(read_frame::<_, SearchRequest>(&mut r, 4).await.is_err());
        // Garbage is an error, not a panic.
        let mut g = futures::io::Cursor::new(vec![0, 0, 0, 3, b'x', b'y', b'z']);
        assert!(
            read_frame::<_, SearchRequest>(&mut g, MAX_FRAME)
                .await
                .is_err()
        );
    }
}
