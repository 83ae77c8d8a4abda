//! The DHT part of the overlay: provider records (announced, re-announced to peers that
//! should hold them, looked up), DHT records checked by the validator of their key prefix,
//! and which peers serve the DHT.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kad::store::RecordStore;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::Behaviour;
use crate::{KAD_PROTOCOL, OverlayError, RecordValidator, Rejected};

/// Most concurrent lookups of each kind.
const MAX_LOOKUPS: usize = 256;
/// Most peers remembered as DHT servers (to announce again to when they come back).
const MAX_DHT_SERVERS: usize = 4096;
/// Most new DHT peers remembered between two re-announcements; past it, every key is
/// announced again.
const MAX_REANNOUNCE_PEERS: usize = 1024;
/// Most record key prefixes registered.
const MAX_VALIDATORS: usize = 64;
/// Addresses taken from one identify message.
const MAX_IDENTIFY_ADDRS: usize = 16;

pub(crate) struct Dht {
    /// Peers seen serving the DHT (identify), at most [`MAX_DHT_SERVERS`].
    servers: HashSet<PeerId>,
    lookups: HashMap<kad::QueryId, (mpsc::Sender<PeerId>, HashSet<PeerId>)>,
    providing: HashSet<Vec<u8>>,
    /// DHT peers that joined the routing table (or came back) since the last re-announce:
    /// keys they should hold a provider record for are announced again.
    reannounce_for: HashSet<PeerId>,
    /// Too many peers joined to check them one by one: announce every key.
    reannounce_all: bool,
    bootstrapped: bool,
    validators: Vec<(Vec<u8>, Arc<dyn RecordValidator>)>,
    record_gets: HashMap<kad::QueryId, mpsc::Sender<Vec<u8>>>,
    record_puts: HashMap<kad::QueryId, oneshot::Sender<Result<usize, OverlayError>>>,
    closest: HashMap<kad::QueryId, (Vec<u8>, oneshot::Sender<Vec<PeerId>>)>,
    rejected: Counter,
}

/// The keys among `keys` for which one of `peers` is among the closest peers in the
/// routing table (the peers a provider record is stored on).
pub(crate) fn keys_closest_to(
    kad: &mut kad::Behaviour<kad::store::MemoryStore>,
    keys: &HashSet<Vec<u8>>,
    peers: &HashSet<PeerId>,
) -> Vec<Vec<u8>> {
    keys.iter()
        .filter(|key| {
            let target = kad::KBucketKey::new(kad::RecordKey::new(key));
            kad.get_closest_local_peers(&target)
                .take(kad::K_VALUE.get())
                .any(|p| peers.contains(p.preimage()))
        })
        .cloned()
        .collect()
}

pub(crate) fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(a) => a.is_loopback(),
        libp2p::multiaddr::Protocol::Ip6(a) => a.is_loopback(),
        _ => false,
    })
}

impl Dht {
    pub fn new(rejected: Counter) -> Self {
        Self {
            servers: HashSet::new(),
            lookups: HashMap::new(),
            providing: HashSet::new(),
            reannounce_for: HashSet::new(),
            reannounce_all: false,
            bootstrapped: false,
            validators: Vec::new(),
            record_gets: HashMap::new(),
            record_puts: HashMap::new(),
            closest: HashMap::new(),
            rejected,
        }
    }

    pub fn providing(&self) -> usize {
        self.providing.len()
    }

    pub fn register(&mut self, prefix: Vec<u8>, v: Arc<dyn RecordValidator>) {
        self.validators.retain(|(p, _)| *p != prefix);
        if self.validators.len() < MAX_VALIDATORS {
            self.validators.push((prefix, v));
        }
    }

    /// Checks a record with the validator of the longest prefix of its key.
    fn check(&self, key: &[u8], value: &[u8], existing: Option<&[u8]>) -> Result<(), Rejected> {
        self.validators
            .iter()
            .filter(|(p, _)| key.starts_with(p))
            .max_by_key(|(p, _)| p.len())
            .ok_or_else(|| Rejected("no service takes records under this key".into()))?
            .1
            .validate(key, value, existing)
    }

