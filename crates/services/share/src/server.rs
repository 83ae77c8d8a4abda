//! Serving content to peers over `/kith/share/1.0.0`, behind the overlay's inbound limits
//! (per peer and in total; a stream over them gets the `busy` status).

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use kith_core::ContentId;
use kith_core::id::Kind;
use kith_overlay::inbound::Limits;
use kith_overlay::{PeerId, Stream};

use crate::Error;
use crate::protocol::{self, Status, WireError};
use crate::rate::SLICE;
use crate::state::Inner;

/// Inbound streams: per peer, and in total.
pub const LIMITS: Limits = Limits {
    per_peer: 16,
    total: 512,
};
/// A stream that sends no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest time to send one response.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    let inbound = inner.overlay().accept(
        protocol::PROTOCOL,
        LIMITS,
        Arc::new(|_| vec![Status::Busy as u8]),
    )?;
    let i = inner.clone();
    // A stream carries many requests, each with its own timeouts (serve_stream).
    inbound.serve_long(inner.tasks(), "share stream", move |peer, stream| {
        let inner = i.clone();
        async move { serve_stream(&inner, peer, stream).await }
    });
    Ok(())
}

/// Responses prepared ahead of the one being sent, per stream: the next chunk is read and
/// verified while the current one goes out. Bounds queued bytes per stream.
const PREFETCH: usize = 2;

/// What the reader half hands the writer half.
enum Next {
    Block(ContentId, Result<Option<Vec<u8>>, Error>),
    Bad,
}

async fn serve_stream(inner: &Inner, peer: PeerId, mut stream: Stream) -> Result<(), WireError> {
    // Tell the client its stream was taken (streams can be dropped before they reach us).
    tokio::time::timeout(
        SEND_TIMEOUT,
        protocol::write_status(&mut stream, Status::Ok),
    )
    .await
    .map_err(|_| WireError::Protocol("send timed out".into()))??;
    let (mut rd, mut wr) = stream.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Next>(PREFETCH);
    let reader = async move {
        loop {
            // Stop reading as soon as the writer half is gone.
            let read = tokio::select! {
                () = tx.closed() => return Ok(()),
                r = tokio::time::timeout(IDLE_TIMEOUT, protocol::read_request(&mut rd)) => r,
            };
            let req = match read {
                Err(_) | Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(id))) => id,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "bad request");
                    let _ = tx.send(Next::Bad).await;
                    return Err(e);
                }
            };
            tracing::trace!(%peer, id = %req, "request");
            // A group's content for anyone but its members' devices is "not found", the
            // same as content that does not exist. Checked on every request, so a
            // removal or revocation cuts off streams that are open.
            let data = if inner.may_serve(&peer, &req) {
                inner.load_block(req).await
            } else {
                Ok(None)
            };
            if req.kind() == Kind::Manifest
                && matches!(data, Ok(Some(_)))
                && inner.is_public_share(&req)
            {
                let _ = inner
                    .events()
                    .send(crate::Event::Requested { id: req, peer });
            }
            if tx.send(Next::Block(req, data)).await.is_err() {
                return Ok(());
            }
        }
    };
    // The writer owns the receiving end: when it stops, the reader stops too.
    let writer = async move {
        while let Some(next) = rx.recv().await {
            match next {
                Next::Bad => {
                    let _ = protocol::write_status(&mut wr, Status::BadRequest).await;
                    break;
                }
                Next::Block(id, data) => {
                    tracing::trace!(%peer, %id, "responding");
                    let sent =
                        tokio::time::timeout(SEND_TIMEOUT, respond(inner, &mut wr, peer, id, data))
                            .await;
                    match sent {
                        Ok(Ok(())) => tracing::trace!(%peer, %id, "sent"),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, %id, error = %e, "cannot send response");
                            return Err(e);
                        }
                        Err(_) => return Err(WireError::Protocol("send timed out".into())),
                    }
                }
            }
        }
        let _ = wr.close().await;
        Ok::<_, WireError>(())
    };
    let (r, w) = futures::join!(reader, writer);
    r.and(w)
}

async fn respond<W: futures::AsyncWrite + Unpin>(
    inner: &Inner,
    stream: &mut W,
    peer: kith_overlay::PeerId,
    id: ContentId,
    data: Result<Option<Vec<u8>>, Error>,
) -> Result<(), WireError> {
    match data {
        Ok(Some(mut bytes)) => {
            if inner.config().corrupt_uploads
                && id.kind() == Kind::Raw
                && let Some(b) = bytes.first_mut()
            {
                *b ^= 0xff;
            }
            protocol::write_ok_header(stream, bytes.len()).await?;
            if inner.upload_limit().is_limited() {
                for slice in bytes.chunks(SLICE) {
                    inner.upload_limit().acquire(slice.len()).await;
                    stream.write_all(slice).await?;
                }
            } else {
                stream.write_all(&bytes).await?;
            }
            inner.metrics().bytes_sent.inc_by(bytes.len() as u64);
            inner.traffic().count(peer, bytes.len() as u64, 0);
            stream.flush().await?;
            inner.metrics().blocks_served.inc();
            Ok(())
        }
        Ok(None) => protocol::write_status(stream, Status::NotFound).await,
        Err(e) => {
            tracing::warn!(%id, error = %e, "cannot load block");
            protocol::write_status(stream, Status::Internal).await
        }
    }
}
