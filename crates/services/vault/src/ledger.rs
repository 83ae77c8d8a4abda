//! Shares on holders that the index does not point to: those a put, publish or repair is
//! placing right now, and those to release. Each is written to `pending.json` before its
//! store is sent, so whatever ends an operation (an error, a caller that went away, a
//! crash of this node) leaves a record: an operation that commits drops its entries (the
//! index points to its shares now); any other end turns them into releases, and releases
//! are asked of their holders at once and again every [`SWEEP_EVERY`] until each holder
//! has answered (`deleted`, or `not_found`). Entries of operations that ran before this
//! node started are released when it starts.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kith_core::store::now_secs;
use kith_core::sync::{recover, write_atomic};
use kith_overlay::PeerId;
use serde::{Deserialize, Serialize};

use crate::client::{self, Failure};
use crate::index::IndexError;
use crate::state::Inner;
use crate::{Error, publish};

/// How often releases not yet answered are asked again.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Most entries kept (about 150 bytes each on disk): past it the oldest releases are
/// given up, with a warning.
const MAX_ENTRIES: usize = 100_000;
/// A holder that has not answered a release for this long is given up on (its shares
/// were rebuilt elsewhere long ago, if it held any the index needed).
const GIVE_UP: u64 = 30 * 24 * 3600;
/// Holders asked at once.
const AT_ONCE: usize = 8;

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
            // Once to be released, always (unless the index points to it: see `due_now`).
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

    pub fn is_empty(&self) -> bool {
        recover(&self.book).entries.is_empty()
    }

    fn add(&self, op: u64, shares: impl IntoIterator<Item = (String, String)>) {
        let mut b = recover(&self.book);
        let since = now_secs();
        for (holder, share) in shares {
            b.add(Entry {
                holder,
                share,
                op,
                since,
            });
        }
    }

    /// Writes the book to disk, as it is when the write starts.
    async fn persist(&self, inner: &Inner) -> Result<(), Error> {
        let _one = self.writing.lock().await;
        let bytes = serde_json::to_vec(&*recover(&self.book))
            .map_err(IndexError::encode("pending.json"))?;
        let path = self.path.clone();
        inner
            .tasks
            .blocking(move || {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                write_atomic(&path, &bytes)
            })
            .await?
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// An operation that places shares (a put, a publish, a repair). Its shares are released
/// unless it commits.
pub(crate) struct Op {
    inner: Arc<Inner>,
    id: u64,
    open: bool,
}

impl Op {
    pub fn begin(inner: &Arc<Inner>) -> Self {
        let id = loop {
            let id: u64 = rand::random();
            if id != 0 && recover(&inner.ledger.book).running.insert(id) {
                break id;
            }
        };
        Self {
            inner: inner.clone(),
            id,
            open: true,
        }
    }

    pub fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Records shares about to be sent, before they are.
    pub async fn placing(&self, shares: &[(PeerId, &str)]) -> Result<(), Error> {
        let l = &self.inner.ledger;
        l.add(
            self.id,
            shares.iter().map(|(p, s)| (p.to_string(), (*s).to_owned())),
        );
        l.persist(&self.inner).await
    }

    /// The operation is done and `kept` (holder, share) is pointed to now (by the index,
    /// the root record or a group's record): those are no longer pending; anything else
    /// it placed (a store that timed out, then went elsewhere) is released.
    pub async fn commit(mut self, kept: &HashSet<(String, String)>) -> Result<(), Error> {
        self.open = false;
        let l = &self.inner.ledger;
        let stray = {
            let mut b = recover(&l.book);
            b.running.remove(&self.id);
            b.entries.retain(|e| {
                e.op != self.id || !kept.contains(&(e.holder.clone(), e.share.clone()))
            });
            let mut stray = false;
            for e in b.entries.iter_mut().filter(|e| e.op == self.id) {
                e.op = 0;
                stray = true;
            }
            stray
        };
        let saved = l.persist(&self.inner).await;
        if stray {
            let inner = self.inner.clone();
            self.inner.tasks.spawn(async move {
                sweep(&inner).await;
            });
        }
        saved
    }

    /// Releases what the operation placed, now; returns how many shares its holders
    /// dropped and how many are left to ask again.
    pub async fn abandon(mut self) -> (usize, usize) {
        self.open = false;
        self.end();
        sweep(&self.inner).await
    }

    fn end(&self) {
        let mut b = recover(&self.inner.ledger.book);
        b.running.remove(&self.id);
        for e in b.entries.iter_mut().filter(|e| e.op == self.id) {
            e.op = 0;
        }
    }
}

impl Drop for Op {
    /// An operation dropped before it committed or gave up (its caller went away):
    /// what it placed is released in the background.
    fn drop(&mut self) {
        if self.open {
            self.end();
            let inner = self.inner.clone();
            self.inner.tasks.spawn(async move {
                let (released, left) = sweep(&inner).await;
                tracing::info!(released, left, "shares of an unfinished operation released");
            });
        }
    }
}

/// Releases these shares (the index no longer needs them); returns how many holders
/// dropped theirs now. Those that did not answer are asked again later.
pub(crate) async fn release(inner: &Arc<Inner>, shares: Vec<(String, String)>) -> usize {
    if shares.is_empty() {
        return 0;
    }
    let want: HashSet<(String, String)> = shares.iter().cloned().collect();
    inner.ledger.add(0, shares);
    if let Err(e) = inner.ledger.persist(inner).await {
        tracing::warn!(error = %e, "cannot record releases");
    }
    let done = ask(inner, due_now(inner, Some(&want)).await).await;
    forget(inner, &done).await;
    done.len()
}

/// Records these shares for release and asks their holders in the background.
pub(crate) async fn release_later(inner: &Arc<Inner>, shares: Vec<(String, String)>) {
    if shares.is_empty() {
        return;
    }
    inner.ledger.add(0, shares);
    if let Err(e) = inner.ledger.persist(inner).await {
        tracing::warn!(error = %e, "cannot record releases");
    }
    let i = inner.clone();
    inner.tasks.spawn(async move {
        sweep(&i).await;
    });
}

/// Asks the holders of every due release to drop their share; forgets those answered.
/// Returns how many were dropped and how many are left.
pub(crate) async fn sweep(inner: &Arc<Inner>) -> (usize, usize) {
    let due = due_now(inner, None).await;
    if due.is_empty() {
        return (0, 0);
    }
    let total = due.len();
    let done = ask(inner, due).await;
    forget(inner, &done).await;
    (done.len(), total - done.len())
}

/// Due entries (of `only`, when given), less those the index or the root record points
/// to (forgotten at once: they are not orphans) and those given up on.
async fn due_now(
    inner: &Arc<Inner>,
    only: Option<&HashSet<(String, String)>>,
) -> Vec<(String, String)> {
    let mut keep = publish::root_shares(inner).await;
    keep.extend(inner.referenced());
    let old = now_secs().saturating_sub(GIVE_UP);
    let mut drop_now = Vec::new();
    let mut due = Vec::new();
    for e in recover(&inner.ledger.book).due() {
        let pair = (e.holder.clone(), e.share.clone());
        if only.is_some_and(|o| !o.contains(&pair)) {
            continue;
        }
        if keep.contains(&pair) || e.since < old {
            drop_now.push(pair);
        } else {
            due.push(pair);
        }
    }
    if !drop_now.is_empty() {
        forget(inner, &drop_now).await;
    }
    due
}

/// Asks each holder to delete its shares, holders [`AT_ONCE`] at a time and each
/// holder's shares one after another, until it fails to answer (then the rest of its
/// shares wait for the next sweep: a holder that is gone costs one timeout a sweep).
/// Returns the shares answered for.
async fn ask(inner: &Inner, due: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut by_holder: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (holder, share) in due {
        by_holder.entry(holder).or_default().push(share);
    }
    futures::stream::iter(by_holder)
        .map(|(holder, shares)| async move {
            let Ok(peer) = holder.parse::<PeerId>() else {
                // Not a peer: nothing to ask, nothing to keep.
                return shares.into_iter().map(|s| (holder.clone(), s)).collect();
            };
            let mut answered = Vec::new();
            for share in shares {
                match client::delete(&inner.overlay, peer, &share).await {
                    Ok(()) | Err(Failure::NotFound) => answered.push((holder.clone(), share)),
                    Err(_) => break,
                }
            }
            answered
        })
        .buffer_unordered(AT_ONCE)
        .flat_map(futures::stream::iter)
        .collect()
        .await
}

/// Forgets these due entries (answered, or not orphans after all).
async fn forget(inner: &Inner, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        return;
    }
    let gone: HashSet<(&str, &str)> = pairs
        .iter()
        .map(|(h, s)| (h.as_str(), s.as_str()))
        .collect();
    {
        let mut b = recover(&inner.ledger.book);
        let running = std::mem::take(&mut b.running);
        b.entries.retain(|e| {
            let due = e.op == 0 || !running.contains(&e.op);
            !(due && gone.contains(&(e.holder.as_str(), e.share.as_str())))
        });
        b.running = running;
    }
    if let Err(e) = inner.ledger.persist(inner).await {
        tracing::warn!(error = %e, "cannot record releases");
    }
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
