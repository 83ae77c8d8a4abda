//! Fetching a manifest: from the store if it is here, else from up to
//! [`MANIFEST_PARALLEL`] providers at once, as they are found; the first answer that
//! matches its ID wins.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt as _;
use kith_core::ContentId;
use kith_core::manifest::Manifest;
use kith_core::store::Op;
use kith_overlay::{Path, PeerEvent, PeerId};
use tokio_util::sync::CancellationToken;

use super::DownloadError;
use super::session::Session;
use crate::client::Failure;

/// Manifest requests in flight at once: stale providers (gone peers whose records are
/// still in the DHT) must not make a download wait for their dial timeouts one by one.
const MANIFEST_PARALLEL: usize = 8;
/// A provider that could not be reached is tried again this much later (times the tries
/// so far), at most [`MANIFEST_REDIALS`] times before it must be found again.
const MANIFEST_REDIAL: Duration = Duration::from_millis(300);
const MANIFEST_REDIALS: u32 = 3;
/// The head start near providers get over far ones (when a near one is asked too): the
/// first answer wins, and a near one's should (a cache on this node's LAN, say).
const FAR_HEAD_START: Duration = Duration::from_millis(250);
/// When a download that has found nobody says what it looked at.
const STILL_LOOKING: Duration = Duration::from_secs(5);

/// The manifest `id`, verified: from the store, or fetched and kept there.
pub(crate) async fn fetch(s: &mut Session, id: &ContentId) -> Result<Manifest, DownloadError> {
    let (m, fetched) = read(s, id).await?;
    if let Some((_, bytes)) = fetched {
        s.inner.apply(vec![Op::PutBlock(*id, bytes)]).await?;
    }
    Ok(m)
}

/// The manifest `id`, verified, from the store or its providers; when it came over the
/// network, who sent it and its bytes (not kept).
pub(crate) async fn read(
    s: &mut Session,
    id: &ContentId,
) -> Result<(Manifest, Option<(PeerId, Vec<u8>)>), DownloadError> {
    let (store, mid) = (s.inner.store().clone(), *id);
    if let Some(bytes) = s
        .inner
        .tasks()
        .blocking(move || store.block(&mid))
        .await??
    {
        let m = Manifest::decode(&bytes).map_err(|e| DownloadError::Invalid(e.to_string()))?;
        return Ok((m, None));
    }
    let (peer, bytes) = ask_providers(s, id).await?;
    let m = Manifest::decode(&bytes)
        .map_err(|e| DownloadError::Invalid(format!("{id} is not a valid manifest: {e}")))?;
    s.progress();
    // Found: a "still looking" notice is stale now.
    s.tx.send_if_modified(|p| {
        let stale = p
            .notice
            .as_deref()
            .is_some_and(|n| n.starts_with("still looking"));
        if stale {
            p.notice = None;
        }
        stale
    });
    Ok((m, Some((peer, bytes))))
}

/// One attempt: the peer, and its answer (or why there was none and whether the peer
/// could not be reached at all).
type Attempt = (PeerId, Result<Vec<u8>, (Failure, bool)>);

/// Which peer to ask next: near (or not yet connected) ones first; a far one waits
/// [`FAR_HEAD_START`] while a near one is asked, or may still be found.
#[derive(Default)]
struct Order {
    far: HashSet<PeerId>,
    classified: HashSet<PeerId>,
}

impl Order {
    async fn next(&mut self, s: &Session, tried: &HashSet<PeerId>) -> Option<(PeerId, Duration)> {
        let candidates: Vec<PeerId> = s
            .peers
            .iter()
            .copied()
            .filter(|p| !tried.contains(p) && !s.inner.strikes().is_shunned(p))
            .collect();
        let new: Vec<PeerId> = candidates
            .iter()
            .copied()
            .filter(|p| self.classified.insert(*p))
            .collect();
        if !new.is_empty() {
            self.far
                .extend(super::nearness::far_among(&s.inner, &new).await);
        }
        let peer = candidates
            .iter()
            .find(|p| !self.far.contains(p))
            .or(candidates.first())
            .copied()?;
        let near_asked = tried.iter().any(|p| !self.far.contains(p))
            || !s.first_round.load(std::sync::atomic::Ordering::Relaxed);
        let head = if self.far.contains(&peer) && near_asked {
            FAR_HEAD_START
        } else {
            Duration::ZERO
        };
        Some((peer, head))
    }
}

