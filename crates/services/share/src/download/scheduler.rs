//! Fetches a download's chunks from every provider at once. Each provider gets a few
//! workers (one stream each) that pull chunks from one shared queue, so faster providers
//! take more of the work. The scheduler reacts to one event at a time, one method each: a
//! peer found, a path changed, a chunk landed, a worker ended, the commit tick, the
//! deadline.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kith_core::store::Op;
use kith_overlay::{Path, PeerEvent, PeerId};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::DownloadError;
use super::nearness::Nearness;
use super::plan::Plan;
use super::session::Session;
use super::work::Work;
use super::worker::{self, Exit, Landed, Stop};
use crate::State;

/// Verified chunks recorded per store transaction.
const COMMIT_EVERY: usize = 64;
/// How often landed chunks are recorded even when fewer have landed.
const COMMIT_TICK: Duration = Duration::from_millis(500);

pub(crate) struct Scheduler<'a> {
    s: &'a mut Session,
    shared: worker::Shared,
    landed: mpsc::Receiver<Landed>,
    workers: JoinSet<(PeerId, Exit)>,
    /// Workers running per provider.
    active: HashMap<PeerId, usize>,
    /// Providers worth (re)trying; a peer found again by the finder gets another chance.
    live: HashSet<PeerId>,
    /// Cancelled when a provider is shunned, or its connection moves.
    dropped: HashMap<PeerId, CancellationToken>,
    moved: HashMap<PeerId, CancellationToken>,
    /// Providers whose path (direct or relayed) was looked at.
    relay_checked: HashSet<PeerId>,
    /// Store writes of landed chunks not yet committed.
    ops: Vec<Op>,
    remaining: usize,
    /// Far providers held back while near ones deliver.
    near: Nearness,
    /// Bytes fetched at the last commit tick, and when.
    rate_mark: (u64, tokio::time::Instant),
}

impl<'a> Scheduler<'a> {
    pub fn new(s: &'a mut Session, plan: Arc<Plan>, queue: VecDeque<usize>) -> Self {
        let (landed_tx, landed) = mpsc::channel(64);
        let remaining = queue.len();
        let shared = worker::Shared {
            inner: s.inner.clone(),
            plan,
            work: Arc::new(Mutex::new(Work::new(queue))),
            wake: Arc::new(Notify::new()),
            landed: landed_tx,
        };
        let live = s
            .peers
            .iter()
            .copied()
            .filter(|p| !s.inner.strikes().is_shunned(p))
            .collect();
        Self {
            s,
            shared,
            landed,
            workers: JoinSet::new(),
            active: HashMap::new(),
            live,
            dropped: HashMap::new(),
            moved: HashMap::new(),
            relay_checked: HashSet::new(),
            ops: Vec::new(),
            remaining,
            near: Nearness::new(),
            rate_mark: (0, tokio::time::Instant::now()),
        }
    }

    pub async fn run(mut self) -> Result<(), DownloadError> {
        let mut events = self.s.inner.overlay().peer_events();
        let mut tick = tokio::time::interval(COMMIT_TICK);
        for p in self.live.clone() {
            self.admit(p).await;
        }
        self.release_far();
        while self.remaining > 0 {
            if self.workers.is_empty() {
                self.s.tx.send_if_modified(|p| {
                    std::mem::replace(&mut p.state, State::Waiting) != State::Waiting
                });
            }
            let shutdown = self.s.stop.clone();
            let deadline = self.s.deadline();
            let far_at = self.near.deadline();
            tokio::select! {
                () = shutdown.cancelled() => return self.on_shutdown().await,
                () = tokio::time::sleep_until(deadline) => return Err(self.on_deadline()),
                found = self.s.found.recv(), if self.s.finder_open => self.on_found(found).await,
                () = sleep_until_some(far_at) => self.release_far(),
                e = events.recv() => self.on_peer_event(e),
                Some(l) = self.landed.recv() => self.on_landed(l).await?,
                Some(joined) = self.workers.join_next() => {
                    if let Ok((peer, exit)) = joined {
                        self.on_worker_exit(peer, exit).await?;
                    }
                }
                _ = tick.tick() => {
                    self.measure_rate();
                    self.release_far();
                    self.commit().await?;
                }
            }
        }
        self.workers.abort_all();
        self.commit().await
    }

    /// Starts workers for `peer` up to the streams allowed per provider.
    fn spawn_for(&mut self, peer: PeerId) {
        let per_peer = self.s.inner.config().streams_per_provider.max(1);
        let n = self.active.entry(peer).or_default();
        let dropped = self.dropped.entry(peer).or_default().clone();
        let moved = self.moved.entry(peer).or_default().clone();
        while *n < per_peer {
            *n += 1;
            let stop = Stop {
                dropped: dropped.clone(),
                moved: moved.clone(),
            };
            self.workers
                .spawn(worker::run(self.shared.clone(), peer, stop));
        }
    }

    /// A provider to use: started now, or held in reserve when it is far and near ones
    /// may do.
    async fn admit(&mut self, peer: PeerId) {
        if self.near.hold(self.s, peer).await {
            self.live.remove(&peer);
            self.release_far();
        } else {
            self.live.insert(peer);
            self.spawn_for(peer);
        }
    }

    /// The download's rate since the last tick.
    fn measure_rate(&mut self) {
        let (bytes, at) = self.rate_mark;
        let now = tokio::time::Instant::now();
        let fetched = self.s.tx.borrow().fetched_bytes;
        let secs = now.duration_since(at).as_secs_f64();
        if secs > 0.0 {
            let rate = (fetched.saturating_sub(bytes) as f64 / secs) as u64;
            self.s
                .tx
                .send_if_modified(|p| std::mem::replace(&mut p.rate, rate) != rate);
        }
        self.rate_mark = (fetched, now);
    }

