//! Service types to the API contract's types.

use std::collections::BTreeSet;

use kith_api as api;
use kith_share::ShareRecord;

pub(crate) fn connection(c: kith_overlay::ConnectionInfo) -> api::Connection {
    api::Connection {
        peer_id: c.peer_id,
        addr: c.addr,
        role: c.role.into(),
        transport: c.transport.into(),
        path: c.path.into(),
        relay: c.relay,
        limit_bytes: c.limit_bytes,
        limit_secs: c.limit_secs,
    }
}

/// The distinct peers among open connections.
pub(crate) fn connected_peers(conns: &[kith_overlay::ConnectionInfo]) -> BTreeSet<&str> {
    conns.iter().map(|c| c.peer_id.as_str()).collect()
}

pub(crate) fn status(
    s: kith_overlay::Status,
    shares: usize,
    downloads: usize,
    w: kith_search::WordIndexStatus,
) -> api::Status {
    let peers = connected_peers(&s.connections).len();
    let dialable = dialable(&s.listen_addrs, &s.external_addrs, &s.peer_id);
    api::Status {
        peer_id: s.peer_id,
        version: env!("CARGO_PKG_VERSION").into(),
        reachability: s.reachability.into(),
        dht: s.dht.into(),
        relay_server: s.relay_server,
        relays: s
            .relays
            .into_iter()
            .map(|r| api::Relay {
                peer_id: r.peer_id,
                addr: r.addr,
                state: r.state.into(),
            })
            .collect(),
        dialable,
        listen_addrs: s.listen_addrs,
        external_addrs: s.external_addrs,
        connections: s.connections.into_iter().map(connection).collect(),
        peers,
        routing_table_peers: s.routing_table_peers,
        providing: s.providing,
        shares,
        downloads,
        word_index: api::WordIndex {
            published: w.published,
            unplaced: w.unplaced,
            records: w.records,
            bytes: w.bytes,
        },
    }
}

/// Listen and external addresses with `/p2p/PEER` (a relayed one names the relay, then
/// this node), without repeats.
pub(crate) fn dialable(listen: &[String], external: &[String], peer: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in listen.iter().chain(external) {
        let full = if a.ends_with(&format!("/p2p/{peer}")) {
            a.clone()
        } else {
            format!("{a}/p2p/{peer}")
        };
        if !out.contains(&full) {
            out.push(full);
        }
    }
    out
}

pub(crate) fn share(r: &ShareRecord) -> api::Share {
    api::Share {
        id: r.id.to_string(),
        path: r.path.clone(),
        name: r.name.clone(),
        kind: r.kind,
        size: r.size,
        files: r.files,
        added: r.added,
        group: r.scope.clone(),
        public_on_purpose: r.public_on_purpose,
    }
}

pub(crate) fn name(r: &kith_names::NameRecord) -> api::Name {
    api::Name {
        name: r.full_name(),
        owner: r.owner.clone(),
        revision: r.revision,
        id: r.id.clone(),
        time: r.time,
    }
}
