//! Finds peers that may have the content: peers a search named first, then connected
//! peers, then the DHT, asked again with a growing gap while the download runs; and every
//! peer as it connects (a provider that went away may come back on its own).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kith_core::ContentId;
use kith_overlay::{PeerEvent, PeerId};
use tokio::sync::{broadcast, mpsc};

use crate::state::Inner;

/// First gap before the DHT is asked again for providers; it doubles up to [`REFIND_MAX`].
const REFIND: Duration = Duration::from_secs(2);
/// Longest gap between two provider lookups while a download runs.
const REFIND_MAX: Duration = Duration::from_secs(15);

/// How a candidate was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Via {
    /// A provider record under the content ID (public content).
    Public,
    /// A provider record under a group's locator.
    Group(String),
    /// Connected, hinted by a search, or connecting.
    Peer,
}

/// Looks `key` up in the DHT and passes the providers on; false once the download is
/// gone.
async fn lookup(inner: &Inner, key: Vec<u8>, via: Via, tx: &mpsc::Sender<(PeerId, Via)>) -> bool {
    if let Ok(mut rx) = inner.overlay().find_providers(key).await {
        while let Some(p) = rx.recv().await {
            if tx.send((p, via.clone())).await.is_err() {
                return false;
            }
        }
    }
    true
}

/// Feeds candidates into `tx` until the download drops the receiver or the node stops.
/// `round` is set once the first round (hinted and connected peers, then the DHT) is in.
pub(crate) async fn run(
    inner: &Inner,
    id: ContentId,
    tx: mpsc::Sender<(PeerId, Via)>,
    round: &AtomicBool,
) {
    // Subscribed before the connected peers are read, so none is missed in between.
    let mut events = inner.overlay().peer_events();
    let mut first: Vec<PeerId> = inner.hinted(&id);
    if let Ok(peers) = inner.overlay().connected_peers().await {
        first.extend(peers.into_iter().map(|p| p.peer));
    }
    for p in first {
        if tx.send((p, Via::Peer)).await.is_err() {
            return;
        }
    }
    let mut gap = REFIND;
    loop {
        if !lookup(inner, id.dht_key(), Via::Public, &tx).await {
            return;
        }
        for (group, key) in inner.scopes().locators(&id.dht_key()) {
            if !lookup(inner, key, Via::Group(group), &tx).await {
                return;
            }
        }
        round.store(true, Ordering::Relaxed);
        let wait = tokio::time::sleep(gap);
        tokio::pin!(wait);
        loop {
            let connected = tokio::select! {
                () = inner.tasks().shutdown().cancelled() => return,
                () = &mut wait => break,
                e = events.recv() => match e {
                    Ok(PeerEvent::Connected { peer, .. }) => vec![peer],
                    Ok(_) => continue,
                    // Fell behind: every connected peer, once more.
                    Err(broadcast::error::RecvError::Lagged(_)) => inner
                        .overlay()
                        .connected_peers()
                        .await
                        .map(|v| v.into_iter().map(|p| p.peer).collect())
                        .unwrap_or_default(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            for p in connected {
                if tx.send((p, Via::Peer)).await.is_err() {
                    return;
                }
            }
        }
        gap = (gap * 2).min(REFIND_MAX);
    }
}
