//! Connected peers: their connections, their best path (direct or relayed), the events
//! services get about them, and relayed connections that close once a direct one is up.

use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::core::ConnectedPoint;
use libp2p::swarm::ConnectionId;
use tokio::sync::{broadcast, oneshot};

use crate::region::relay_of;
use crate::{Path, PeerEvent, Region};

/// Most callers waiting at once for a closing connection to go.
const MAX_USABLE_WAITERS: usize = 1024;

pub(crate) struct Conn {
    pub id: ConnectionId,
    pub endpoint: ConnectedPoint,
    /// Being closed (a relayed connection a direct one replaced).
    pub closing: bool,
}

impl Conn {
    /// The address the connection goes through (for a relayed one we accepted, our own
    /// relayed address, which names the relay).
    pub fn via(&self) -> &libp2p::Multiaddr {
        match &self.endpoint {
            ConnectedPoint::Dialer { address, .. } => address,
            ConnectedPoint::Listener { local_addr, .. } => local_addr,
        }
    }

    /// The address of the other end: where a direct peer's connection comes from.
    fn remote(&self) -> &libp2p::Multiaddr {
        match &self.endpoint {
            ConnectedPoint::Dialer { address, .. } => address,
            ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr,
        }
    }

    fn path(&self) -> Path {
        match relay_of(self.via()).filter(|_| self.endpoint.is_relayed()) {
            Some(relay) => Path::Relayed { relay },
            None => Path::Direct,
        }
    }
}

pub(crate) struct Peers {
    conns: HashMap<PeerId, Vec<Conn>>,
    events: broadcast::Sender<PeerEvent>,
    waiters: HashMap<PeerId, Vec<oneshot::Sender<()>>>,
}

impl Peers {
    pub fn new(events: broadcast::Sender<PeerEvent>) -> Self {
        Self {
            conns: HashMap::new(),
            events,
            waiters: HashMap::new(),
        }
    }

    /// The best path to `peer` among connections that are not closing: direct if any.
    pub fn path(&self, peer: &PeerId) -> Option<Path> {
        let conns = self.conns.get(peer)?;
        let open = conns.iter().filter(|c| !c.closing);
        let mut best = None;
        for c in open {
            match c.path() {
                Path::Direct => return Some(Path::Direct),
                p => best = best.or(Some(p)),
            }
        }
        best
    }

