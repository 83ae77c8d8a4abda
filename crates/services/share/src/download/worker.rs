//! One stream to one provider, pulling chunks from the download's shared queue. It keeps
//! up to [`PIPELINE`] requests outstanding so the provider always has the next chunk to
//! send; answers come back in order. Each chunk is verified, then written by the blocking
//! pool; anything the provider does wrong ends the worker and goes to the scheduler.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kith_core::ContentId;
use kith_core::id::Kind;
use kith_overlay::{PeerId, Stream};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::DownloadError;
use super::plan::{Plan, Writer};
use super::work::Work;
use crate::client::{self, Failure};
use crate::state::Inner;
use crate::strikes::Offence;

/// Requests a worker keeps outstanding on its stream.
const PIPELINE: usize = 4;
/// Consecutive failures (lost streams, unreachable) after which a worker gives up.
const MAX_FAILURES: u32 = 3;
/// How long an idle worker waits for chunks to be given back before looking again.
const IDLE_WAIT: Duration = Duration::from_millis(250);

/// Why a worker stopped.
#[derive(Debug)]
pub(crate) enum Exit {
    /// Nothing left to fetch.
    Idle,
    /// The peer does not have the content.
    NotProvider,
    /// The provider lied or broke the protocol.
    Offence(Offence),
    /// The provider kept failing (gone, unreachable, streams lost): the last failure.
    Failed(Failure),
    /// Writing to disk failed: the download cannot go on.
    Fatal(DownloadError),
    /// The connection to the provider is being replaced; start again on a new stream.
    Moved,
    /// The provider was shunned (by another worker or download).
    Dropped,
}

/// A chunk that landed, and who sent it.
pub(crate) struct Landed {
    pub index: usize,
    pub peer: PeerId,
}

/// What every worker of a download shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub inner: Arc<Inner>,
    pub plan: Arc<Plan>,
    pub work: Arc<Mutex<Work>>,
    pub wake: Arc<Notify>,
    pub landed: mpsc::Sender<Landed>,
}

/// Why a worker stops early: its provider was dropped, or its connection is moving.
pub(crate) struct Stop {
    pub dropped: CancellationToken,
    pub moved: CancellationToken,
}

/// The queue broke: a task panicked while holding it (which stops the node).
fn broken() -> Exit {
    Exit::Fatal(DownloadError::Broken)
}

impl Shared {
    /// The shared queue; a poisoned lock ends the worker.
    fn work(&self) -> Result<std::sync::MutexGuard<'_, Work>, Exit> {
        self.work.lock().map_err(|_| broken())
    }

    /// Gives every chunk requested on a lost stream back to the queue, and wakes idle
    /// workers.
    fn give_back_all(&self, pending: &mut VecDeque<usize>) {
        if pending.is_empty() {
            return;
        }
        // A broken queue ends the download anyway; nothing to give back to.
        if let Ok(mut w) = self.work() {
            for i in pending.drain(..) {
                w.give_back(i);
            }
        }
        self.wake.notify_waiters();
    }

    fn cid(&self, i: usize) -> Option<ContentId> {
        self.plan
            .tasks
            .get(i)
            .map(|t| ContentId::new(Kind::Raw, t.hash))
    }
}

pub(crate) async fn run(shared: Shared, peer: PeerId, stop: Stop) -> (PeerId, Exit) {
    let mut pending: VecDeque<usize> = VecDeque::new();
    // A provider dropped for misbehaving takes its other streams with it at once, so the
    // chunks they were waiting for go back to the queue instead of waiting for a timeout.
    let exit = tokio::select! {
        e = fetch_loop(&shared, peer, &mut pending) => e,
        () = stop.dropped.cancelled() => Exit::Dropped,
        // The peer's relayed connection is being replaced by a direct one: this stream
        // may be on it, so the worker starts over on a new stream.
        () = stop.moved.cancelled() => Exit::Moved,
    };
    shared.give_back_all(&mut pending);
    (peer, exit)
}

/// Keeps the pipeline full; returns the chunk whose answer comes next.
async fn fill(
    shared: &Shared,
    s: &mut Stream,
    pending: &mut VecDeque<usize>,
) -> Result<Result<Option<usize>, Failure>, Exit> {
    while pending.len() < PIPELINE {
        let Some(i) = shared.work()?.take() else {
            break;
        };
        pending.push_back(i);
        if let Some(id) = shared.cid(i)
            && let Err(f) = client::send_request(s, &id).await
        {
            return Ok(Err(f));
        }
    }
    Ok(Ok(pending.front().copied()))
}

