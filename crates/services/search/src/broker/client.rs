//! The client side of `/kith/broker/1.0.0`: keeping this node registered with its broker,
//! and asking it (or this node's own directory) for matches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kith_core::tasks::Tasks;
use kith_overlay::{Multiaddr, Overlay, PeerId, peer_of};
use tokio::sync::{mpsc, watch};

use super::directory::Directory;
use crate::Error;
use crate::catalog::Catalog;
use crate::protocol::{self, BrokerRequest, BrokerResponse, Entry, WireHit};
use crate::query::Query;

/// Longest time for one request, from open to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Entry bytes sent per frame (well under the broker's frame limit).
const BATCH_BYTES: usize = protocol::MAX_BROKER_FRAME / 2;
/// Shortest and longest wait before trying an unreachable broker again.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One request to the broker and its answer.
async fn call(
    overlay: &Overlay,
    broker: PeerId,
    req: &BrokerRequest,
) -> Result<BrokerResponse, Error> {
    let fut = async {
        let mut s = overlay
            .open_stream(broker, protocol::BROKER_PROTOCOL)
            .await?;
        protocol::write_frame(&mut s, req).await?;
        protocol::read_frame::<_, BrokerResponse>(&mut s, protocol::MAX_ANSWER_FRAME)
            .await?
            .ok_or(Error::BrokerClosed)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| Error::BrokerTimeout)?
}

/// `entries` in batches that each fit a frame.
fn batches(entries: Vec<Entry>) -> Vec<Vec<Entry>> {
    let mut out: Vec<Vec<Entry>> = vec![Vec::new()];
    let mut bytes = 0;
    for e in entries {
        let n = e.wire_len();
        if bytes + n > BATCH_BYTES
            && let Some(last) = out.last()
            && !last.is_empty()
        {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        if let Some(last) = out.last_mut() {
            last.push(e);
        }
    }
    out
}

/// Asks the broker this node registers with, or its own directory.
#[derive(Clone)]
pub(crate) struct Asker {
    overlay: Overlay,
    directory: Option<Arc<Directory>>,
    broker: Option<PeerId>,
    tasks: Tasks,
}

impl Asker {
    pub fn new(
        overlay: Overlay,
        directory: Option<Arc<Directory>>,
        broker: Option<&Multiaddr>,
        tasks: Tasks,
    ) -> Self {
        Self {
            overlay,
            directory,
            broker: broker.and_then(peer_of),
            tasks,
        }
    }

    /// Asks the broker (or this node's own directory) and passes answers on. Answers
    /// that do not match the query are a lying broker's: they are dropped and logged.
    pub async fn search(&self, q: &Query, limit: usize, tx: &mpsc::Sender<WireHit>) {
        let hits = self.ask(q, limit).await;
        for h in hits.into_iter().take(limit) {
            if !q.matches_name(&h.entry.name, &h.entry.path) {
                tracing::warn!(id = %h.entry.id, name = %h.entry.name, "the broker returned a result that does not match the query; dropped");
                continue;
            }
            if tx.send(h).await.is_err() {
                return;
            }
        }
    }

    async fn ask(&self, q: &Query, limit: usize) -> Vec<WireHit> {
        if let Some(dir) = self.directory.clone() {
            let q = q.clone();
            return match self.tasks.blocking(move || dir.search(&q, limit)).await {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "directory search failed");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
        }
        let Some(peer) = self.broker else {
            return Vec::new();
        };
        let req = BrokerRequest::Search {
            text: q.text.clone(),
            limit: limit as u32,
        };
        match call(&self.overlay, peer, &req).await {
            Ok(BrokerResponse::Hits { hits }) => hits,
            Ok(BrokerResponse::Error { reason }) => {
                tracing::warn!(%reason, "the broker refused the search");
                Vec::new()
            }
            Ok(_) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the broker");
                Vec::new()
            }
        }
    }
}

/// This node's registration with its broker.
struct Registration {
    overlay: Overlay,
    catalog: Arc<Catalog>,
    tasks: Tasks,
    addr: Multiaddr,
    broker: PeerId,
    generation: watch::Receiver<u64>,
    /// What the broker holds of us, as far as we know.
    sent: HashMap<String, Entry>,
    registered: bool,
    heartbeat: Duration,
}

