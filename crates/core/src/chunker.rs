//! Content-defined chunking with FastCDC (v2020): a small edit to a big file changes only
//! the chunks around the edit, so identical chunks are stored and sent once.
//!
//! Boundary detection and BLAKE3 hashing run on two threads joined by a bounded channel,
//! so chunking a file costs about as much as hashing it.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

use crate::id::Hash;

/// Smallest chunk, except the last one of a file.
pub const MIN_CHUNK: u32 = 64 * 1024;
/// Target average chunk size.
pub const AVG_CHUNK: u32 = 256 * 1024;
/// Largest chunk. Nothing larger is ever requested or accepted as a chunk.
pub const MAX_CHUNK: u32 = 1024 * 1024;

/// One chunk of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub hash: Hash,
    pub offset: u64,
    pub len: u32,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Splits everything `reader` yields into chunks.
pub fn chunk_reader<R: Read + Send>(reader: R) -> std::io::Result<Vec<ChunkRef>> {
    let (tx, rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(16);
    std::thread::scope(|s| {
        let hasher = s.spawn(move || {
            let mut out = Vec::new();
            for (offset, data) in rx {
                let hash = *blake3::hash(&data).as_bytes();
                // A chunk is at most MAX_CHUNK bytes, so its length fits u32.
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                out.push(ChunkRef { hash, offset, len });
            }
            out
        });
        let mut err = None;
        for chunk in fastcdc::v2020::StreamCDC::new(reader, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
            match chunk {
                Ok(c) => {
                    if tx.send((c.offset, c.data)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    err = Some(match e {
                        fastcdc::v2020::Error::IoError(e) => e,
                        other => std::io::Error::other(other.to_string()),
                    });
                    break;
                }
            }
        }
        drop(tx);
        let chunks = hasher
            .join()
            .map_err(|_| std::io::Error::other("hashing thread panicked"))?;
        match err {
            Some(e) => Err(e),
            None => Ok(chunks),
        }
    })
}

/// Splits a file into chunks.
pub fn chunk_file(path: &Path) -> Result<Vec<ChunkRef>, ChunkError> {
    let io = |source| ChunkError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    chunk_reader(std::io::BufReader::with_capacity(4 << 20, file)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_input_and_hash_right() {
        let d = data(3_000_000, 7);
        let chunks = chunk_reader(&d[..]).unwrap_or_default();
        assert!(chunks.len() > 3, "{}", chunks.len());
        let mut next = 0u64;
        for c in &chunks {
            assert_eq!(c.offset, next);
            assert!(c.len <= MAX_CHUNK);
            let s = &d[c.offset as usize..c.offset as usize + c.len as usize];
            assert_eq!(blake3::hash(s).as_bytes(), &c.hash);
            next += u64::from(c.len);
        }
        assert_eq!(next, d.len() as u64);
    }

    #[test]
    fn small_edit_changes_few_chunks() {
        let a = data(8_000_000, 3);
        let mut b = a.clone();
        for byte in &mut b[4_000_000..4_000_100] {
            *byte = !*byte;
        }
        let ca = chunk_reader(&a[..]).unwrap_or_default();
        let cb = chunk_reader(&b[..]).unwrap_or_default();
        let old: std::collections::HashSet<_> = ca.iter().map(|c| c.hash).collect();
        let changed = cb.iter().filter(|c| !old.contains(&c.hash)).count();
        assert!(changed <= 3, "{changed} of {} chunks changed", cb.len());
        assert!(cb.len() > 10);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunk_reader(&[][..]).map(|c| c.is_empty()).unwrap_or(false));
    }
}
