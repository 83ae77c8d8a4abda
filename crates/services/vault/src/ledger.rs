//! Shares on holders that the index does not point to: those a put, publish or repair is
//! placing right now, and those to release. Each is written to `pending.json` before its
//! store is sent, so whatever ends an operation (an error, a caller that went away, a
//! crash of this node) leaves a record: an operation that commits drops its entries (the
//! index points to its shares now); any other end turns them into releases, and releases
//! are asked of their holders at once and again every [`crate::release::SWEEP_EVERY`] until each holder
//! has answered (`deleted`, or `not_found`). Entries of operations that ran before this
//! node started are released when it starts.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

use kith_core::store::now_secs;
use kith_core::sync::{Poisoned, lock, write_atomic};
use kith_core::tasks::Tasks;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::index::IndexError;

/// Most entries kept (about 150 bytes each on disk): past it the oldest releases are
/// given up, with a warning.
const MAX_ENTRIES: usize = 100_000;
/// A holder that has not answered a release for this long is given up on (its shares
/// were rebuilt elsewhere long ago, if it held any the index needed).
const GIVE_UP: u64 = 30 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    holder: String,
    share: String,
    /// The operation placing it; 0: release it.
    op: u64,
    /// When it was written (seconds since the Unix epoch).
    since: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Book {
    entries: Vec<Entry>,
    /// Operations of this run still going.
    #[serde(skip)]
    running: HashSet<u64>,
}

impl Book {
    fn add(&mut self, e: Entry) {
        if let Some(x) = self
            .entries
            .iter_mut()
            .find(|x| x.holder == e.holder && x.share == e.share)
        {
            // Once to be released, always (unless the index points to it: see `crate::release`).
            if e.op == 0 {
                x.op = 0;
            }
            return;
        }
        if self.entries.len() >= MAX_ENTRIES
            && let Some(oldest) = self.entries.iter().position(|x| x.op == 0)
        {
            let gone = self.entries.remove(oldest);
            tracing::warn!(holder = %gone.holder, share = %gone.share, "too many releases pending: one given up");
        }
        self.entries.push(e);
    }

    /// Entries to release: marked so, or of an operation that is not running.
    fn due(&self) -> Vec<Entry> {
        self.entries
            .iter()
            .filter(|e| e.op == 0 || !self.running.contains(&e.op))
            .cloned()
            .collect()
    }
}

/// The book of shares placed that the index does not point to, and `pending.json`.
/// Its entries and the operations running go together (an entry of an operation that
/// is not running is due), so a poisoned lock is an error ([`lock`]).
pub(crate) struct Ledger {
    path: PathBuf,
    book: Mutex<Book>,
    /// One write of the file at a time, each of the book as it is then.
    writing: tokio::sync::Mutex<()>,
}

