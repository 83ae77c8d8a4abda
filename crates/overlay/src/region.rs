//! Regions of the network: where peers are near each other. A peer's region is the subnet
//! of the address its connection comes from (an IPv4 /24, an IPv6 /64: one LAN, or one
//! provider's block), or, for a peer reached only through a circuit relay, that relay
//! (peers behind one relay sit behind the same kind of NAT, far from everyone else).
//! Services use regions to prefer near providers and to place cached copies near the
//! readers that ask for them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Prefix bits of an IPv4 region.
pub const V4_BITS: u8 = 24;
/// Prefix bits of an IPv6 region.
pub const V6_BITS: u8 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Region {
    /// An IP subnet: the address with the host bits cleared.
    Subnet(IpAddr),
    /// Peers reached through this relay.
    Relay(PeerId),
}

impl Region {
    /// The region an address is in: its relay for a circuit address, else its subnet.
    pub fn of_addr(addr: &Multiaddr) -> Option<Region> {
        if let Some(relay) = relay_of(addr) {
            return Some(Region::Relay(relay));
        }
        addr.iter().find_map(|p| match p {
            Protocol::Ip4(ip) => Some(Region::of_ip(IpAddr::V4(ip))),
            Protocol::Ip6(ip) => Some(Region::of_ip(IpAddr::V6(ip))),
            _ => None,
        })
    }

    pub fn of_ip(ip: IpAddr) -> Region {
        Region::Subnet(match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX << (32 - u32::from(V4_BITS));
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX << (128 - u32::from(V6_BITS));
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        })
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Region::Subnet(ip @ IpAddr::V4(_)) => write!(f, "{ip}/{V4_BITS}"),
            Region::Subnet(ip @ IpAddr::V6(_)) => write!(f, "{ip}/{V6_BITS}"),
            Region::Relay(relay) => write!(f, "relay {relay}"),
        }
    }
}

/// The regions of a node's own addresses (listen and external; a relay it listens through
/// counts as a region of its own), without repeats.
pub fn regions_of<'a>(addrs: impl IntoIterator<Item = &'a Multiaddr>) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    for r in addrs.into_iter().filter_map(Region::of_addr) {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// The relay a relayed address goes through (`…/p2p/RELAY/p2p-circuit…`).
pub(crate) fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(id) => last = Some(id),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn subnets_group_a_lan_and_part_others() {
        let a = Region::of_addr(&addr("/ip4/192.168.1.20/tcp/4001"));
        let b = Region::of_addr(&addr("/ip4/192.168.1.99/udp/9/quic-v1"));
        let c = Region::of_addr(&addr("/ip4/192.168.2.20/tcp/4001"));
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.map(|r| r.to_string()).as_deref(), Some("192.168.1.0/24"));
        let v6 = Region::of_addr(&addr("/ip6/2001:db8:1:2:3::9/tcp/1"));
        assert_eq!(
            v6.map(|r| r.to_string()).as_deref(),
            Some("2001:db8:1:2::/64")
        );
    }

    #[test]
    fn a_circuit_address_is_in_its_relays_region() {
        let relay = PeerId::random();
        let target = PeerId::random();
        let a = addr(&format!(
            "/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{target}"
        ));
        assert_eq!(Region::of_addr(&a), Some(Region::Relay(relay)));
        assert_eq!(Region::of_addr(&addr("/dns4/example.org/tcp/1")), None);
        let own = regions_of(&[a.clone(), a, addr("/ip4/10.0.0.7/tcp/2")]);
        assert_eq!(own.len(), 2);
    }
}
