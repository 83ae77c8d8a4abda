//! Inbound connections that have not finished their handshake, capped per source address.
//!
//! A peer that opens TCP connections and never completes the security handshake holds a
//! pending slot until the handshake deadline ([`crate::behaviour::HANDSHAKE_TIMEOUT`]).
//! Without a cap per source, 64 such sockets from one host locked every other peer out.
//! Now one address (an IPv4 address or an IPv6 /64) holds at most [`Limits::per_ip`]
//! pending slots, and the last quarter of [`Limits::total`] is a reserve that only sources
//! with no handshake in progress may use, so peers that do complete handshakes get in.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Caps on handshakes in progress.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Handshakes in progress from one source address at once.
    pub per_ip: usize,
    /// Handshakes in progress in total.
    pub total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_ip: 8,
            total: 128,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(&'static str);

/// The source of a connection: an IPv4 address, or the /64 of an IPv6 address (one host
/// usually holds a whole /64).
fn source(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => {
            let s = a.segments();
            Some(IpAddr::V6(std::net::Ipv6Addr::new(
                s[0], s[1], s[2], s[3], 0, 0, 0, 0,
            )))
        }
        _ => None,
    })
}

pub struct Behaviour {
    limits: Limits,
    pending: HashMap<ConnectionId, IpAddr>,
    per_ip: HashMap<IpAddr, usize>,
    gauge: Gauge,
    refused: Counter,
}

impl Behaviour {
    pub fn new(limits: Limits, registry: &mut prometheus_client::registry::Registry) -> Self {
        let gauge = Gauge::default();
        let refused = Counter::default();
        registry.register(
            "kith_inbound_handshakes_pending",
            "Inbound connections whose handshake is in progress",
            gauge.clone(),
        );
        registry.register(
            "kith_inbound_handshakes_refused",
            "Inbound connections refused because their source had too many handshakes in progress",
            refused.clone(),
        );
        Self {
            limits,
            pending: HashMap::new(),
            per_ip: HashMap::new(),
            gauge,
            refused,
        }
    }

    fn admit(&mut self, id: ConnectionId, from: &Multiaddr) -> Result<(), &'static str> {
        let Some(ip) = source(from) else {
            // Relayed connections have no IP of their own; the relay limits those.
            return Ok(());
        };
        let held = self.per_ip.get(&ip).copied().unwrap_or(0);
        if held >= self.limits.per_ip {
            return Err("too many handshakes in progress from this address");
        }
        let reserve = self.limits.total - self.limits.total / 4;
        if self.pending.len() >= self.limits.total || (self.pending.len() >= reserve && held > 0) {
            return Err("too many handshakes in progress");
        }
        self.pending.insert(id, ip);
        *self.per_ip.entry(ip).or_default() += 1;
        Ok(())
    }

    fn done(&mut self, id: ConnectionId) {
        if let Some(ip) = self.pending.remove(&id)
            && let Some(n) = self.per_ip.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        self.gauge.set(self.pending.len() as i64);
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let r = self.admit(connection_id, remote);
        self.gauge.set(self.pending.len() as i64);
        r.map_err(|why| {
            self.refused.inc();
            tracing::debug!(%remote, why, "inbound connection refused");
            ConnectionDenied::new(Refused(why))
        })
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.done(connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ListenFailure(f) = event {
            self.done(f.connection_id);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap_or_else(|_| Multiaddr::empty())
    }

    #[test]
    fn one_source_cannot_take_every_slot_and_new_sources_keep_a_reserve() {
        let mut g = Behaviour::new(
            Limits {
                per_ip: 2,
                total: 8,
            },
            &mut Default::default(),
        );
        let a = addr("/ip4/127.0.0.2/tcp/1");
        let mut next = 0;
        let mut fresh = || {
            next += 1;
            ConnectionId::new_unchecked(next)
        };
        assert!(g.admit(fresh(), &a).is_ok());
        assert!(g.admit(fresh(), &a).is_ok());
        assert!(g.admit(fresh(), &a).is_err(), "per-source cap");
        // Other sources fill up to the reserve (6 of 8)...
        for i in 3..7 {
            assert!(
                g.admit(fresh(), &addr(&format!("/ip4/10.0.0.{i}/tcp/1")))
                    .is_ok()
            );
        }
        // ...where a source that already has a handshake in progress gets no more,
        assert!(g.admit(fresh(), &addr("/ip4/10.0.0.3/tcp/1")).is_err());
        // but a new source does.
        assert!(g.admit(fresh(), &addr("/ip4/10.0.0.9/tcp/1")).is_ok());
        // IPv6 sources are counted by /64.
        assert_eq!(
            source(&addr("/ip6/2001:db8:1:2:aaaa::1/tcp/1")),
            source(&addr("/ip6/2001:db8:1:2:bbbb::7/tcp/1"))
        );
    }
}
