//! Wire format of `/kith/share/1.0.0` (see `docs/protocols/share.md`).
//!
//! On a new stream the server first sends one status byte: 0 (ready) or 2 (busy, then it
//! closes). The client then sends requests, and may send several before reading; the server
//! answers them in order.
//!
//! ```text
//! greeting = status:u8
//! request  = op:u8 (1 = GET) | id_len:u8 (1..=64) | id: binary CIDv1
//! response = status:u8 | [len:u32 BE | bytes]   (len and bytes only when status = 0)
//! ```

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kith_core::ContentId;
use kith_core::chunker::MAX_CHUNK;
use kith_core::id::{Kind, MAX_CID_BYTES};
use kith_core::manifest::MAX_MANIFEST_BYTES;

use kith_overlay::StreamProtocol;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/share/1.0.0");

pub const OP_GET: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    Busy = 2,
    BadRequest = 3,
    Internal = 4,
}

impl Status {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::Busy,
            3 => Status::BadRequest,
            4 => Status::Internal,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("protocol violation: bad content ID: {0}")]
    BadId(#[source] kith_core::id::IdError),
    #[error("peer answered {0:?}")]
    Status(Status),
    #[error("body of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
}

/// Largest body a response may carry for an ID of this kind.
pub fn max_body(kind: Kind) -> usize {
    match kind {
        Kind::Raw => MAX_CHUNK as usize,
        Kind::Manifest => MAX_MANIFEST_BYTES,
    }
}

pub async fn write_request<S: AsyncWrite + Unpin>(
    s: &mut S,
    id: &ContentId,
) -> Result<(), WireError> {
    let bytes = id.to_bytes();
    let len = u8::try_from(bytes.len()).map_err(|_| WireError::Protocol("id too long".into()))?;
    let mut frame = Vec::with_capacity(2 + bytes.len());
    frame.push(OP_GET);
    frame.push(len);
    frame.extend_from_slice(&bytes);
    s.write_all(&frame).await?;
    s.flush().await?;
    Ok(())
}

/// Reads one request. `Ok(None)` is a clean end of stream.
pub async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Result<Option<ContentId>, WireError> {
    let mut head = [0u8; 2];
    match s.read_exact(&mut head).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let [op, len] = head;
    if op != OP_GET {
        return Err(WireError::Protocol(format!("unknown op {op}")));
    }
    let len = usize::from(len);
    if len == 0 || len > MAX_CID_BYTES {
        return Err(WireError::Protocol(format!("id length {len}")));
    }
    let mut id = vec![0u8; len];
    s.read_exact(&mut id).await?;
    ContentId::from_bytes(&id)
        .map(Some)
        .map_err(WireError::BadId)
}

/// Reads the server's greeting on a new stream.
pub async fn read_greeting<S: AsyncRead + Unpin>(s: &mut S) -> Result<(), WireError> {
    let mut st = [0u8; 1];
    s.read_exact(&mut st).await?;
    match Status::from_u8(st[0]) {
        Some(Status::Ok) => Ok(()),
        Some(other) => Err(WireError::Status(other)),
        None => Err(WireError::Protocol(format!("greeting {}", st[0]))),
    }
}

pub async fn write_status<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: Status,
) -> Result<(), WireError> {
    s.write_all(&[status as u8]).await?;
    s.flush().await?;
    Ok(())
}

/// Writes the header of an OK response; the caller writes `len` body bytes after it.
pub async fn write_ok_header<S: AsyncWrite + Unpin>(
    s: &mut S,
    len: usize,
) -> Result<(), WireError> {
    let len = u32::try_from(len).map_err(|_| WireError::Protocol("body too large".into()))?;
    let mut h = [0u8; 5];
    h[1..].copy_from_slice(&len.to_be_bytes());
    s.write_all(&h).await?;
    Ok(())
}

/// Reads a response's status and, when OK, the body length (checked against `max`).
pub async fn read_response_header<S: AsyncRead + Unpin>(
    s: &mut S,
    max: usize,
) -> Result<usize, WireError> {
    let mut st = [0u8; 1];
    s.read_exact(&mut st).await?;
    let status =
        Status::from_u8(st[0]).ok_or_else(|| WireError::Protocol(format!("status {}", st[0])))?;
    if status != Status::Ok {
        return Err(WireError::Status(status));
    }
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    #[test]
    fn requests_round_trip() -> Result<(), WireError> {
        let id = ContentId::raw(b"chunk");
        let mut buf = Vec::new();
        run(write_request(&mut buf, &id))?;
        let mut r = futures::io::Cursor::new(buf);
        assert_eq!(run(read_request(&mut r))?, Some(id));
        assert_eq!(run(read_request(&mut r))?, None, "clean end of stream");
        Ok(())
    }

    proptest! {
        /// Arbitrary bytes as requests: IDs or errors, never a panic.
        #[test]
        fn arbitrary_requests_are_ids_or_errors(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut r = futures::io::Cursor::new(bytes);
            for _ in 0..64 {
                match run(read_request(&mut r)) {
                    Ok(Some(id)) => prop_assert!(id.to_bytes().len() <= MAX_CID_BYTES),
                    Ok(None) | Err(_) => break,
                }
            }
        }

        /// Arbitrary bytes as a response: the body length is checked against the limit
        /// before anything is read or allocated.
        #[test]
        fn arbitrary_responses_stay_within_the_limit(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = futures::io::Cursor::new(bytes.clone());
            let _ = run(read_greeting(&mut r));
            let mut r = futures::io::Cursor::new(bytes);
            if let Ok(len) = run(read_response_header(&mut r, MAX_CHUNK as usize)) {
                prop_assert!(len <= MAX_CHUNK as usize);
            }
        }

        #[test]
        fn a_claimed_huge_body_is_refused(len in (MAX_CHUNK + 1)..) {
            let mut bytes = vec![0u8];
            bytes.extend_from_slice(&len.to_be_bytes());
            let mut r = futures::io::Cursor::new(bytes);
            let got = run(read_response_header(&mut r, MAX_CHUNK as usize));
            let refused = matches!(got, Err(WireError::TooLarge { .. }));
            prop_assert!(refused);
        }
    }
}