/// What a worker keeps for its whole life: one receive buffer, which grows to the largest
/// chunk and is not zeroed again, and the file it writes to.
#[derive(Default)]
struct Landing {
    buf: Vec<u8>,
    writer: Writer,
}

/// Writes a landed chunk (the first `len` bytes of the buffer) and tells the scheduler;
/// keeps the buffer and the open file for the next chunk. `Err` ends the worker.
async fn land(
    shared: &Shared,
    peer: PeerId,
    i: usize,
    landing: &mut Landing,
    len: usize,
) -> Result<(), Exit> {
    let inner = &shared.inner;
    inner.metrics().chunks_fetched.inc();
    inner.metrics().bytes_received.inc_by(len as u64);
    inner.traffic().count(peer, 0, len as u64);
    let targets = shared
        .plan
        .tasks
        .get(i)
        .map(|t| t.targets.clone())
        .unwrap_or_default();
    let mut l = std::mem::take(landing);
    let written = inner
        .tasks()
        .blocking(move || {
            let r = l
                .writer
                .write(&targets, l.buf.get(..len).unwrap_or_default());
            (r, l)
        })
        .await
        .map(|(r, l)| {
            *landing = l;
            r
        });
    let failed = match written {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(DownloadError::from(e)),
    };
    if let Some(e) = failed {
        shared.work()?.give_back(i);
        shared.wake.notify_waiters();
        return Err(Exit::Fatal(e));
    }
    let (first, finished) = {
        let mut w = shared.work()?;
        (w.land(i), w.finished())
    };
    if finished {
        shared.wake.notify_waiters();
    }
    if first && shared.landed.send(Landed { index: i, peer }).await.is_err() {
        return Err(Exit::Idle);
    }
    Ok(())
}

async fn fetch_loop(shared: &Shared, peer: PeerId, pending: &mut VecDeque<usize>) -> Exit {
    let inner = &shared.inner;
    let mut stream: Option<Stream> = None;
    let mut failures = 0u32;
    let mut landing = Landing::default();
    let exit = loop {
        if inner.strikes().is_shunned(&peer) {
            break Exit::Dropped;
        }
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match inner.client().open(peer).await {
                Ok(s) => stream.insert(s),
                Err(Failure::Offence(o)) => break Exit::Offence(o),
                Err(f) => {
                    failures += 1;
                    if failures >= MAX_FAILURES {
                        break Exit::Failed(f);
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
                    continue;
                }
            },
        };
        let filled = match fill(shared, s, pending).await {
            Ok(f) => f,
            Err(exit) => break exit,
        };
        let result = match filled {
            Err(f) => Err(f),
            Ok(None) => {
                // Nothing to ask for now: wait until chunks are given back or all landed,
                // keeping the stream for the rest of the download.
                match shared.work() {
                    Ok(w) if w.finished() => break Exit::Idle,
                    Ok(_) => {}
                    Err(exit) => break exit,
                }
                let _ = tokio::time::timeout(IDLE_WAIT, shared.wake.notified()).await;
                continue;
            }
            Ok(Some(i)) => match shared.cid(i) {
                Some(id) => inner
                    .client()
                    .read_response_into(peer, s, &id, &mut landing.buf)
                    .await
                    .map(|len| (i, len)),
                None => Err(Failure::Lost(crate::client::Lost::NoChunk)),
            },
        };
        match result {
            Ok((i, len)) => {
                pending.pop_front();
                failures = 0;
                if let Err(exit) = land(shared, peer, i, &mut landing, len).await {
                    break exit;
                }
            }
            Err(Failure::NotFound) => break Exit::NotProvider,
            Err(Failure::Offence(o)) => break Exit::Offence(o),
            Err(f) => {
                shared.give_back_all(pending);
                stream = None;
                failures += 1;
                if failures >= MAX_FAILURES {
                    break Exit::Failed(f);
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
            }
        }
    };
    if let Some(mut s) = stream {
        let _ = futures::AsyncWriteExt::close(&mut s).await;
    }
    exit
}
