//! What local readers need beyond sharing and fetching: a file's bytes by content ID (for
//! `kith cat` and the HTTP gateway, also while it downloads), the download history, the
//! traffic totals and the rate limits, changed while the node runs.

use kith_core::ContentId;
use kith_core::id::{Hash, Kind};
use kith_core::manifest::{Chunk, Manifest};

use crate::records::{self, DownloadRecord};
use crate::{Error, Share};

/// Deepest folder path the gateway follows.
const MAX_DEPTH: usize = 64;

/// A file to read: its name, size and chunks in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileView {
    pub name: String,
    pub size: u64,
    pub chunks: Vec<Chunk>,
}

/// One chunk of a byte range: the chunk, and which of its bytes are wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub hash: Hash,
    pub skip: usize,
    pub take: usize,
}

impl FileView {
    /// The chunks that hold bytes `start..end` (clamped to the file), in order.
    pub fn spans(&self, start: u64, end: u64) -> Vec<Span> {
        let end = end.min(self.size);
        let mut out = Vec::new();
        let mut at = 0u64;
        for c in &self.chunks {
            let len = u64::from(c.size);
            let (lo, hi) = (at, at + len);
            at = hi;
            if hi <= start {
                continue;
            }
            if lo >= end {
                break;
            }
            let skip = start.saturating_sub(lo);
            let take = end.min(hi) - lo - skip;
            out.push(Span {
                hash: c.hash,
                skip: skip as usize,
                take: take as usize,
            });
        }
        out
    }
}

impl Share {
    /// Sets the upload and download caps (bytes per second, 0: none) from now on.
    pub fn set_limits(&self, upload: u64, download: u64) {
        self.inner.upload_limit().set(upload);
        self.inner.client().limit().set(download);
    }

    /// The upload and download caps now.
    pub fn limits(&self) -> (u64, u64) {
        (
            self.inner.upload_limit().rate(),
            self.inner.client().limit().rate(),
        )
    }

    /// Content bytes sent to and verified from peers since the node started.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.inner.metrics().bytes_sent.get(),
            self.inner.metrics().bytes_received.get(),
        )
    }

    /// Content bytes sent to and received from each peer since the node started.
    pub fn peer_traffic(&self) -> Vec<(kith_overlay::PeerId, u64, u64)> {
        self.inner.traffic().snapshot()
    }

    /// Downloads that ended (done or failed), newest first, at most `most`.
    pub async fn history(&self, most: usize) -> Result<Vec<DownloadRecord>, Error> {
        let store = self.inner.store().clone();
        let mut v = self
            .inner
            .tasks()
            .blocking(move || records::downloads(&store))
            .await??;
        v.retain(|d| !d.state.unfinished());
        v.sort_by_key(|d| std::cmp::Reverse(d.added));
        v.truncate(most);
        Ok(v)
    }

    /// Whether a download of `id` is running now.
    pub fn is_downloading(&self, id: &ContentId) -> bool {
        self.inner.running().is_running(id)
    }

    /// Whether `id` is content only a group's members may see.
    pub fn is_private(&self, id: &ContentId) -> bool {
        self.inner.is_private(id)
    }

    async fn manifest(&self, id: ContentId) -> Result<Manifest, Error> {
        if id.kind() != Kind::Manifest {
            return Err(Error::NotAManifest(id));
        }
        let bytes = self.inner.load_block(id).await?.ok_or(Error::NotHere(id))?;
        Manifest::decode(&bytes).map_err(|_| Error::NotAManifest(id))
    }

    /// The file `id` names, or the file at `path` (`a/b.txt`) inside folder `id`. Its
    /// manifests must be here (shared, fetched, or fetching).
    pub async fn file_view(&self, id: ContentId, path: &str) -> Result<FileView, Error> {
        let mut m = self.manifest(id).await?;
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() > MAX_DEPTH {
            return Err(Error::NoSuchPath(path.to_owned()));
        }
        for part in parts {
            let Manifest::Dir(d) = &m else {
                return Err(Error::NoSuchPath(path.to_owned()));
            };
            let e = d
                .entries
                .iter()
                .find(|e| e.name == part)
                .ok_or_else(|| Error::NoSuchPath(path.to_owned()))?;
            m = self.manifest(e.id).await?;
        }
        match m {
            Manifest::File(f) => Ok(FileView {
                name: f.name,
                size: f.size,
                chunks: f.chunks,
            }),
            Manifest::Dir(_) => Err(Error::IsAFolder(id)),
        }
    }

    /// A chunk of content from the local store, verified; `None` when it is not here (yet).
    pub async fn chunk(&self, hash: Hash) -> Result<Option<Vec<u8>>, Error> {
        self.inner.load_block(ContentId::new(Kind::Raw, hash)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(sizes: &[u32]) -> FileView {
        FileView {
            name: "f".into(),
            size: sizes.iter().map(|s| u64::from(*s)).sum(),
            chunks: sizes
                .iter()
                .enumerate()
                .map(|(i, s)| Chunk {
                    hash: [i as u8; 32],
                    size: *s,
                })
                .collect(),
        }
    }

    #[test]
    fn spans_cover_exactly_the_range() {
        let v = view(&[10, 20, 30]);
        let all = v.spans(0, u64::MAX);
        assert_eq!(all.iter().map(|s| s.take).sum::<usize>(), 60);
        let mid = v.spans(15, 45);
        assert_eq!(
            mid,
            vec![
                Span {
                    hash: [1; 32],
                    skip: 5,
                    take: 15
                },
                Span {
                    hash: [2; 32],
                    skip: 0,
                    take: 15
                },
            ]
        );
        assert_eq!(v.spans(10, 10), vec![]);
        assert_eq!(v.spans(59, 100).iter().map(|s| s.take).sum::<usize>(), 1);
        assert_eq!(v.spans(60, 100), vec![]);
        assert_eq!(view(&[]).spans(0, 10), vec![]);
    }
}
