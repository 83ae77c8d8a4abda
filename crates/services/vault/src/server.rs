//! The holder's side of `/kith/vault/1.0.0`, behind the overlay's inbound limits: one
//! request per stream, every read timed, a store checked against the quota before its
//! bytes are read and against its name before it is kept.

use std::sync::Arc;
use std::time::Duration;

use kith_core::frame;
use kith_core::tasks::Tasks;
use kith_overlay::inbound::{Limits, Refusal as Busy};
use kith_overlay::{Overlay, PeerId, Stream};
use kith_people::People;

use crate::Error;
use crate::catalog::Catalog;
use crate::holder::Holder;
use crate::metrics::Metrics;
use crate::protocol::{
    self, MAX_AUDIT, MAX_FRAME, MAX_SHARE, Request, Response, read_blob, write_blob,
};
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

/// What the holder's side takes: the shares held, what this node stores with each
/// owner (the index, for fairness), who is whose device, its metrics and its tasks.
#[derive(Clone)]
pub(crate) struct Side {
    pub holder: Arc<Holder>,
    pub catalog: Arc<Catalog>,
    pub people: People,
    pub metrics: Arc<Metrics>,
    pub tasks: Tasks,
}

impl Side {
    fn person_of(&self, peer: &PeerId) -> Option<String> {
        self.people.person_of(peer).map(|p| p.to_string())
    }
}

pub(crate) fn start(overlay: &Overlay, side: Side) -> Result<(), Error> {
    let inbound = overlay.accept(protocol::PROTOCOL, LIMITS, Arc::new(busy))?;
    let tasks = side.tasks.clone();
    inbound.serve(&tasks, "vault request", TIMEOUT, move |peer, stream| {
        let side = side.clone();
        async move { serve(&side, peer, stream).await }
    });
    Ok(())
}

async fn serve(side: &Side, peer: PeerId, mut s: Stream) -> Result<(), Error> {
    let Some(req) = frame::read::<_, Request>(&mut s, MAX_FRAME).await? else {
        return Ok(());
    };
    let owner = peer.to_string();
    if matches!(req, Request::Offer | Request::Store { .. }) {
        // What the disk has free, as of now.
        let h = side.holder.clone();
        side.tasks.blocking(move || h.refresh_disk()).await?;
    }
    let resp = match req {
        Request::Offer => Response::Offer(side.holder.offer(&owner, side.catalog.lent_to(&owner)?)),
        Request::Store { share, size } => store(side, peer, &mut s, share, size).await?,
        Request::Fetch { share } => {
            let h = side.holder.clone();
            match side.tasks.blocking(move || h.read(&share)).await? {
                Some(b) => {
                    frame::write(
                        &mut s,
                        &Response::Share {
                            size: b.len() as u64,
                        },
                    )
                    .await?;
                    write_blob(&mut s, &b).await?;
                    side.metrics.served.inc();
                    return Ok(());
                }
                None => Response::NotFound,
            }
        }
        Request::Audit { share, leaves } => {
            let h = side.holder.clone();
            let leaves: Vec<u32> = leaves.into_iter().take(MAX_AUDIT).collect();
            match side
                .tasks
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
            let (h, person) = (side.holder.clone(), side.person_of(&peer));
            let gone = side
                .tasks
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
    side: &Side,
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
    if side.holder.has(&share) {
        // Already here (a retried store): the bytes are read and dropped.
        read_blob(s, size, MAX_SHARE).await?;
        return Ok(Response::Stored);
    }
    if let Err(r) = side
        .holder
        .reserve(&owner, size, side.catalog.lent_to(&owner)?)
    {
        side.metrics.refused.inc();
        tracing::info!(%peer, reason = %r, "share refused");
        return Ok(Response::Refused {
            reason: r.to_string(),
        });
    }
    let bytes = match read_blob(s, size, MAX_SHARE).await {
        Ok(b) => b,
        Err(e) => {
            side.holder.release(size);
            return Err(e.into());
        }
    };
    let (h, person) = (side.holder.clone(), side.person_of(&peer));
    let kept = side
        .tasks
        .blocking(move || h.keep(&owner, person, &share, &bytes))
        .await?;
    Ok(match kept {
        Ok(()) => {
            side.metrics.held.set(side.holder.used() as i64);
            Response::Stored
        }
        Err(r) => {
            side.metrics.refused.inc();
            tracing::info!(%peer, reason = %r, "share refused");
            Response::Refused {
                reason: r.to_string(),
            }
        }
    })
}
