//! The broker's side of `/kith/broker/1.0.0`: registrations, changes, heartbeats and
//! searches, behind the overlay's inbound limits. A request body is read only once its
//! length fits both the frame limit and a byte budget shared by every stream, so slow or
//! stalled senders cannot make the broker hold more than the budget.

use std::sync::Arc;
use std::time::Duration;

use kith_core::tasks::Tasks;
use kith_overlay::inbound::{Limits, Refusal};
use kith_overlay::{Overlay, PeerId, Stream};
use tokio::sync::Semaphore;

use super::directory::Directory;
use crate::protocol::{self, BrokerRequest, BrokerResponse};
use crate::query::Query;
use crate::{Error, MAX_RESULTS};

/// Inbound broker streams: per peer, and in total.
pub(crate) const LIMITS: Limits = Limits {
    per_peer: 4,
    total: 64,
};
/// Request bytes held at once across every stream.
pub(crate) const BODY_BUDGET: usize = 16 << 20;
/// Longest time for one request, from open to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often buffered changes become searchable.
const COMMIT_EVERY: Duration = Duration::from_millis(200);

fn refusal(why: Refusal) -> Vec<u8> {
    let reason = match why {
        Refusal::PeerLimit => "too many broker requests in flight",
        Refusal::Busy => "busy",
    };
    protocol::encode(&BrokerResponse::Error {
        reason: reason.into(),
    })
    .unwrap_or_default()
}

/// Serves the broker protocol, and commits changes and expires silent peers on a timer.
pub(crate) fn start(overlay: &Overlay, tasks: &Tasks, dir: Arc<Directory>) -> Result<(), Error> {
    let inbound = overlay.accept(protocol::BROKER_PROTOCOL, LIMITS, Arc::new(refusal))?;
    let budget = Arc::new(Semaphore::new(BODY_BUDGET));
    let (d, t) = (dir.clone(), tasks.clone());
    inbound.serve(
        tasks,
        "broker request",
        REQUEST_TIMEOUT,
        move |peer, stream| {
            let (d, b, t) = (d.clone(), budget.clone(), t.clone());
            async move { handle(&d, &b, &t, peer, stream).await }
        },
    );
    tasks.spawn(upkeep(dir, tasks.clone()));
    Ok(())
}

/// Makes buffered changes searchable and drops silent peers, until shutdown.
async fn upkeep(dir: Arc<Directory>, tasks: Tasks) {
    let mut commit = tokio::time::interval(COMMIT_EVERY);
    let mut expire = tokio::time::interval((dir.ttl() / 4).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            () = tasks.shutdown().cancelled() => return,
            _ = commit.tick() => {
                let d = dir.clone();
                if let Ok(Err(e)) = tasks.blocking(move || d.commit()).await {
                    tracing::warn!(error = %e, "broker index commit failed");
                }
            }
            _ = expire.tick() => {
                if let Err(e) = dir.expire() {
                    tracing::warn!(error = %e, "cannot expire silent peers");
                }
            }
        }
    }
}

async fn handle(
    dir: &Arc<Directory>,
    budget: &Arc<Semaphore>,
    tasks: &Tasks,
    peer: PeerId,
    mut stream: Stream,
) -> Result<(), Error> {
    let Some(len) = protocol::read_len(&mut stream, protocol::MAX_BROKER_FRAME).await? else {
        return Ok(());
    };
    // The frame limit keeps `len` far below u32::MAX.
    let held = budget
        .acquire_many(u32::try_from(len).unwrap_or(u32::MAX))
        .await
        .map_err(|_| Error::stopped())?;
    let req: BrokerRequest = protocol::read_body(&mut stream, len).await?;
    let d = dir.clone();
    let resp = tasks.blocking(move || answer(&d, peer, req)).await?;
    drop(held);
    Ok(protocol::write_frame(&mut stream, &resp).await?)
}

/// The answer to one request (blocking: the directory's index).
fn answer(dir: &Directory, peer: PeerId, req: BrokerRequest) -> BrokerResponse {
    let ttl_secs = dir.ttl().as_secs().max(1);
    let ok = move |known| BrokerResponse::Ok { known, ttl_secs };
    let refused = move |e: Error| {
        tracing::warn!(%peer, reason = %e, "refused a broker request");
        BrokerResponse::Error {
            reason: e.to_string(),
        }
    };
    let r = match req {
        BrokerRequest::Register { entries, addrs } => {
            dir.register(peer, &entries, addrs).map(|()| {
                tracing::info!(%peer, entries = entries.len(), "peer registered");
                ok(true)
            })
        }
        BrokerRequest::Add { entries } => dir.add(peer, &entries).map(ok),
        BrokerRequest::Remove { ids } => dir.remove(peer, &ids).map(ok),
        BrokerRequest::Heartbeat => dir.heartbeat(peer).map(ok),
        BrokerRequest::Search { text, limit } => Query::parse(&text)
            .and_then(|q| dir.search(&q, (limit as usize).clamp(1, MAX_RESULTS)))
            .map(|hits| BrokerResponse::Hits { hits }),
    };
    r.unwrap_or_else(refused)
}