    /// Starts the far providers once they may join.
    fn release_far(&mut self) {
        let live_near = !self.live.is_empty();
        for p in self.near.release(self.s, live_near) {
            self.live.insert(p);
            self.spawn_for(p);
        }
    }

    async fn on_found(&mut self, found: Option<(PeerId, super::finder::Via)>) {
        let Some(found) = found else {
            self.s.finder_open = false;
            return;
        };
        let peer = found.0;
        if !self.s.add_found(found) {
            return;
        }
        self.admit(peer).await;
        self.s.tx.send_if_modified(|p| {
            std::mem::replace(&mut p.state, State::Downloading) != State::Downloading
        });
    }

    /// A provider's relayed connection is being replaced by a direct one: its workers
    /// start over on new streams.
    fn on_peer_event(&mut self, e: Result<PeerEvent, broadcast::error::RecvError>) {
        if let Ok(PeerEvent::PathChanged {
            peer,
            path: Path::Direct,
        }) = e
            && let Some(t) = self.moved.remove(&peer)
        {
            tracing::debug!(%peer, "connection upgraded to direct; moving streams");
            t.cancel();
        }
    }

    async fn on_landed(&mut self, l: Landed) -> Result<(), DownloadError> {
        self.remaining -= 1;
        self.s.progress();
        self.near.landed(&l.peer);
        self.release_far();
        self.s.providers.insert(l.peer);
        let peer = l.peer.to_string();
        if let Some(t) = self.shared.plan.tasks.get(l.index) {
            self.ops.extend(t.locations());
            let (bytes, len) = (t.output_bytes(), u64::from(t.len));
            self.s.tx.send_modify(|p| {
                p.chunks_done += 1;
                p.done_bytes += bytes;
                p.fetched_bytes += len;
                match p.fetched_from.iter_mut().find(|(x, _)| *x == peer) {
                    Some((_, n)) => *n += len,
                    None => p.fetched_from.push((peer.clone(), len)),
                }
                if !p.providers.contains(&peer) {
                    p.providers.push(peer);
                }
            });
        }
        if self.relay_checked.insert(l.peer) {
            self.check_relayed(l.peer).await;
        }
        if self.ops.len() >= COMMIT_EVERY {
            self.commit().await?;
        }
        Ok(())
    }

    /// When every connection to a provider goes through a relay, says so and what the
    /// relay allows.
    async fn check_relayed(&mut self, peer: PeerId) {
        let Ok(Some(info)) = self.s.inner.overlay().peer_info(peer).await else {
            return;
        };
        let Path::Relayed { relay } = info.path else {
            return;
        };
        let limit = info.limit.unwrap_or_default();
        let mut limits = Vec::new();
        if let Some(b) = limit.bytes {
            limits.push(format!("{} MiB", b >> 20));
        }
        if let Some(s) = limit.secs {
            limits.push(format!("{s} s"));
        }
        let notice = format!(
            "{peer} is reachable only through relay {relay} (hole punching failed, e.g. a symmetric NAT); the transfer is relayed{}",
            if limits.is_empty() {
                String::new()
            } else {
                format!(" and capped at {} per circuit", limits.join(" / "))
            }
        );
        tracing::info!(%peer, %notice, "provider reachable only through a relay");
        self.s.tx.send_modify(|p| {
            p.relayed.push(peer.to_string());
            p.notice = Some(notice);
        });
    }

    async fn on_worker_exit(&mut self, peer: PeerId, exit: Exit) -> Result<(), DownloadError> {
        tracing::debug!(%peer, ?exit, "worker ended");
        if let Some(n) = self.active.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
        match exit {
            Exit::Idle | Exit::Moved => {}
            Exit::NotProvider => {
                self.live.remove(&peer);
            }
            Exit::Failed(f) => {
                tracing::debug!(%peer, failure = %f, "provider failing; waiting for it to be found again");
                self.s.failed(peer, &f).await;
                self.live.remove(&peer);
            }
            Exit::Offence(o) => {
                let f = crate::client::Failure::Offence(o);
                if self.s.failed(peer, &f).await {
                    self.drop_provider(peer);
                } else {
                    self.live.remove(&peer);
                }
            }
            Exit::Dropped => self.drop_provider(peer),
            Exit::Fatal(e) => {
                return Err(e);
            }
        }
        // Chunks given back by failed workers need someone to fetch them.
        let queued = self
            .shared
            .work
            .lock()
            .map_err(|_| DownloadError::Invalid("the download's chunk queue failed".into()))?
            .has_work();
        if queued {
            for p in self.live.clone() {
                self.spawn_for(p);
            }
        }
        self.release_far();
        Ok(())
    }

    /// A shunned provider: its other workers stop at once and it is no provider of ours.
    fn drop_provider(&mut self, peer: PeerId) {
        self.live.remove(&peer);
        if let Some(t) = self.dropped.remove(&peer) {
            t.cancel();
        }
        self.s.providers.remove(&peer);
        let gone = peer.to_string();
        self.s
            .tx
            .send_modify(|p| p.providers.retain(|x| *x != gone));
    }

    fn on_deadline(&mut self) -> DownloadError {
        self.workers.abort_all();
        self.s
            .gave_up(&format!("the remaining {} chunks", self.remaining))
    }

    async fn on_shutdown(&mut self) -> Result<(), DownloadError> {
        let _ = self.commit().await;
        Err(DownloadError::Stopped)
    }

    /// Records the chunks that landed (in one transaction, on the blocking pool).
    async fn commit(&mut self) -> Result<(), DownloadError> {
        let ops = std::mem::take(&mut self.ops);
        Ok(self.s.inner.apply(ops).await?)
    }
}

/// Sleeps until `at`; for ever when there is no `at`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
