//! The holder's side of `/kith/vault/1.0.0`, behind the overlay's inbound limits: one
//! request per stream, every read timed, a store checked against the quota before its
//! bytes are read and against its name before it is kept.

use std::sync::Arc;
use std::time::Duration;

use kith_core::frame;
use kith_overlay::inbound::{Limits, Refusal as Busy};
use kith_overlay::{PeerId, Stream};

use crate::Error;
use crate::protocol::{
    self, MAX_AUDIT, MAX_FRAME, MAX_SHARE, Request, Response, read_blob, write_blob,
};
use crate::state::Inner;
use crate::tree;

const LIMITS: Limits = Limits {
    per_peer: 16,
    total: 256,
};
/// Time for one request, a share's bytes included.
const TIMEOUT: Duration = Duration::from_secs(90);

fn busy(_: Busy) -> Vec<u8> {
    frame::encode(&Response::Busy).unwrap_or_default()
}

pub(crate) fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    let inbound = inner
        .overlay()
        .accept(protocol::PROTOCOL, LIMITS, Arc::new(busy))?;
    let i = inner.clone();
    inbound.serve(
        inner.tasks(),
        "vault request",
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
    let owner = peer.to_string();
    if matches!(req, Request::Offer | Request::Store { .. }) {
        // What the disk has free, as of now.
        let h = inner.holder().clone();
        inner.tasks().blocking(move || h.refresh_disk()).await?;
    }
    let resp = match req {
        Request::Offer => Response::Offer(
            inner
                .holder()
                .offer(&owner, inner.catalog().lent_to(&owner)?),
        ),
        Request::Store { share, size } => store(inner, peer, &mut s, share, size).await?,
        Request::Fetch { share } => {
            let h = inner.holder().clone();
            match inner.tasks().blocking(move || h.read(&share)).await? {
                Some(b) => {
                    frame::write(
                        &mut s,
                        &Response::Share {
                            size: b.len() as u64,
                        },
                    )
                    .await?;
                    write_blob(&mut s, &b).await?;
                    inner.metrics().served.inc();
                    return Ok(());
                }
                None => Response::NotFound,
            }
        }
        Request::Audit { share, leaves } => {
            let h = inner.holder().clone();
            let leaves: Vec<u32> = leaves.into_iter().take(MAX_AUDIT).collect();
            match inner
                .tasks()
                .blocking(move || h.prove(&share, &leaves))
                .await?
            {
                Some((size, hashes, data)) => {
                    let hashes = hashes.iter().map(tree::hex).collect();
                    frame::write(&mut s, &Response::Proof { size, hashes }).await?;
                    write_blob(&mut s, &data).await?;
                    return Ok(());
                }
                None => Response::NotFound,
            }
        }
        Request::Delete { share } => {
            let (h, person) = (inner.holder().clone(), inner.person_of(&peer));
            let gone = inner
                .tasks()
                .blocking(move || h.delete(&owner, person.as_deref(), &share))
                .await?;
            if gone {
                Response::Deleted
            } else {
                Response::NotFound
            }
        }
    };
    frame::write(&mut s, &resp).await?;
    Ok(())
}

async fn store(
    inner: &Arc<Inner>,
    peer: PeerId,
    s: &mut Stream,
    share: String,
    size: u64,
) -> Result<Response, Error> {
    let owner = peer.to_string();
    if size > MAX_SHARE || tree::parse(&share).is_none() {
        return Ok(Response::Refused {
            reason: format!("a share of {size} bytes (at most {MAX_SHARE}) named {share:.16}"),
        });
    }
    if inner.holder().has(&share) {
        // Already here (a retried store): the bytes are read and dropped.
        read_blob(s, size, MAX_SHARE).await?;
        return Ok(Response::Stored);
    }
    if let Err(r) = inner
        .holder()
        .reserve(&owner, size, inner.catalog().lent_to(&owner)?)
    {
        inner.metrics().refused.inc();
        tracing::info!(%peer, reason = %r, "share refused");
        return Ok(Response::Refused {
            reason: r.to_string(),
        });
    }
    let bytes = match read_blob(s, size, MAX_SHARE).await {
        Ok(b) => b,
        Err(e) => {
            inner.holder().release(size);
            return Err(e.into());
        }
    };
    let (h, person) = (inner.holder().clone(), inner.person_of(&peer));
    let kept = inner
        .tasks()
        .blocking(move || h.keep(&owner, person, &share, &bytes))
        .await?;
    Ok(match kept {
        Ok(()) => {
            inner.metrics().held.set(inner.holder().used() as i64);
            Response::Stored
        }
        Err(r) => {
            inner.metrics().refused.inc();
            tracing::info!(%peer, reason = %r, "share refused");
            Response::Refused {
                reason: r.to_string(),
            }
        }
    })
}
