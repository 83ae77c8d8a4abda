//! The cache node's side of `/kith/cache/1.0.0`, behind the overlay's inbound limits: one
//! request per stream, read within a timeout. A prefetch is taken only for this node's own
//! region, within the requests a peer may make, the fills running at once, the room left
//! and the byte budgets: the size the request claims is checked first, then the real one,
//! read from the content's root manifest before anything else is fetched.

use std::sync::Arc;
use std::time::Duration;

use kith_core::ContentId;
use kith_core::frame;
use kith_core::sync::{lock, recover};
use kith_overlay::inbound::{Limits, Refusal};
use kith_overlay::{PeerId, Stream};
use kith_share::Root;
use tokio::time::Instant;

use crate::budget::{Budget, Reservation};
use crate::entries::{Entry, Fill, Why};
use crate::protocol::{self, MAX_FRAME, Request, Response};
use crate::state::{FillSlot, Inner};
use crate::{Error, fill, now_ms};

const LIMITS: Limits = Limits {
    per_peer: 4,
    total: 64,
};
const TIMEOUT: Duration = Duration::from_secs(20);
/// How long a prefetch waits for the content's root manifest: the source that asks has
/// it and is connected, and waits 10 s for the answer.
const MANIFEST_WAIT: Duration = Duration::from_secs(5);

fn busy(_: Refusal) -> Vec<u8> {
    frame::encode(&Response::Busy).unwrap_or_default()
}

pub(crate) fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    let inbound = inner
        .overlay
        .accept(protocol::PROTOCOL, LIMITS, Arc::new(busy))?;
    let i = inner.clone();
    inbound.serve(
        &inner.tasks,
        "cache request",
        TIMEOUT,
        move |peer, stream| {
            let inner = i.clone();
            async move { serve(&inner, peer, stream).await }
        },
    );
    Ok(())
}

async fn serve(inner: &Arc<Inner>, peer: PeerId, mut s: Stream) -> Result<(), Error> {
    let Some(req) = frame::read::<_, Request>(&mut s, MAX_FRAME).await? else {
        return Ok(());
    };
    let resp = match req.check() {
        Err(invalid) => refused(invalid.to_string()),
        Ok(()) => answer(inner, peer, req).await?,
    };
    tracing::debug!(%peer, ?resp, "prefetch answered");
    frame::write(&mut s, &resp).await?;
    Ok(())
}

fn refused(reason: impl Into<String>) -> Response {
    Response::Refused {
        reason: reason.into(),
    }
}

async fn answer(inner: &Arc<Inner>, peer: PeerId, req: Request) -> Result<Response, Error> {
    let Request::Prefetch {
        id,
        bytes,
        region,
        demand,
    } = req;
    if let Some(r) = check(inner, peer, id, &region).await? {
        return Ok(r);
    }
    // The size claimed first: what does not fit even so is refused before anything moves.
    if let Err(r) = take(inner, peer, None, bytes, false)? {
        return Ok(r);
    }
    if !inner.start_fill() {
        return Ok(Response::Busy);
    }
    let slot = FillSlot(inner.clone());
    let root = match read_root(inner, peer, id).await {
        Ok(root) => root,
        Err(r) => return Ok(r),
    };
    let size = root.manifest.size();
    let provider = root.fetched.map(|(p, _)| p);
    if have(inner, &id).await? {
        return Ok(Response::Have);
    }
    let reservation = match take(inner, peer, provider, size, true)? {
        Ok(r) => r,
        Err(r) => {
            tracing::info!(%id, source = %peer, bytes = size, claimed = bytes, answer = ?r, "prefetch refused");
            return Ok(r);
        }
    };
    let why = Why::Prefetch {
        source: peer.to_string(),
        region,
        demand,
    };
    let entry = Entry::new(id, size, false, why, now_ms());
    fill::start(inner, entry, slot, Some(reservation)).await?;
    tracing::info!(%id, source = %peer, bytes = size, claimed = bytes, ?provider, "prefetching for this region");
    Ok(Response::Accepted)
}

