//! Content-defined chunking with FastCDC (v2020): a small edit to a big file changes only
//! the chunks around the edit, so identical chunks are stored and sent once. The cut
//! points are those of the `fastcdc` crate; [`gear`] computes them faster.
//!
//! Boundary detection and BLAKE3 hashing run on two threads joined by a bounded channel,
//! so chunking a file costs about as much as hashing it.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, mpsc};

use crate::id::Hash;

mod gear;

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

/// kith's chunk sizes' cutter, made once (its gear tables are copied when made).
static CUTTER: std::sync::LazyLock<gear::Cutter> =
    std::sync::LazyLock::new(|| gear::Cutter::new(MIN_CHUNK, AVG_CHUNK, MAX_CHUNK));

/// Bytes read and cut per block.
const BLOCK: usize = 8 << 20;

/// A block of input, in memory mapped for it alone: unmapped (given back to the system)
/// when dropped, so chunking a large file leaves nothing behind in the allocator's heap.
/// Derefs to the bytes filled so far.
struct Block {
    map: memmap2::MmapMut,
    len: usize,
}

impl Block {
    fn new(capacity: usize) -> std::io::Result<Self> {
        Ok(Self {
            map: memmap2::MmapMut::map_anon(capacity)?,
            len: 0,
        })
    }

