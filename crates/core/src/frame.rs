//! Frames of kith's JSON stream protocols: a 4-byte big-endian length, then that many
//! bytes of JSON. The length is checked against the reader's limit before any of the body
//! is read or allocated.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("bad frame: {0}")]
    Malformed(String),
    #[error("bad frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// A frame as bytes: length, then JSON.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: body.len(),
        max: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a frame's body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

/// Writes one frame.
pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(
    io: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    io.write_all(&encode(msg)?).await?;
    io.flush().await?;
    Ok(())
}

/// Reads a frame's length, checked against `max`; `None` at a clean end of stream.
pub async fn read_len<R: AsyncRead + Unpin>(
    io: &mut R,
    max: usize,
) -> Result<Option<usize>, FrameError> {
    let mut len = [0u8; 4];
    match io.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(Some(len))
}

/// Reads a body of `len` bytes (already checked) and decodes it.
pub async fn read_body<R: AsyncRead + Unpin, T: DeserializeOwned>(
    io: &mut R,
    len: usize,
) -> Result<T, FrameError> {
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    decode(&body)
}

/// Reads one frame of at most `max` bytes; `None` at a clean end of stream.
pub async fn read<R: AsyncRead + Unpin, T: DeserializeOwned>(
    io: &mut R,
    max: usize,
) -> Result<Option<T>, FrameError> {
    match read_len(io, max).await? {
        Some(len) => read_body(io, len).await.map(Some),
        None => Ok(None),
    }
}

/// Writes a blob frame: a 4-byte big-endian length, then the bytes.
pub async fn write_blob<W: AsyncWrite + Unpin>(io: &mut W, b: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(b.len()).map_err(|_| FrameError::TooLarge {
        len: b.len(),
        max: u32::MAX as usize,
    })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(b).await?;
    io.flush().await?;
    Ok(())
}

/// Reads a blob frame of at most `max` bytes; checks the length before allocating.
pub async fn read_blob<R: AsyncRead + Unpin>(io: &mut R, max: u64) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u64::from(u32::from_be_bytes(len));
    if len > max {
        return Err(FrameError::TooLarge {
            len: len as usize,
            max: max as usize,
        });
    }
    let mut b = vec![0u8; len as usize];
    io.read_exact(&mut b).await?;
    Ok(b)
}

/// Every frame of `bytes` until the end or the first error (for property tests).
pub fn read_all<T: DeserializeOwned>(bytes: Vec<u8>, max: usize) -> Vec<Result<T, FrameError>> {
    futures::executor::block_on(async move {
        let mut r = futures::io::Cursor::new(bytes);
        let mut out = Vec::new();
        loop {
            match read::<_, T>(&mut r, max).await {
                Ok(Some(v)) => out.push(Ok(v)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    })
}