    /// The peer's region: the subnet its first open direct connection comes from, else
    /// the relay of its relayed one.
    pub fn region(&self, peer: &PeerId) -> Option<Region> {
        match self.path(peer)? {
            Path::Relayed { relay } => Some(Region::Relay(relay)),
            Path::Direct => self
                .conns
                .get(peer)?
                .iter()
                .filter(|c| !c.closing && c.path() == Path::Direct)
                .find_map(|c| Region::of_addr(c.remote())),
        }
    }

    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.conns.contains_key(peer)
    }

    pub fn has_direct(&self, peer: &PeerId) -> bool {
        self.path(peer) == Some(Path::Direct)
    }

    /// Where the peer's direct connections come from (or go to).
    pub fn direct_remotes(&self, peer: &PeerId) -> Vec<libp2p::Multiaddr> {
        self.conns
            .get(peer)
            .into_iter()
            .flatten()
            .filter(|c| !c.endpoint.is_relayed())
            .map(|c| c.remote().clone())
            .collect()
    }

    pub fn get(&self, peer: &PeerId) -> Option<&[Conn]> {
        self.conns.get(peer).map(Vec::as_slice)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &Vec<Conn>)> {
        self.conns.iter()
    }

    /// Connected peers and their best paths.
    pub fn list(&self) -> Vec<(PeerId, Path)> {
        self.conns
            .keys()
            .filter_map(|p| self.path(p).map(|path| (*p, path)))
            .collect()
    }

    fn emit(&self, e: PeerEvent) {
        // No subscriber is fine.
        let _ = self.events.send(e);
    }

    /// A connection is up. Returns true when it is the peer's first. A direct connection
    /// next to relayed ones marks those closing; their IDs are returned for closing.
    pub fn on_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        endpoint: ConnectedPoint,
    ) -> (bool, Vec<ConnectionId>) {
        let before = self.path(&peer);
        let list = self.conns.entry(peer).or_default();
        let first = list.is_empty();
        list.push(Conn {
            id,
            endpoint,
            closing: false,
        });
        let close = self.close_relayed(&peer);
        match (before, self.path(&peer)) {
            (None, Some(path)) => self.emit(PeerEvent::Connected { peer, path }),
            (Some(a), Some(b)) if a != b => self.emit(PeerEvent::PathChanged { peer, path: b }),
            _ => {}
        }
        (first, close)
    }

    /// With a direct connection up, relayed ones to the same peer are marked closing.
    fn close_relayed(&mut self, peer: &PeerId) -> Vec<ConnectionId> {
        let Some(list) = self.conns.get_mut(peer) else {
            return Vec::new();
        };
        let direct = list.iter().any(|c| !c.closing && !c.endpoint.is_relayed());
        if !direct {
            return Vec::new();
        }
        list.iter_mut()
            .filter(|c| c.endpoint.is_relayed() && !c.closing)
            .map(|c| {
                c.closing = true;
                c.id
            })
            .collect()
    }

    /// A connection closed. Returns true when it was the peer's last.
    pub fn on_closed(&mut self, peer: PeerId, id: ConnectionId) -> bool {
        let before = self.path(&peer);
        let Some(list) = self.conns.get_mut(&peer) else {
            return false;
        };
        list.retain(|c| c.id != id);
        let last = list.is_empty();
        if last {
            self.conns.remove(&peer);
        }
        match (before, self.path(&peer)) {
            (Some(_), None) => self.emit(PeerEvent::Closed { peer }),
            (Some(a), Some(b)) if a != b => self.emit(PeerEvent::PathChanged { peer, path: b }),
            _ => {}
        }
        if !self.closing(&peer) {
            for w in self.waiters.remove(&peer).unwrap_or_default() {
                let _ = w.send(());
            }
        }
        last
    }

    fn closing(&self, peer: &PeerId) -> bool {
        self.conns
            .get(peer)
            .is_some_and(|l| l.iter().any(|c| c.closing))
    }

    /// Answers `reply` once `peer` has no connection that is closing (at once if it has
    /// none), so a new stream cannot land on one.
    pub fn await_usable(&mut self, peer: PeerId, reply: oneshot::Sender<()>) {
        let waiting: usize = self.waiters.values().map(Vec::len).sum();
        if !self.closing(&peer) || waiting >= MAX_USABLE_WAITERS {
            let _ = reply.send(());
            return;
        }
        self.waiters.entry(peer).or_default().push(reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::Multiaddr;
    use libp2p::core::Endpoint;
    use libp2p::core::transport::PortUse;

    fn dialer(addr: &str) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: addr.parse().unwrap_or_else(|_| Multiaddr::empty()),
            role_override: Endpoint::Dialer,
            port_use: PortUse::New,
        }
    }

    #[tokio::test]
    async fn a_direct_connection_replaces_a_relayed_one_and_services_hear_of_it() {
        let (tx, mut rx) = broadcast::channel(16);
        let mut peers = Peers::new(tx);
        let peer = PeerId::random();
        let relay = PeerId::random();
        let relayed = dialer(&format!(
            "/ip4/10.0.0.1/tcp/1/p2p/{relay}/p2p-circuit/p2p/{peer}"
        ));
        let (c1, c2) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        assert_eq!(peers.on_established(peer, c1, relayed), (true, vec![]));
        assert_eq!(
            rx.try_recv().ok(),
            Some(PeerEvent::Connected {
                peer,
                path: Path::Relayed { relay }
            })
        );
        let (first, close) = peers.on_established(peer, c2, dialer("/ip4/10.0.0.2/tcp/2"));
        assert!(!first);
        assert_eq!(close, vec![c1], "the relayed connection is closed");
        assert_eq!(
            rx.try_recv().ok(),
            Some(PeerEvent::PathChanged {
                peer,
                path: Path::Direct
            })
        );
        // A stream opened now waits for the closing connection to go.
        let (wtx, mut wrx) = oneshot::channel();
        peers.await_usable(peer, wtx);
        assert!(wrx.try_recv().is_err());
        assert!(!peers.on_closed(peer, c1));
        assert!(wrx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "the path did not change again");
        assert!(peers.on_closed(peer, c2));
        assert_eq!(rx.try_recv().ok(), Some(PeerEvent::Closed { peer }));
    }
}
