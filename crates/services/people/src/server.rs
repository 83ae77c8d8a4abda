//! The serving side of `/kith/person/1.0.0` and `/kith/link/1.0.0`, behind the overlay's
//! inbound limits.

use std::sync::Arc;
use std::time::Duration;

use kith_core::frame;
use kith_core::person::from_hex;
use kith_overlay::inbound::Limits;
use kith_overlay::{PeerId, Stream};

use crate::protocol::{self, BUSY, Hello, HelloAnswer, LinkRequest, LinkResponse, MAX_FRAME};
use crate::state::Inner;
use crate::{Error, Refusal};

/// Inbound streams of either protocol: per peer, and in total.
const LIMITS: Limits = Limits {
    per_peer: 4,
    total: 128,
};
/// Time for a peer to send its part.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A hello stream over the limits is told so (an empty answer would look like a device
/// with nothing to say).
fn busy_hello(_: kith_overlay::inbound::Refusal) -> Vec<u8> {
    frame::encode(&HelloAnswer::busy()).unwrap_or_default()
}

fn busy_link(_: kith_overlay::inbound::Refusal) -> Vec<u8> {
    frame::encode(&LinkResponse::Refused {
        reason: BUSY.into(),
    })
    .unwrap_or_default()
}

pub(crate) fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    let hellos = inner
        .overlay()
        .accept(protocol::PERSON_PROTOCOL, LIMITS, Arc::new(busy_hello))?;
    let links = inner
        .overlay()
        .accept(protocol::LINK_PROTOCOL, LIMITS, Arc::new(busy_link))?;
    let i = inner.clone();
    hellos.serve(inner.tasks(), "hello", READ_TIMEOUT, move |peer, stream| {
        let inner = i.clone();
        async move { hello(&inner, peer, stream).await }
    });
    let i = inner.clone();
    links.serve(inner.tasks(), "link", READ_TIMEOUT, move |peer, stream| {
        let inner = i.clone();
        async move { link(&inner, peer, stream).await }
    });
    Ok(())
}

/// A peer's hello: check it, then answer with ours.
async fn hello(inner: &Inner, peer: PeerId, mut s: Stream) -> Result<(), Error> {
    let Some(h) = frame::read::<_, Hello>(&mut s, MAX_FRAME).await? else {
        return Ok(());
    };
    inner.accept_hello(peer, h).await?;
    frame::write(&mut s, &HelloAnswer::Hello(inner.hello()?)).await?;
    Ok(())
}

/// A device asking to be linked: it must prove it knows an outstanding code's secret.
async fn link(inner: &Inner, peer: PeerId, mut s: Stream) -> Result<(), Error> {
    let Some(req) = frame::read::<_, LinkRequest>(&mut s, MAX_FRAME).await? else {
        return Ok(());
    };
    let answer = match check(inner, &peer, &req) {
        Ok(seal) => {
            let cert = inner.issue(&peer, &seal).await?;
            tracing::info!(device = %peer, "device linked");
            let b = inner.book()?.clone();
            LinkResponse::Linked {
                cert,
                devices: b.devices,
                revoked: b.revoked,
            }
        }
        Err(e) => {
            inner.refused(&peer, &e);
            LinkResponse::Refused {
                reason: e.to_string(),
            }
        }
    };
    frame::write(&mut s, &answer).await?;
    Ok(())
}

/// The seal key of a link request whose proof matches an outstanding code (taken).
fn check(inner: &Inner, peer: &PeerId, req: &LinkRequest) -> Result<[u8; 32], Error> {
    let proof: [u8; 32] = from_hex(&req.proof)
        .and_then(|b| b.try_into().ok())
        .ok_or(Refusal::MalformedProof)?;
    let seal: [u8; 32] = from_hex(&req.seal)
        .and_then(|b| b.try_into().ok())
        .ok_or(Refusal::MalformedSeal)?;
    if !inner.take_code(&blake3::Hash::from(proof), peer)? {
        return Err(Refusal::UnknownCode.into());
    }
    Ok(seal)
}