impl Registration {
    /// Registers the whole catalogue (again after a broker restart or a lost connection).
    async fn register(&mut self) -> Result<(), Error> {
        let _ = self.overlay.dial(self.addr.clone()).await;
        // Seen before the snapshot: a change after it is pushed next.
        self.generation.borrow_and_update();
        let entries = self.catalog.public()?;
        let addrs = self
            .overlay
            .listen_addrs()
            .await?
            .iter()
            .map(|a| a.to_string())
            .filter(|a| !a.contains("/ip4/0.0.0.0/"))
            .collect();
        let mut parts = batches(entries.clone()).into_iter();
        let first = parts.next().unwrap_or_default();
        match call(
            &self.overlay,
            self.broker,
            &BrokerRequest::Register {
                entries: first,
                addrs,
            },
        )
        .await?
        {
            BrokerResponse::Ok { ttl_secs, .. } => {
                self.heartbeat = Duration::from_secs(ttl_secs.max(1)).mul_f64(1.0 / 3.0);
            }
            BrokerResponse::Error { reason } => {
                return Err(Error::BrokerRefused(reason));
            }
            BrokerResponse::Hits { .. } => {}
        }
        for part in parts {
            self.send(BrokerRequest::Add { entries: part }).await?;
        }
        self.sent = entries.into_iter().map(|e| (e.id.clone(), e)).collect();
        self.registered = true;
        tracing::info!(broker = %self.broker, entries = self.sent.len(), "registered with the broker");
        Ok(())
    }

    /// Sends a change; a broker that does not know us gets a full registration next.
    async fn send(&mut self, req: BrokerRequest) -> Result<(), Error> {
        match call(&self.overlay, self.broker, &req).await? {
            BrokerResponse::Ok { known: false, .. } => self.registered = false,
            BrokerResponse::Error { reason } => {
                return Err(Error::BrokerRefused(reason));
            }
            _ => {}
        }
        Ok(())
    }

    /// Pushes what changed in the catalogue since the last push.
    async fn push_changes(&mut self) -> Result<(), Error> {
        let now: HashMap<String, Entry> = self
            .catalog
            .public()?
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect();
        let added: Vec<Entry> = now
            .iter()
            .filter(|(id, e)| self.sent.get(*id) != Some(e))
            .map(|(_, e)| e.clone())
            .collect();
        let removed: Vec<String> = self
            .sent
            .keys()
            .filter(|id| !now.contains_key(*id))
            .cloned()
            .collect();
        if !removed.is_empty() {
            self.send(BrokerRequest::Remove { ids: removed }).await?;
        }
        for part in batches(added).into_iter().filter(|p| !p.is_empty()) {
            self.send(BrokerRequest::Add { entries: part }).await?;
        }
        self.sent = now;
        Ok(())
    }

    /// Registers if needed, then waits for a change to push or the next heartbeat.
    async fn step(&mut self) -> Result<(), Error> {
        if !self.registered {
            self.register().await?;
        }
        tokio::select! {
            () = self.tasks.shutdown().cancelled() => Ok(()),
            _ = self.generation.changed() => self.push_changes().await,
            () = tokio::time::sleep(self.heartbeat) => {
                self.send(BrokerRequest::Heartbeat).await?;
                if !self.registered {
                    tracing::info!(broker = %self.broker, "the broker does not know us (restarted?); registering again");
                }
                Ok(())
            }
        }
    }
}

/// Keeps this node registered with its broker: registers, pushes catalogue changes as
/// they happen, and sends heartbeats; retries with backoff while the broker is away.
pub(crate) async fn run(overlay: Overlay, catalog: Arc<Catalog>, tasks: Tasks, addr: Multiaddr) {
    let Some(broker) = peer_of(&addr) else {
        tracing::warn!(%addr, "the broker address must end with /p2p/PEER_ID; not registering");
        return;
    };
    let mut reg = Registration {
        generation: catalog.changes(),
        overlay,
        catalog,
        tasks,
        addr,
        broker,
        sent: HashMap::new(),
        registered: false,
        heartbeat: Duration::from_secs(20),
    };
    let mut backoff = BACKOFF_MIN;
    while !reg.tasks.is_stopping() {
        match reg.step().await {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(e) => {
                tracing::debug!(broker = %reg.broker, error = %e, "broker unreachable; retrying");
                reg.registered = false;
                tokio::select! {
                    () = reg.tasks.shutdown().cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(reg.heartbeat.clamp(BACKOFF_MIN, BACKOFF_MAX));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_catalogue_goes_in_frames_under_the_limit() {
        let entries: Vec<Entry> = (0..10_000)
            .map(|i| Entry {
                id: format!("bafy{i:060}"),
                name: format!("file number {i} with a fairly long name.txt"),
                path: format!("a/long/folder/path/for/the/file number {i}.txt"),
                size: i,
                kind: "file".into(),
                name_key: None,
                revision: None,
            })
            .collect();
        let parts = batches(entries);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 10_000);
        for p in parts {
            let frame = protocol::encode(&BrokerRequest::Add { entries: p }).unwrap_or_default();
            assert!(frame.len() < protocol::MAX_BROKER_FRAME, "{}", frame.len());
        }
        assert_eq!(
            batches(Vec::new()).len(),
            1,
            "an empty catalogue still registers"
        );
    }
}
