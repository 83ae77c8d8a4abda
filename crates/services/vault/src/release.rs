//! Operations that place shares, and releasing what the index does not point to: an
//! [`Op`] records each share in the [`crate::ledger::Ledger`] before it is sent; what
//! an operation does not commit is asked of its holders to drop, at once and again
//! every [`SWEEP_EVERY`] until each holder answers.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kith_core::tasks::Tasks;
use kith_overlay::{Overlay, PeerId};

use crate::Error;
use crate::client::{self, Failure};
use crate::ledger::Ledger;
use crate::state::Inner;

/// How often releases not yet answered are asked again.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Holders asked at once.
const AT_ONCE: usize = 8;

/// An operation that places shares (a put, a publish, a repair). Its shares are released
/// unless it commits.
pub(crate) struct Op {
    inner: Arc<Inner>,
    id: u64,
    open: bool,
}

impl Op {
    pub fn begin(inner: &Arc<Inner>) -> Result<Self, Error> {
        let id = inner.ledger().begin()?;
        Ok(Self {
            inner: inner.clone(),
            id,
            open: true,
        })
    }

    pub fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Records shares about to be sent, before they are.
    pub async fn placing(&self, shares: &[(PeerId, &str)]) -> Result<(), Error> {
        let l = self.inner.ledger();
        l.add(
            self.id,
            shares.iter().map(|(p, s)| (p.to_string(), (*s).to_owned())),
        )?;
        l.persist(self.inner.tasks()).await
    }

    /// The operation is done and `kept` (holder, share) is pointed to now (by the index,
    /// the root record or a group's record): those are no longer pending; anything else
    /// it placed (a store that timed out, then went elsewhere) is released.
    pub async fn commit(mut self, kept: &HashSet<(String, String)>) -> Result<(), Error> {
        self.open = false;
        let l = self.inner.ledger();
        let stray = l.commit(self.id, kept)?;
        let saved = l.persist(self.inner.tasks()).await;
        if stray {
            let inner = self.inner.clone();
            self.inner.tasks().spawn(async move {
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
        if let Err(e) = self.inner.ledger().end(self.id) {
            tracing::warn!(error = %e, "cannot mark an operation's shares for release");
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
            self.inner.tasks().spawn(async move {
                let (released, left) = sweep(&inner).await;
                tracing::info!(released, left, "shares of an unfinished operation released");
            });
        }
    }
}

/// Records these shares for release, and writes the ledger.
async fn record(ledger: &Ledger, tasks: &Tasks, shares: Vec<(String, String)>) {
    let recorded = match ledger.add(0, shares) {
        Ok(()) => ledger.persist(tasks).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "cannot record releases");
    }
}

/// Releases these shares (the index no longer needs them); returns how many holders
/// dropped theirs now. Those that did not answer are asked again later.
pub(crate) async fn release(inner: &Arc<Inner>, shares: Vec<(String, String)>) -> usize {
    if shares.is_empty() {
        return 0;
    }
    let want: HashSet<(String, String)> = shares.iter().cloned().collect();
    record(inner.ledger(), inner.tasks(), shares).await;
    let done = ask(inner.overlay(), due_now(inner, Some(&want)).await).await;
    forget(inner.ledger(), inner.tasks(), &done).await;
    done.len()
}

/// Records these shares for release and asks their holders in the background.
pub(crate) async fn release_later(inner: &Arc<Inner>, shares: Vec<(String, String)>) {
    if shares.is_empty() {
        return;
    }
    record(inner.ledger(), inner.tasks(), shares).await;
    let i = inner.clone();
    inner.tasks().spawn(async move {
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
    let done = ask(inner.overlay(), due).await;
    forget(inner.ledger(), inner.tasks(), &done).await;
    (done.len(), total - done.len())
}

/// Due entries (of `only`, when given), less those the index or the root record points
/// to (forgotten at once: they are not orphans) and those given up on.
async fn due_now(
    inner: &Arc<Inner>,
    only: Option<&HashSet<(String, String)>>,
) -> Vec<(String, String)> {
    let mut keep = inner.catalog().root_shares(inner.tasks()).await;
    let due = inner.catalog().referenced().and_then(|r| {
        keep.extend(r);
        inner.ledger().due(only, &keep)
    });
    let due = match due {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the releases due");
            return Vec::new();
        }
    };
    if !due.drop_now.is_empty() {
        forget(inner.ledger(), inner.tasks(), &due.drop_now).await;
    }
    due.ask
}

/// Asks each holder to delete its shares, holders [`AT_ONCE`] at a time and each
/// holder's shares one after another, until it fails to answer (then the rest of its
/// shares wait for the next sweep: a holder that is gone costs one timeout a sweep).
/// Returns the shares answered for.
async fn ask(overlay: &Overlay, due: Vec<(String, String)>) -> Vec<(String, String)> {
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
                match client::delete(overlay, peer, &share).await {
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
async fn forget(ledger: &Ledger, tasks: &Tasks, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        return;
    }
    let forgotten = match ledger.forget(pairs) {
        Ok(()) => ledger.persist(tasks).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = forgotten {
        tracing::warn!(error = %e, "cannot record releases");
    }
}
