//! Peers known to the node: those in its routing table, and those the node names with
//! [`crate::Overlay::set_known_peers`] (its groups' devices, its person's other devices).
//! The addresses their direct connections come from (or were dialled at) keep a share of
//! the inbound handshake slots (`guard`): a handshake names no peer before it completes,
//! so a known peer is recognised by where it connects from.

use std::collections::HashSet;

use libp2p::{PeerId, Swarm};

use crate::behaviour::Behaviour;
use crate::peers::Peers;

/// Most peers the node may name: a person in a few large groups.
pub(crate) const MAX_NAMED: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Known {
    named: HashSet<PeerId>,
}

/// Whether `peer` is in Kademlia's routing table.
fn in_routing_table(swarm: &mut Swarm<Behaviour>, peer: &PeerId) -> bool {
    swarm
        .behaviour_mut()
        .kad
        .kbucket(*peer)
        .is_some_and(|b| b.iter().any(|e| e.node.key.preimage() == peer))
}

impl Known {
    /// The peers the node names from now on (the first [`MAX_NAMED`]); the sources of
    /// those connected now are noted at once.
    pub fn set(&mut self, named: Vec<PeerId>, swarm: &mut Swarm<Behaviour>, peers: &Peers) {
        self.named = named.into_iter().take(MAX_NAMED).collect();
        let connected: Vec<PeerId> = self
            .named
            .iter()
            .filter(|p| peers.is_connected(p))
            .copied()
            .collect();
        for p in connected {
            self.note(swarm, peers, p);
        }
    }

    /// Something changed about `peer` (a connection, identify, the routing table): if it is
    /// known, the guard learns where its direct connections come from.
    pub fn note(&self, swarm: &mut Swarm<Behaviour>, peers: &Peers, peer: PeerId) {
        if !self.named.contains(&peer) && !in_routing_table(swarm, &peer) {
            return;
        }
        for addr in peers.direct_remotes(&peer) {
            swarm.behaviour_mut().guard.note_known(&addr);
        }
    }
}
