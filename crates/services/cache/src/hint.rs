//! The source's side: every download that starts here is noted by the region it comes
//! from; when one region asks often enough, a cache node in that region (cache nodes
//! provide [`NODES_KEY`]) is asked to fetch the content ahead. Downloads that start here
//! also keep cached entries fresh (least recently served goes first).

use std::sync::Arc;
use std::time::Duration;

use kith_core::ContentId;
use kith_core::frame;
use kith_core::sync::lock;
use kith_overlay::{PeerId, Region};
use kith_share::Event;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::demand::Hint;
use crate::protocol::{MAX_FRAME, NODES_KEY, PROTOCOL, Request, Response};
use crate::state::Inner;
use crate::{Error, now_ms};

/// How long the cache nodes found in the DHT are used before asking again.
const NODES_FRESH: Duration = Duration::from_secs(30);
/// Cache nodes remembered from one lookup.
const MAX_NODES: usize = 64;
/// Cache nodes tried for one hint.
const MAX_TRIES: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Watches share's events until the node stops.
pub(crate) async fn watch(inner: Arc<Inner>) {
    let mut events = inner.share.events();
    loop {
        let e = tokio::select! {
            () = inner.tasks.shutdown().cancelled() => return,
            e = events.recv() => e,
        };
        match e {
            Ok(Event::Requested { id, peer }) => requested(&inner, id, peer).await,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn requested(inner: &Arc<Inner>, id: ContentId, peer: PeerId) {
    let served = inner.update(|es| es.served(&id, now_ms())).await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "cannot record a cache hit");
    }
    let Ok(Some(info)) = inner.overlay.peer_info(peer).await else {
        return;
    };
    let Some(region) = info.region else {
        return;
    };
    let askers = {
        let Ok(mut d) = lock(&inner.demand) else {
            return;
        };
        d.note(id, region, peer, Instant::now())
    };
    if let Some(askers) = askers {
        tracing::info!(%id, %region, peers = askers.len(), "a region asks for this content; asking a cache there");
        let i = inner.clone();
        inner.tasks.spawn(async move {
            let demand = askers.len() as u32;
            let (node, answer) = match ask_region(&i, id, region, &askers).await {
                Ok(Some((node, a))) => (Some(node.to_string()), a),
                Ok(None) => (None, "no cache node in the region".to_owned()),
                Err(e) => (None, e.to_string()),
            };
            tracing::info!(%id, %region, ?node, %answer, "cache hint");
            if let Ok(mut d) = lock(&i.demand) {
                d.record(Hint {
                    id,
                    region: region.to_string(),
                    demand,
                    node,
                    answer,
                    at_ms: now_ms(),
                });
            }
        });
    }
}

/// Cache nodes found in the DHT (looked up again when stale).
async fn cache_nodes(inner: &Inner) -> Result<Vec<PeerId>, Error> {
    if let Some((nodes, at)) = lock(&inner.nodes)?.as_ref()
        && at.elapsed() < NODES_FRESH
    {
        return Ok(nodes.clone());
    }
    let me = inner.overlay.peer_id();
    let mut rx = inner.overlay.find_providers(NODES_KEY.to_vec()).await?;
    let mut nodes = Vec::new();
    while let Some(p) = rx.recv().await {
        if p != me && !nodes.contains(&p) && nodes.len() < MAX_NODES {
            nodes.push(p);
        }
    }
    *lock(&inner.nodes)? = Some((nodes.clone(), Instant::now()));
    Ok(nodes)
}

/// Asks a cache node of `region` (not one of the askers) to prefetch `id`; the node and
/// its answer, or `None` when no cache node of the region took it.
async fn ask_region(
    inner: &Inner,
    id: ContentId,
    region: Region,
    askers: &[PeerId],
) -> Result<Option<(PeerId, String)>, Error> {
    let bytes = inner
        .share
        .list()
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .map_or(0, |s| s.size);
    let mut last = None;
    let nodes = cache_nodes(inner).await?;
    let mut tries = 0;
    for node in nodes.into_iter().filter(|n| !askers.contains(n)) {
        // A connected node in another region is passed over without a stream.
        if let Ok(Some(info)) = inner.overlay.peer_info(node).await
            && info.region != Some(region)
        {
            continue;
        }
        if tries >= MAX_TRIES {
            break;
        }
        tries += 1;
        let req = Request::Prefetch {
            id,
            bytes,
            region: region.to_string(),
            demand: askers.len() as u32,
        };
        match tokio::time::timeout(TIMEOUT, ask(inner, node, region, &req)).await {
            Ok(Ok(Some(Response::Accepted))) => return Ok(Some((node, "accepted".into()))),
            Ok(Ok(Some(Response::Have))) => return Ok(Some((node, "has it".into()))),
            Ok(Ok(Some(other))) => last = Some((node, format!("{other:?}"))),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::debug!(%node, error = %e, "cache node unreachable"),
            Err(_) => tracing::debug!(%node, "cache node timed out"),
        }
    }
    Ok(last)
}

/// Opens a stream to `node` (dialling it if need be), checks that it is in `region`, and
/// sends the request; `None` when it turned out to be elsewhere.
async fn ask(
    inner: &Inner,
    node: PeerId,
    region: Region,
    req: &Request,
) -> Result<Option<Response>, Error> {
    let mut s = inner.overlay.open_stream(node, PROTOCOL).await?;
    let info = inner.overlay.peer_info(node).await?;
    if info.and_then(|i| i.region) != Some(region) {
        return Ok(None);
    }
    frame::write(&mut s, req).await?;
    let resp = frame::read::<_, Response>(&mut s, MAX_FRAME).await?;
    Ok(resp)
}