/// The manifest's bytes from the first provider that gives them, and that provider.
async fn ask_providers(
    s: &mut Session,
    id: &ContentId,
) -> Result<(PeerId, Vec<u8>), DownloadError> {
    let inner = s.inner.clone();
    let mut tried: HashSet<PeerId> = HashSet::new();
    let mut in_flight: HashSet<PeerId> = HashSet::new();
    let mut attempts = futures::stream::FuturesUnordered::new();
    // A peer whose relayed connection is being replaced by a direct one: its attempt is
    // dropped and made again (on the direct connection).
    let mut events = inner.overlay().peer_events();
    let mut moving: HashMap<PeerId, CancellationToken> = HashMap::new();
    // Peers that could not be reached, and how often.
    let mut unreachable: HashMap<PeerId, u32> = HashMap::new();
    let mut order = Order::default();
    let stop = s.stop.clone();
    // Once, while nothing has answered: what the search covered so far.
    let still = tokio::time::sleep(STILL_LOOKING);
    tokio::pin!(still);
    let mut told = false;
    loop {
        while attempts.len() < MANIFEST_PARALLEL {
            let Some((peer, head)) = order.next(s, &tried).await else {
                break;
            };
            tried.insert(peer);
            in_flight.insert(peer);
            let moved = moving.entry(peer).or_default().clone();
            let wait = MANIFEST_REDIAL * unreachable.get(&peer).copied().unwrap_or(0) + head;
            let inner = &inner;
            attempts.push(async move {
                let attempt = async {
                    tokio::time::sleep(wait).await;
                    let mut st = inner.client().open(peer).await.map_err(|e| (e, true))?;
                    let r = inner.client().request(peer, &mut st, id).await;
                    let _ = futures::AsyncWriteExt::close(&mut st).await;
                    r.map_err(|e| (e, false))
                };
                let r = tokio::select! {
                    r = attempt => r,
                    () = moved.cancelled() => Err((Failure::Lost(crate::client::Lost::Moved), false)),
                };
                (peer, r) as Attempt
            });
        }
        tokio::select! {
            () = stop.cancelled() => return Err(DownloadError::Stopped),
            () = &mut still, if !told => {
                told = true;
                let notice = format!("still looking for {id}: {}", s.searched());
                s.tx.send_modify(|p| p.notice = Some(notice));
            }
            () = tokio::time::sleep_until(s.deadline()) => return Err(s.gave_up("the manifest")),
            got = s.found.recv(), if s.finder_open => match got {
                Some(found) => {
                    let p = found.0;
                    // Found again: worth another try once its last one is over.
                    if s.add_found(found) && !in_flight.contains(&p) {
                        tried.remove(&p);
                    }
                }
                None => s.finder_open = false,
            },
            Ok(PeerEvent::PathChanged { peer, path: Path::Direct }) = events.recv() => {
                if let Some(t) = moving.get(&peer) {
                    t.cancel();
                }
            }
            Some((peer, result)) = attempts.next(), if !attempts.is_empty() => {
                in_flight.remove(&peer);
                if moving.remove(&peer).is_some_and(|t| t.is_cancelled()) {
                    tried.remove(&peer);
                    continue;
                }
                match result {
                    Ok(bytes) => {
                        s.providers.insert(peer);
                        return Ok((peer, bytes));
                    }
                    Err((f, unreached)) => {
                        tracing::debug!(%peer, %id, failure = %f, "peer cannot give the manifest");
                        s.failed(peer, &f).await;
                        let n = unreachable.entry(peer).or_insert(0);
                        if unreached && *n < MANIFEST_REDIALS {
                            *n += 1;
                            tried.remove(&peer);
                        }
                    }
                }
            }
        }
    }
}
