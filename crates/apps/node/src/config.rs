//! Node configuration: `config.toml` in the data dir, overridden by environment variables
//! and command-line flags (in that order).

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not valid: {reason}")]
    Parse { path: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Multiaddrs (with `/p2p/PEER`) of peers to join the network through.
    pub bootstrap: Vec<String>,
    /// Address of the local HTTP API.
    pub api: String,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Upload cap in bytes per second (0 = unlimited).
    pub upload_limit: u64,
    /// Download cap in bytes per second (0 = unlimited).
    pub download_limit: u64,
    /// Most connections in total.
    pub max_connections: u32,
    /// Most connections to one peer.
    pub max_connections_per_peer: u32,
    /// Seconds between checks of shared files for changes.
    pub rescan_secs: u64,
    /// Multiaddr (with `/p2p/PEER`) of a broker to register this node's catalogue with.
    pub broker: Option<String>,
    /// Serve as a broker (directory) for other peers.
    pub serve_broker: bool,
    /// Seconds a broker keeps a silent peer's entries.
    pub broker_ttl_secs: u64,
    /// Serve as a circuit relay for peers behind NATs (on by default for a broker).
    pub relay: Option<bool>,
    /// Relays (multiaddrs with `/p2p/PEER`) to reserve a slot on when this node is not
    /// publicly reachable; the broker and any relay this node meets are used as well.
    pub relays: Vec<String>,
    /// Limits of the relay this node serves: bytes and seconds per circuit, circuits and
    /// reservations at once.
    pub relay_circuit_bytes: u64,
    pub relay_circuit_secs: u64,
    pub relay_max_circuits: usize,
    pub relay_max_reservations: usize,
    /// Let AutoNAT test private and loopback addresses too (for LANs and test networks;
    /// on the Internet only public addresses say anything about reachability).
    pub autonat_private_ips: bool,
    /// Addresses this node is reachable at, announced as they are (e.g. a relay or broker
    /// with a known public address); others are learned through AutoNAT.
    pub announce: Vec<String>,
    /// Bytes of this disk lent to others' vaults (0: none).
    pub offer: u64,
    /// Seconds between audits of this node's vault shares.
    pub vault_audit_secs: u64,
    /// Seconds a vault holder may be unreachable before its shares are rebuilt elsewhere.
    pub vault_grace_secs: u64,
    /// Bytes of popular content this node caches for the readers of its region (0: none).
    pub cache: u64,
    /// Distinct peers of one region asking for the same content before a cache node there
    /// is asked to fetch it ahead.
    pub cache_demand: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/udp/0/quic-v1".into(),
                "/ip4/0.0.0.0/tcp/0".into(),
            ],
            bootstrap: Vec::new(),
            api: "127.0.0.1:0".into(),
            mdns: true,
            upload_limit: 0,
            download_limit: 0,
            max_connections: 256,
            max_connections_per_peer: 4,
            rescan_secs: 30,
            offer: 0,
            vault_audit_secs: 3600,
            vault_grace_secs: 86_400,
            cache: 0,
            cache_demand: 3,
            broker: None,
            serve_broker: false,
            broker_ttl_secs: 60,
            relay: None,
            relays: Vec::new(),
            relay_circuit_bytes: 64 << 20,
            relay_circuit_secs: 600,
            relay_max_circuits: 16,
            relay_max_reservations: 128,
            autonat_private_ips: false,
            announce: Vec::new(),
        }
    }
}

impl Config {
    /// Loads `path`, or the defaults when it does not exist.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            reason: e.to_string().lines().next().unwrap_or_default().to_owned(),
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_bad_keys_fail() {
        let c = Config::default();
        assert_eq!(toml::from_str::<Config>(&c.to_toml()).ok(), Some(c));
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        let partial: Result<Config, _> = toml::from_str("upload_limit = 5");
        assert_eq!(partial.map(|c| c.upload_limit).ok(), Some(5));
    }
}
