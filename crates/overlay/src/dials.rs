//! Dials asked for through [`crate::Overlay::dial`], answered when they connect or fail. A
//! peer that is already connected, or being dialled, gets no second connection.

use std::collections::HashMap;

use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::oneshot;

use crate::OverlayError;
use crate::behaviour::Behaviour;

/// Most pending `dial` replies kept at once.
const MAX_PENDING_DIALS: usize = 256;

type Reply = oneshot::Sender<Result<(), OverlayError>>;

#[derive(Default)]
pub(crate) struct Dials {
    pending: HashMap<ConnectionId, Reply>,
    /// Calls for a peer that another dial is already connecting to.
    waiters: HashMap<PeerId, Vec<Reply>>,
}

impl Dials {
    pub fn dial(&mut self, swarm: &mut Swarm<Behaviour>, addr: Multiaddr, reply: Reply) {
        let waiting = self.waiters.values().map(Vec::len).sum::<usize>();
        if self.pending.len() + waiting >= MAX_PENDING_DIALS {
            let _ = reply.send(Err(OverlayError::Busy("dials")));
            return;
        }
        let peer = match addr.iter().last() {
            Some(Protocol::P2p(peer)) => Some(peer),
            _ => None,
        };
        let opts = match peer {
            Some(peer) if swarm.is_connected(&peer) => {
                let _ = reply.send(Ok(()));
                return;
            }
            Some(peer) => {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                DialOpts::peer_id(peer)
                    .addresses(vec![addr])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build()
            }
            None => DialOpts::unknown_peer_id().address(addr).build(),
        };
        let id = opts.connection_id();
        match (swarm.dial(opts), peer) {
            (Ok(()), _) => {
                self.pending.insert(id, reply);
            }
            (Err(DialError::DialPeerConditionFalse(_)), Some(peer)) => {
                self.waiters.entry(peer).or_default().push(reply);
            }
            (Err(e), _) => {
                let _ = reply.send(Err(OverlayError::Dial(e.to_string())));
            }
        }
    }

    pub fn on_connected(&mut self, id: ConnectionId, peer: PeerId) {
        if let Some(reply) = self.pending.remove(&id) {
            let _ = reply.send(Ok(()));
        }
        for reply in self.waiters.remove(&peer).unwrap_or_default() {
            let _ = reply.send(Ok(()));
        }
    }

    /// A dial failed; `still_connected` when another connection to the peer is up.
    pub fn on_failed(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        error: &str,
        still_connected: bool,
    ) {
        if let Some(reply) = self.pending.remove(&id) {
            let _ = reply.send(Err(OverlayError::Dial(error.to_owned())));
        }
        // The dial they waited on failed (or one of several did; callers retry).
        if let Some(p) = peer
            && !still_connected
        {
            for reply in self.waiters.remove(&p).unwrap_or_default() {
                let _ = reply.send(Err(OverlayError::Dial(error.to_owned())));
            }
        }
    }
}