/// What is refused (or already here) whatever its size.
async fn check(
    inner: &Inner,
    peer: PeerId,
    id: ContentId,
    region: &str,
) -> Result<Option<Response>, Error> {
    if inner.config.capacity == 0 {
        return Ok(Some(refused("this node keeps no cache")));
    }
    if !inner.may_ask(peer) {
        return Ok(Some(Response::Busy));
    }
    if id.kind() != kith_core::id::Kind::Manifest {
        return Ok(Some(refused("not a file or folder")));
    }
    let own = inner.overlay.own_regions().await?;
    if !own.iter().any(|r| r.to_string() == region) {
        return Ok(Some(refused(format!("this node is not in {region}"))));
    }
    if have(inner, &id).await? {
        return Ok(Some(Response::Have));
    }
    Ok(None)
}

/// Whether `id` is cached, being fetched, or shared by this node of its own.
async fn have(inner: &Inner, id: &ContentId) -> Result<bool, Error> {
    Ok(inner.entry(id)?.is_some_and(|e| e.fill != Fill::Failed) || fill::own(inner, id).await?)
}

/// The refusal, when `size` bytes do not fit in the cache (once all that may go is
/// gone), or in the hour's budget of the asker or of the provider.
fn over(
    inner: &Inner,
    budgets: (&mut Budget, &mut Budget),
    asker: PeerId,
    provider: Option<PeerId>,
    size: u64,
) -> Result<Option<Response>, Error> {
    let (askers, providers) = budgets;
    let capacity = inner.config.capacity;
    if !lock(&inner.entries)?.room_for(size, capacity) {
        return Ok(Some(refused(format!(
            "{size} bytes do not fit in a cache of {capacity} bytes"
        ))));
    }
    let now = Instant::now();
    // A peer whose budget is spent gets nothing more read for it, a manifest neither.
    let left = askers.room(&asker, now);
    if left < size.max(1) {
        return Ok(Some(refused(format!(
            "this peer may have this node fetch {left} more bytes this hour, not {size}"
        ))));
    }
    if let Some(p) = provider {
        let left = providers.room(&p, now);
        if left < size {
            return Ok(Some(refused(format!(
                "{p} may send this node {left} more bytes this hour, not {size}"
            ))));
        }
    }
    Ok(None)
}

/// [`over`] for a size, with the budgets locked; when it fits and `charge`, the size is
/// charged to the asker and the provider at once (two requests cannot both take the last
/// of a budget).
fn take(
    inner: &Inner,
    asker: PeerId,
    provider: Option<PeerId>,
    size: u64,
    charge: bool,
) -> Result<Result<Reservation, Response>, Error> {
    let mut askers = recover(&inner.askers);
    let mut providers = recover(&inner.providers);
    if let Some(r) = over(inner, (&mut askers, &mut providers), asker, provider, size)? {
        return Ok(Err(r));
    }
    if charge {
        let now = Instant::now();
        askers.charge(asker, size, now);
        if let Some(p) = provider {
            providers.charge(p, size, now);
        }
    }
    Ok(Ok(Reservation {
        asker,
        provider,
        bytes: size,
    }))
}

/// The content's root manifest (the source that asks, which has it, is asked first).
/// Its bytes, when they came over the network, are charged to the asker and to the
/// provider that sent them.
async fn read_root(inner: &Inner, asker: PeerId, id: ContentId) -> Result<Root, Response> {
    inner.share.hint(id, vec![asker]);
    let root = inner
        .share
        .read_root(id, MANIFEST_WAIT)
        .await
        .map_err(|e| refused(e.to_string()))?;
    if let Some((from, n)) = root.fetched {
        let now = Instant::now();
        recover(&inner.askers).charge(asker, n, now);
        recover(&inner.providers).charge(from, n, now);
    }
    Ok(root)
}