impl Ledger {
    /// Loads `pending.json` (or starts empty). Blocking.
    pub fn load(dir: &std::path::Path) -> Self {
        let path = dir.join("pending.json");
        let book: Book = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path,
            book: Mutex::new(book),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn is_empty(&self) -> Result<bool, Poisoned> {
        Ok(lock(&self.book)?.entries.is_empty())
    }

    /// Records shares placed by operation `op` (0: to release).
    pub fn add(
        &self,
        op: u64,
        shares: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), Poisoned> {
        let mut b = lock(&self.book)?;
        let since = now_secs();
        for (holder, share) in shares {
            b.add(Entry {
                holder,
                share,
                op,
                since,
            });
        }
        Ok(())
    }

    /// Writes the book to disk, as it is when the write starts.
    pub async fn persist(&self, tasks: &Tasks) -> Result<(), Error> {
        let _one = self.writing.lock().await;
        let bytes =
            serde_json::to_vec(&*lock(&self.book)?).map_err(IndexError::encode("pending.json"))?;
        let path = self.path.clone();
        tasks
            .blocking(move || {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                write_atomic(&path, &bytes)
            })
            .await?
            .map_err(|e| Error::io(&self.path, e))
    }

    /// A new operation's ID, marked running.
    pub fn begin(&self) -> Result<u64, Poisoned> {
        let mut b = lock(&self.book)?;
        Ok(loop {
            let id: u64 = rand::random();
            if id != 0 && b.running.insert(id) {
                break id;
            }
        })
    }

    /// Operation `op` is done and `kept` is pointed to: those entries go; whatever else
    /// it placed is to be released. True when there is such a stray share.
    pub fn commit(&self, op: u64, kept: &HashSet<(String, String)>) -> Result<bool, Poisoned> {
        let mut b = lock(&self.book)?;
        b.running.remove(&op);
        b.entries
            .retain(|e| e.op != op || !kept.contains(&(e.holder.clone(), e.share.clone())));
        let mut stray = false;
        for e in b.entries.iter_mut().filter(|e| e.op == op) {
            e.op = 0;
            stray = true;
        }
        Ok(stray)
    }

    /// Operation `op` ended without committing: what it placed is to be released.
    pub fn end(&self, op: u64) -> Result<(), Poisoned> {
        let mut b = lock(&self.book)?;
        b.running.remove(&op);
        for e in b.entries.iter_mut().filter(|e| e.op == op) {
            e.op = 0;
        }
        Ok(())
    }

    /// The due entries (of `only`, when given) as (holder, share), split into those to
    /// ask for and those given up on (older than [`GIVE_UP`]) or in `keep`.
    pub fn due(
        &self,
        only: Option<&HashSet<(String, String)>>,
        keep: &HashSet<(String, String)>,
    ) -> Result<Due, Poisoned> {
        let old = now_secs().saturating_sub(GIVE_UP);
        let mut due = Due::default();
        for e in lock(&self.book)?.due() {
            let pair = (e.holder, e.share);
            if only.is_some_and(|o| !o.contains(&pair)) {
                continue;
            }
            if keep.contains(&pair) || e.since < old {
                due.drop_now.push(pair);
            } else {
                due.ask.push(pair);
            }
        }
        Ok(due)
    }

    /// Forgets these due entries (answered, or not orphans after all).
    pub fn forget(&self, pairs: &[(String, String)]) -> Result<(), Poisoned> {
        let gone: HashSet<(&str, &str)> = pairs
            .iter()
            .map(|(h, s)| (h.as_str(), s.as_str()))
            .collect();
        let mut b = lock(&self.book)?;
        let running = std::mem::take(&mut b.running);
        b.entries.retain(|e| {
            let due = e.op == 0 || !running.contains(&e.op);
            !(due && gone.contains(&(e.holder.as_str(), e.share.as_str())))
        });
        b.running = running;
        Ok(())
    }
}

/// Due releases: to ask their holders, and to forget at once.
#[derive(Debug, Default)]
pub(crate) struct Due {
    pub ask: Vec<(String, String)>,
    pub drop_now: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(holder: &str, op: u64) -> Entry {
        Entry {
            holder: holder.into(),
            share: "s".into(),
            op,
            since: 1,
        }
    }

    #[test]
    fn entries_of_operations_not_running_are_due_and_a_release_wins() {
        let mut b = Book::default();
        b.running.insert(7);
        b.add(entry("a", 7));
        b.add(entry("b", 0));
        b.add(entry("c", 9));
        b.add(entry("d", 7));
        b.add(entry("b", 7));
        assert_eq!(b.entries.len(), 4, "one entry per holder and share");
        let due: Vec<String> = b.due().into_iter().map(|e| e.holder).collect();
        assert_eq!(due, vec!["b".to_owned(), "c".to_owned()]);
        b.add(entry("a", 0));
        let due: Vec<String> = b.due().into_iter().map(|e| e.holder).collect();
        assert_eq!(due, vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]);
    }
}
