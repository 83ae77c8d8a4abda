//! The cache node's side of `/kith/cache/1.0.0`, behind the overlay's inbound limits: one
//! request per stream, read within a timeout; a prefetch is taken only for this node's
//! own region, within the per-peer budget, the fills running at once and the room left.

use std::sync::Arc;
use std::time::Duration;

use kith_core::frame;
use kith_overlay::inbound::{Limits, Refusal};
use kith_overlay::{PeerId, Stream};

use crate::entries::{Entry, Fill, Why};
use crate::protocol::{self, MAX_FRAME, Request, Response};
use crate::state::{FillSlot, Inner};
use crate::{Error, fill, now_ms};

const LIMITS: Limits = Limits {
    per_peer: 4,
    total: 64,
};
const TIMEOUT: Duration = Duration::from_secs(20);

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
        Err(reason) => Response::Refused { reason },
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
    if inner.config.capacity == 0 {
        return Ok(refused("this node keeps no cache"));
    }
    if !inner.may_ask(peer) {
        return Ok(Response::Busy);
    }
    if id.kind() != kith_core::id::Kind::Manifest {
        return Ok(refused("not a file or folder"));
    }
    let own = inner.overlay.own_regions().await?;
    if !own.iter().any(|r| r.to_string() == region) {
        return Ok(refused(format!("this node is not in {region}")));
    }
    if inner.entry(&id)?.is_some_and(|e| e.fill != Fill::Failed) || fill::own(inner, &id).await? {
        return Ok(Response::Have);
    }
    let room = crate::state::lock(&inner.entries)?.room_for(bytes, inner.config.capacity);
    if !room {
        return Ok(refused(format!(
            "{bytes} bytes do not fit in a cache of {} bytes",
            inner.config.capacity
        )));
    }
    if !inner.start_fill() {
        return Ok(Response::Busy);
    }
    let slot = FillSlot(inner.clone());
    let why = Why::Prefetch {
        source: peer.to_string(),
        region,
        demand,
    };
    let entry = Entry::new(id, bytes, false, why, now_ms());
    fill::start(inner, entry, slot).await?;
    tracing::info!(%id, source = %peer, bytes, "prefetching for this region");
    Ok(Response::Accepted)
}