    /// Appends up to `want` bytes from `reader`; returns true at end of input.
    fn fill<R: Read>(&mut self, reader: &mut R, want: usize) -> std::io::Result<bool> {
        let end = (self.len + want).min(self.map.len());
        while self.len < end {
            let dst = self.map.get_mut(self.len..end).unwrap_or_default();
            match reader.read(dst) {
                Ok(0) => return Ok(true),
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

impl std::ops::Deref for Block {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.map.get(..self.len).unwrap_or_default()
    }
}

impl std::ops::DerefMut for Block {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.map.get_mut(..self.len).unwrap_or_default()
    }
}

/// Chunk boundaries `(offset, length)` of `buf`, computed on two threads.
///
/// A cut depends only on the bytes since the previous cut, so the second half is cut
/// speculatively from its middle while the first half is cut from the start; as soon as
/// the first chain ends a chunk where the speculative chain starts one, both chains agree
/// from there on and the rest of the speculative chain is taken as is. The result is
/// exactly the sequential one.
fn cut_points(buf: &[u8]) -> Vec<(usize, usize)> {
    let cutter: &gear::Cutter = &CUTTER;
    let cuts_from = move |start: usize| {
        let tail = buf.get(start..).unwrap_or_default();
        cutter.chunks(tail).map(move |(o, l)| (start + o, l))
    };
    if buf.len() < 8 * MAX_CHUNK as usize {
        return cuts_from(0).collect();
    }
    let mid = buf.len() / 2;
    std::thread::scope(|s| {
        let speculative = s.spawn(move || cuts_from(mid).collect::<Vec<_>>());
        let mut chain = cuts_from(0);
        let mut out = Vec::new();
        for (o, l) in chain.by_ref() {
            out.push((o, l));
            if o + l >= mid {
                break;
            }
        }
        let Ok(spec) = speculative.join() else {
            out.extend(chain);
            return out;
        };
        // Where each speculative chunk starts.
        let starts: std::collections::HashMap<usize, usize> =
            spec.iter().enumerate().map(|(i, (o, _))| (*o, i)).collect();
        loop {
            let end = out.last().map(|(o, l)| o + l).unwrap_or(0);
            if let Some(&i) = starts.get(&end) {
                out.extend(spec.get(i..).unwrap_or_default());
                return out;
            }
            match chain.next() {
                Some(c) => out.push(c),
                None => return out,
            }
        }
    })
}

/// Splits everything `reader` yields into chunks.
///
/// The input is read in large blocks and cut in place; the chunk that runs into the end
/// of a block is carried into the next one, which gives exactly the cut points of a
/// streaming pass (a cut depends only on the bytes since the previous cut). Hashing runs
/// on a second thread.
pub fn chunk_reader<R: Read + Send>(mut reader: R) -> std::io::Result<Vec<ChunkRef>> {
    // Blocks are read with room in front for the carried-over tail of the previous block,
    // so only that tail (at most one chunk) is ever copied.
    const RESERVE: usize = MAX_CHUNK as usize;
    type Hashing = (Arc<Block>, Vec<(u64, usize, usize)>);
    let (read_tx, read_rx) = mpsc::sync_channel::<std::io::Result<(Block, bool)>>(2);
    let (hash_tx, hash_rx) = mpsc::sync_channel::<Hashing>(2);
    // Hashed blocks go back to the reader, so a file is read through the same few blocks
    // (every block in flight is in one of the channels or a thread's hands).
    let (free_tx, free_rx) = mpsc::sync_channel::<Block>(8);
    std::thread::scope(|s| {
        s.spawn(move || {
            loop {
                let block = match free_rx.try_recv() {
                    Ok(b) => Ok(b),
                    Err(_) => Block::new(RESERVE + BLOCK),
                };
                let r = block.and_then(|mut buf| {
                    buf.len = RESERVE;
                    buf.fill(&mut reader, BLOCK).map(|eof| (buf, eof))
                });
                let stop = !matches!(r, Ok((_, false)));
                if read_tx.send(r).is_err() || stop {
                    return;
                }
            }
        });
        let hasher = s.spawn(move || {
            let mut out = Vec::new();
            for (buf, cuts) in hash_rx {
                for (offset, start, len) in cuts {
                    let data = buf.get(start..start + len).unwrap_or_default();
                    let hash = *blake3::hash(data).as_bytes();
                    // A chunk is at most MAX_CHUNK bytes, so its length fits u32.
                    let len = u32::try_from(len).unwrap_or(u32::MAX);
                    out.push(ChunkRef { hash, offset, len });
                }
                if let Ok(b) = Arc::try_unwrap(buf) {
                    let _ = free_tx.try_send(b);
                }
            }
            out
        });
        let mut result = Ok(());
        let mut carry: Vec<u8> = Vec::new();
        let mut base = 0u64;
        for block in read_rx {
            let (mut buf, eof) = match block {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let from = RESERVE - carry.len();
            if let Some(dst) = buf.get_mut(from..RESERVE) {
                dst.copy_from_slice(&carry);
            }
            let view = buf.get(from..).unwrap_or_default();
            if view.is_empty() {
                break;
            }
            let mut cuts = Vec::new();
            let mut consumed = 0usize;
            for (offset, length) in cut_points(view) {
                let end = offset + length;
                if !eof && end == view.len() {
                    break;
                }
                cuts.push((base + offset as u64, from + offset, length));
                consumed = end;
            }
            carry = view.get(consumed..).unwrap_or_default().to_vec();
            base += consumed as u64;
            if hash_tx.send((Arc::new(buf), cuts)).is_err() {
                break;
            }
            if eof {
                break;
            }
        }
        drop(hash_tx);
        let chunks = hasher
            .join()
            .map_err(|_| std::io::Error::other("hashing thread panicked"))?;
        result.map(|()| chunks)
    })
}

/// Splits a file into chunks.
pub fn chunk_file(path: &Path) -> Result<Vec<ChunkRef>, ChunkError> {
    let io = |source| ChunkError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    chunk_reader(file).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` pseudo-random bytes (xorshift from `seed`).
    pub(super) fn data(len: usize, seed: u64) -> Vec<u8> {
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
    fn block_cutting_matches_a_streaming_pass() {
        let d = data(20_000_000, 9);
        let ours: Vec<(u64, u32)> = chunk_reader(&d[..])
            .unwrap_or_default()
            .iter()
            .map(|c| (c.offset, c.len))
            .collect();
        let stream: Vec<(u64, u32)> =
            fastcdc::v2020::StreamCDC::new(&d[..], MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
                .filter_map(Result::ok)
                .map(|c| (c.offset, c.length as u32))
                .collect();
        assert_eq!(ours, stream);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunk_reader(&[][..]).map(|c| c.is_empty()).unwrap_or(false));
    }
}
