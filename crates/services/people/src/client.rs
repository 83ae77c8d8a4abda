//! The asking side: hellos to peers as they connect, and joining a person with a link code.

use std::time::Duration;

use kith_core::frame;
use kith_core::person::to_hex;
use kith_overlay::{PeerEvent, PeerId};
use tokio::sync::broadcast::error::RecvError;

use crate::book::Book;
use crate::protocol::{
    self, BUSY, HelloAnswer, LinkCode, LinkRequest, LinkResponse, MAX_DEVICES, MAX_FRAME,
};
use crate::state::Inner;
use crate::{Error, Refusal};

/// Longest hello or link exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);
/// A peer that answers a hello with busy is greeted again this much later, doubling, at
/// most [`BUSY_TRIES`] times in all (within the exchange's time).
const BUSY_WAIT: Duration = Duration::from_secs(1);
const BUSY_TRIES: u32 = 4;

/// Sends our hello to `peer` and takes its answer.
async fn greet_once(inner: &Inner, peer: PeerId) -> Result<(), Error> {
    let mut s = inner
        .overlay()
        .open_stream(peer, protocol::PERSON_PROTOCOL)
        .await?;
    frame::write(&mut s, &inner.hello()?).await?;
    match frame::read::<_, HelloAnswer>(&mut s, MAX_FRAME).await? {
        Some(HelloAnswer::Hello(h)) => {
            inner.accept_hello(peer, h).await?;
        }
        Some(HelloAnswer::Refused { refused }) if refused == BUSY => {
            return Err(Error::Busy(peer));
        }
        Some(HelloAnswer::Refused { refused }) => {
            return Err(Error::PeerRefused {
                peer,
                reason: refused,
            });
        }
        None => {}
    }
    Ok(())
}

/// [`greet_once`], again a little later while the peer says it is busy.
async fn greet(inner: &Inner, peer: PeerId) -> Result<(), Error> {
    let mut wait = BUSY_WAIT;
    for _ in 1..BUSY_TRIES {
        match greet_once(inner, peer).await {
            Err(Error::Busy(_)) => {
                tracing::debug!(%peer, ?wait, "peer busy; greeting it again shortly");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
    greet_once(inner, peer).await
}

/// Greets every peer as it connects (the side with the smaller peer ID opens), and
/// forgets peers as they go.
pub(crate) async fn greet_peers(inner: &std::sync::Arc<Inner>) {
    let me = inner.overlay().peer_id();
    let mut events = inner.overlay().peer_events();
    let mut first: Vec<PeerId> = inner
        .overlay()
        .connected_peers()
        .await
        .map(|v| v.into_iter().map(|p| p.peer).collect())
        .unwrap_or_default();
    loop {
        for peer in std::mem::take(&mut first).into_iter().filter(|p| me < *p) {
            let i = inner.clone();
            inner.tasks().spawn(async move {
                match tokio::time::timeout(EXCHANGE_TIMEOUT, greet(&i, peer)).await {
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "hello failed"),
                    Err(_) => tracing::debug!(%peer, "hello timed out"),
                    Ok(Ok(())) => {}
                }
            });
        }
        let e = tokio::select! {
            () = inner.tasks().shutdown().cancelled() => return,
            e = events.recv() => e,
        };
        match e {
            Ok(PeerEvent::Connected { peer, .. }) => first.push(peer),
            Ok(PeerEvent::Closed { peer }) => inner.forget(&peer),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                first = inner
                    .overlay()
                    .connected_peers()
                    .await
                    .map(|v| v.into_iter().map(|p| p.peer).collect())
                    .unwrap_or_default();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Links this device to the person whose device handed out `code`.
pub(crate) async fn join(inner: &Inner, code: &LinkCode) -> Result<(), Error> {
    if inner.book()?.devices.len() > 1 {
        return Err(Refusal::HasOtherDevices.into());
    }
    let linker = kith_overlay::peer_of(&code.addr).ok_or(Refusal::CodeNamesNoDevice)?;
    let me = inner.overlay().peer_id();
    let req = LinkRequest {
        proof: to_hex(protocol::proof(&code.secret, &me).as_bytes()),
        seal: to_hex(&inner.seal_public()?),
    };
    let answer = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        inner.overlay().dial(code.addr.clone()).await?;
        let mut s = inner
            .overlay()
            .open_stream(linker, protocol::LINK_PROTOCOL)
            .await?;
        frame::write(&mut s, &req).await?;
        frame::read::<_, LinkResponse>(&mut s, MAX_FRAME)
            .await?
            .ok_or(Error::Refused(Refusal::Closed))
    })
    .await
    .map_err(|_| Error::Timeout { peer: linker })??;
    let (cert, devices, revoked) = match answer {
        LinkResponse::Linked {
            cert,
            devices,
            revoked,
        } => (cert, devices, revoked),
        LinkResponse::Refused { reason } => {
            return Err(Error::PeerRefused {
                peer: linker,
                reason,
            });
        }
    };
    cert.verify_for(&me)?;
    let person = cert.person;
    let mut book = Book {
        person,
        devices: Vec::new(),
        revoked: Vec::new(),
    };
    for c in devices.into_iter().take(MAX_DEVICES) {
        if c.person == person && c.verify().is_ok() {
            book.add(c)?;
        }
    }
    book.add(cert)?;
    book.revoked = revoked
        .into_iter()
        .filter(|r| r.person == person && r.verify().is_ok())
        .collect();
    if !book.trusts(&linker) {
        return Err(Refusal::LinkerNotOfPerson.into());
    }
    inner.become_device_of(book).await?;
    tracing::info!(%person, "this device now acts for the person");
    // Every connected peer learns it from a new hello (the linking device too: it then
    // tells this device which groups the person is in).
    greet_all(inner).await;
    Ok(())
}

/// Greets every connected peer again, whichever side opened before.
async fn greet_all(inner: &Inner) {
    let peers: Vec<PeerId> = inner
        .overlay()
        .connected_peers()
        .await
        .map(|v| v.into_iter().map(|p| p.peer).collect())
        .unwrap_or_default();
    let greets = peers.into_iter().map(|peer| async move {
        match tokio::time::timeout(EXCHANGE_TIMEOUT, greet(inner, peer)).await {
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "hello failed"),
            Err(_) => tracing::debug!(%peer, "hello timed out"),
            Ok(Ok(())) => {}
        }
    });
    futures::future::join_all(greets).await;
}