    /// Starts (or renews) announcing `key` as provided by this node.
    fn announce(swarm: &mut Swarm<Behaviour>, key: &[u8]) {
        let record = kad::RecordKey::new(&key);
        if let Err(e) = swarm.behaviour_mut().kad.start_providing(record) {
            tracing::warn!(error = %e, "cannot announce content");
        }
    }

    pub fn start_providing(&mut self, swarm: &mut Swarm<Behaviour>, key: Vec<u8>) {
        Self::announce(swarm, &key);
        self.providing.insert(key);
    }

    pub fn stop_providing(&mut self, swarm: &mut Swarm<Behaviour>, key: Vec<u8>) {
        swarm
            .behaviour_mut()
            .kad
            .stop_providing(&kad::RecordKey::new(&key));
        self.providing.remove(&key);
    }

    pub fn find_providers(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        key: Vec<u8>,
        tx: mpsc::Sender<PeerId>,
    ) {
        if self.lookups.len() >= MAX_LOOKUPS {
            tracing::warn!("too many provider lookups in flight; dropping one");
            return;
        }
        let id = swarm
            .behaviour_mut()
            .kad
            .get_providers(kad::RecordKey::new(&key));
        self.lookups.insert(id, (tx, HashSet::new()));
    }

    pub fn put_record(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        key: Vec<u8>,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<usize, OverlayError>>,
    ) {
        if self.record_puts.len() >= MAX_LOOKUPS {
            let _ = reply.send(Err(OverlayError::Busy("record puts")));
            return;
        }
        if let Err(e) = self.check(&key, &value, None) {
            let _ = reply.send(Err(e.into()));
            return;
        }
        let record = kad::Record::new(key, value);
        match swarm
            .behaviour_mut()
            .kad
            .put_record(record, kad::Quorum::One)
        {
            Ok(id) => {
                self.record_puts.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(OverlayError::Dial(format!("{e:?}"))));
            }
        }
    }

    pub fn get_record(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        key: Vec<u8>,
        tx: mpsc::Sender<Vec<u8>>,
    ) {
        if self.record_gets.len() >= MAX_LOOKUPS {
            tracing::warn!("too many record lookups in flight; dropping one");
            return;
        }
        let id = swarm
            .behaviour_mut()
            .kad
            .get_record(kad::RecordKey::new(&key));
        self.record_gets.insert(id, tx);
    }

    pub fn closest_peers(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        key: Vec<u8>,
        reply: oneshot::Sender<Vec<PeerId>>,
    ) {
        if self.closest.len() >= MAX_LOOKUPS {
            tracing::warn!("too many closest-peer lookups in flight; dropping one");
            return;
        }
        let id = swarm.behaviour_mut().kad.get_closest_peers(key.clone());
        self.closest.insert(id, (key, reply));
    }

    /// A closest-peers lookup ended: keeps the peers' addresses and answers with them and
    /// this node, closest first.
    fn closest_found(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        id: kad::QueryId,
        peers: Vec<kad::PeerInfo>,
    ) {
        let Some((key, reply)) = self.closest.remove(&id) else {
            return;
        };
        let target = kad::KBucketKey::new(key);
        let mut ids: Vec<PeerId> = Vec::with_capacity(peers.len() + 1);
        for p in peers {
            for a in p.addrs.into_iter().take(MAX_IDENTIFY_ADDRS) {
                swarm.add_peer_address(p.peer_id, a);
            }
            ids.push(p.peer_id);
        }
        ids.push(*swarm.local_peer_id());
        ids.sort_by_key(|p| kad::KBucketKey::from(*p).distance(&target));
        ids.dedup();
        ids.truncate(kad::K_VALUE.get());
        let _ = reply.send(ids);
    }

    /// Notes that `peer` (a DHT server) joined the routing table or came back: it may be
    /// one of the peers that should hold provider records for what this node provides.
    fn reannounce_later(&mut self, peer: PeerId) {
        if self.providing.is_empty() {
            return;
        }
        if self.reannounce_for.len() < MAX_REANNOUNCE_PEERS {
            self.reannounce_for.insert(peer);
        } else {
            self.reannounce_all = true;
        }
    }

    /// A peer connected for the first time (or again): a DHT server we knew may have
    /// restarted and lost what it stored for us.
    pub fn on_connected(&mut self, peer: PeerId) {
        if self.servers.contains(&peer) {
            tracing::debug!(%peer, "DHT peer (re)connected");
            self.reannounce_later(peer);
        }
    }

    /// Announces again the provided keys for which a peer noted by `reannounce_later` is
    /// now among the closest known peers (the ones a provider record is stored on). So
    /// content shared before any peer was known reaches the DHT as soon as the routing
    /// table fills, and a DHT server that restarted gets back the records it lost, while a
    /// node in a large network does not re-announce every key each time some peer joins.
    pub fn reannounce(&mut self, swarm: &mut Swarm<Behaviour>) {
        if self.reannounce_for.is_empty() && !self.reannounce_all {
            return;
        }
        let fresh = std::mem::take(&mut self.reannounce_for);
        let all = std::mem::replace(&mut self.reannounce_all, false);
        let keys: Vec<Vec<u8>> = if all {
            self.providing.iter().cloned().collect()
        } else {
            keys_closest_to(&mut swarm.behaviour_mut().kad, &self.providing, &fresh)
        };
        tracing::debug!(
            peers = fresh.len(),
            keys = keys.len(),
            of = self.providing.len(),
            "announcing provided content again"
        );
        for key in keys {
            Self::announce(swarm, &key);
        }
    }

    /// Routing-table upkeep from identify: DHT servers go in (with at most a few of their
    /// addresses), peers that serve no DHT (any more) go out.
    pub fn on_identify(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        info: identify::Info,
        reached_over_loopback: bool,
    ) {
        if !info.protocols.contains(&KAD_PROTOCOL) {
            // Not (or no longer, e.g. found to be behind a NAT) a DHT server: queries must
            // not be sent its way.
            self.servers.remove(&peer);
            if swarm.behaviour_mut().kad.remove_peer(&peer).is_some() {
                tracing::debug!(%peer, "peer left the routing table: it serves no DHT");
            }
            return;
        }
        if self.servers.len() < MAX_DHT_SERVERS {
            self.servers.insert(peer);
        }
        // A peer's loopback addresses mean nothing to a peer on another machine (they would
        // reach our own host): keep them only when the peer is itself reached over loopback.
        for addr in info
            .listen_addrs
            .into_iter()
            .filter(|a| reached_over_loopback || !is_loopback(a))
            .take(MAX_IDENTIFY_ADDRS)
        {
            swarm.behaviour_mut().kad.add_address(&peer, addr);
        }
        if !self.bootstrapped {
            self.bootstrapped = true;
            let _ = swarm.behaviour_mut().kad.bootstrap();
        }
    }

    /// `recently_failed` tells which providers not to dial again yet.
    pub fn on_event(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        e: kad::Event,
        recently_failed: impl Fn(&PeerId) -> bool,
    ) {
        match e {
            kad::Event::RoutingUpdated {
                is_new_peer: true,
                peer,
                ..
            } => {
                tracing::debug!(%peer, "new peer in routing table");
                self.reannounce_later(peer);
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            } => self.on_query(swarm, id, result, step, stats, recently_failed),
            kad::Event::InboundRequest { request } => self.on_inbound(swarm, request),
            _ => {}
        }
    }

    fn on_query(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        id: kad::QueryId,
        result: kad::QueryResult,
        step: kad::ProgressStep,
        stats: kad::QueryStats,
        recently_failed: impl Fn(&PeerId) -> bool,
    ) {
        match result {
            kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                providers,
                ..
            })) => {
                let local = *swarm.local_peer_id();
                let mut to_dial = Vec::new();
                if let Some((tx, seen)) = self.lookups.get_mut(&id) {
                    for p in providers {
                        if p != local && seen.insert(p) {
                            to_dial.push(p);
                            // The receiver may be slow or gone; never block the actor.
                            let _ = tx.try_send(p);
                        }
                    }
                }
                // Dial while the query is live: its addresses for the provider are only
                // known to Kademlia until the query ends.
                for p in to_dial {
                    if !swarm.is_connected(&p) && !recently_failed(&p) {
                        let _ = swarm.dial(DialOpts::peer_id(p).build());
                    }
                }
                if step.last {
                    self.lookups.remove(&id);
                }
            }
            kad::QueryResult::GetProviders(_) if step.last => {
                let found = self.lookups.remove(&id).map_or(0, |(_, seen)| seen.len());
                tracing::debug!(
                    found,
                    requests = stats.num_requests(),
                    failures = stats.num_failures(),
                    ms = stats.duration().map_or(0, |d| d.as_millis()),
                    "provider lookup ended"
                );
            }
            kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(r))) => {
                let valid = self.check(r.record.key.as_ref(), &r.record.value, None);
                if let Some(tx) = self.record_gets.get(&id) {
                    match valid {
                        Ok(()) => {
                            let _ = tx.try_send(r.record.value);
                        }
                        Err(reason) => {
                            self.rejected.inc();
                            tracing::warn!(peer = ?r.peer, %reason, "rejected a DHT record");
                        }
                    }
                }
                if step.last {
                    self.record_gets.remove(&id);
                }
            }
            kad::QueryResult::GetRecord(_) if step.last => {
                self.record_gets.remove(&id);
            }
            kad::QueryResult::GetClosestPeers(r) if step.last => {
                let peers = match r {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                self.closest_found(swarm, id, peers);
            }
            kad::QueryResult::PutRecord(r) => {
                if let Some(reply) = self.record_puts.remove(&id) {
                    let n = match r {
                        Ok(_) => Ok(1),
                        // Stored locally; it reached too few peers (e.g. none known yet).
                        Err(kad::PutRecordError::QuorumFailed { success, .. })
                        | Err(kad::PutRecordError::Timeout { success, .. }) => Ok(success.len()),
                    };
                    let _ = reply.send(n);
                }
            }
            kad::QueryResult::StartProviding(r) => {
                tracing::debug!(
                    ok = r.is_ok(),
                    requests = stats.num_requests(),
                    successes = stats.num_successes(),
                    failures = stats.num_failures(),
                    ms = stats.duration().map_or(0, |d| d.as_millis()),
                    "announcement ended"
                );
            }
            _ => {}
        }
    }

    /// Stores what peers put in the DHT, once it is checked.
    fn on_inbound(&mut self, swarm: &mut Swarm<Behaviour>, request: kad::InboundRequest) {
        match request {
            kad::InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => {
                let store = swarm.behaviour_mut().kad.store_mut();
                let existing = store.get(&record.key).map(|r| r.value.clone());
                match self.check(record.key.as_ref(), &record.value, existing.as_deref()) {
                    Ok(()) => {
                        if let Err(e) = store.put(record) {
                            tracing::debug!(error = ?e, "cannot store a DHT record");
                        }
                    }
                    Err(reason) => {
                        self.rejected.inc();
                        tracing::warn!(peer = %source, %reason, "rejected a DHT record");
                    }
                }
            }
            kad::InboundRequest::AddProvider {
                record: Some(record),
                ..
            } => {
                let store = swarm.behaviour_mut().kad.store_mut();
                if let Err(e) = store.add_provider(record) {
                    tracing::debug!(error = ?e, "cannot store a provider record");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(me: PeerId, peers: &[PeerId]) -> kad::Behaviour<kad::store::MemoryStore> {
        let mut kad = kad::Behaviour::new(me, kad::store::MemoryStore::new(me));
        for (i, p) in peers.iter().enumerate() {
            let addr: Multiaddr = format!("/ip4/10.0.0.1/tcp/{}", 1000 + i)
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty());
            kad.add_address(p, addr);
        }
        kad
    }

    fn keys(n: usize) -> HashSet<Vec<u8>> {
        (0..n).map(|i| format!("key {i}").into_bytes()).collect()
    }

    /// Brute force: is `peer` among the K closest of `all` to `key`?
    fn among_closest(all: &[PeerId], peer: &PeerId, key: &[u8]) -> bool {
        let target = kad::KBucketKey::new(kad::RecordKey::new(&key));
        let d = |p: &PeerId| kad::KBucketKey::from(*p).distance(&target);
        all.iter().filter(|p| d(p) < d(peer)).count() < kad::K_VALUE.get()
    }

    #[test]
    fn a_new_peer_in_a_small_network_gets_every_key() {
        let peers: Vec<PeerId> = (0..10).map(|_| PeerId::random()).collect();
        let mut kad = table(PeerId::random(), &peers);
        let ks = keys(200);
        let fresh = HashSet::from([peers[3]]);
        assert_eq!(keys_closest_to(&mut kad, &ks, &fresh).len(), ks.len());
    }

    #[test]
    fn a_new_peer_in_a_large_network_gets_only_the_keys_it_is_close_to() {
        let peers: Vec<PeerId> = (0..200).map(|_| PeerId::random()).collect();
        let me = PeerId::random();
        let mut kad = table(me, &peers);
        // Buckets are capped at K, so some far peers are not in the table: the closest
        // peers are those the table holds. (New peers come into the near buckets, where
        // the table is as dense as the network.)
        let known: Vec<PeerId> = kad
            .kbuckets()
            .flat_map(|b| b.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>())
            .collect();
        assert!(known.len() > 3 * kad::K_VALUE.get(), "{}", known.len());
        let me_key = kad::KBucketKey::from(me);
        let new = known
            .iter()
            .copied()
            .min_by_key(|p| kad::KBucketKey::from(*p).distance(&me_key))
            .unwrap_or(me);
        let ks = keys(2000);
        let chosen: HashSet<Vec<u8>> = keys_closest_to(&mut kad, &ks, &HashSet::from([new]))
            .into_iter()
            .collect();
        for k in &ks {
            assert_eq!(
                chosen.contains(k),
                among_closest(&known, &new, k),
                "key {:?}",
                String::from_utf8_lossy(k)
            );
        }
        assert!(!chosen.is_empty());
        assert!(
            chosen.len() < ks.len() / 4,
            "{} of {}",
            chosen.len(),
            ks.len()
        );
    }

    struct Prefixed(&'static str);

    impl RecordValidator for Prefixed {
        fn validate(&self, _: &[u8], v: &[u8], _: Option<&[u8]>) -> Result<(), Rejected> {
            if v == self.0.as_bytes() {
                Ok(())
            } else {
                Err(Rejected(format!("not {}", self.0)))
            }
        }
    }

    #[test]
    fn records_are_checked_by_the_validator_of_their_longest_prefix() {
        let mut dht = Dht::new(Counter::default());
        assert!(dht.check(b"/a/x", b"a", None).is_err(), "nobody registered");
        dht.register(b"/a/".to_vec(), Arc::new(Prefixed("a")));
        dht.register(b"/a/b/".to_vec(), Arc::new(Prefixed("b")));
        assert!(dht.check(b"/a/x", b"a", None).is_ok());
        assert!(dht.check(b"/a/b/x", b"b", None).is_ok());
        assert!(dht.check(b"/a/b/x", b"a", None).is_err());
        assert!(dht.check(b"/c/x", b"a", None).is_err());
    }
}
