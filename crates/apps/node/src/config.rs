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
    #[serde(deserialize_with = "units::rate")]
    pub upload_limit: u64,
    /// Download cap in bytes per second (0 = unlimited).
    #[serde(deserialize_with = "units::rate")]
    pub download_limit: u64,
    /// Most connections in total.
    pub max_connections: u32,
    /// Most connections to one peer.
    pub max_connections_per_peer: u32,
    /// Seconds between checks of shared files for changes.
    #[serde(deserialize_with = "units::secs")]
    pub rescan_secs: u64,
    /// Multiaddr (with `/p2p/PEER`) of a broker to register this node's catalogue with.
    pub broker: Option<String>,
    /// Serve as a broker (directory) for other peers.
    pub serve_broker: bool,
    /// Seconds a broker keeps a silent peer's entries.
    #[serde(deserialize_with = "units::secs")]
    pub broker_ttl_secs: u64,
    /// Serve as a circuit relay for peers behind NATs (on by default for a broker).
    pub relay: Option<bool>,
    /// Relays (multiaddrs with `/p2p/PEER`) to reserve a slot on when this node is not
    /// publicly reachable; the broker and any relay this node meets are used as well.
    pub relays: Vec<String>,
    /// Limits of the relay this node serves: bytes and seconds per circuit, circuits and
    /// reservations at once.
    #[serde(deserialize_with = "units::rate")]
    pub relay_circuit_bytes: u64,
    #[serde(deserialize_with = "units::secs")]
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
    #[serde(deserialize_with = "units::size")]
    pub offer: u64,
    /// Seconds between audits of this node's vault shares.
    #[serde(deserialize_with = "units::secs")]
    pub vault_audit_secs: u64,
    /// Seconds a vault holder may be unreachable before its shares are rebuilt elsewhere.
    #[serde(deserialize_with = "units::secs")]
    pub vault_grace_secs: u64,
    /// Bytes of popular content this node caches for the readers of its region (0: none).
    #[serde(deserialize_with = "units::size")]
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
        Self::parse(&text).map_err(|reason| ConfigError::Parse {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses a config file's text; an error names the line and the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| {
                text.get(..s.start)
                    .unwrap_or_default()
                    .matches('\n')
                    .count()
                    + 1
            });
            let key = line
                .and_then(|n| text.lines().nth(n - 1))
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim().to_owned());
            let msg = e.message().replace('\n', " ");
            match (line, key) {
                (Some(n), Some(k)) => format!("line {n}, `{k}`: {msg}"),
                (Some(n), None) => format!("line {n}: {msg}"),
                _ => msg,
            }
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The file `kith init` writes: every setting, commented out at its default, with
    /// what it does.
    pub fn commented() -> String {
        let mut out = String::from(
            "# kith node configuration. Every setting is shown at its default, commented out:\n\
             # uncomment a line to change it. Environment variables (KITH_*) and flags\n\
             # override this file. Sizes and rates take units (\"10M\", \"1Gi\", \"20G\"),\n\
             # durations too (\"90s\", \"10m\", \"24h\").\n",
        );
        for line in Config::default().to_toml().lines() {
            let key = line.split_once('=').map(|(k, _)| k.trim()).unwrap_or(line);
            if let Some((_, help)) = HELP.iter().find(|(k, _)| *k == key) {
                out.push_str(&format!("\n# {help}\n"));
            }
            out.push_str(&format!("# {line}\n"));
        }
        for (key, example) in UNSET {
            if let Some((_, help)) = HELP.iter().find(|(k, _)| k == &key) {
                out.push_str(&format!("\n# {help}\n# {key} = {example}\n"));
            }
        }
        out
    }
}

/// `text` with `key` set to `value` (a TOML value), or commented out when `value` is
/// `None`: the key's line (commented or not) is changed in place, so the file keeps its
/// comments and order; a key not in the file is added at the end.
pub fn with_setting(text: &str, key: &str, value: Option<&str>) -> String {
    let is_key = |l: &str| {
        let l = l.trim_start().trim_start_matches('#').trim_start();
        l.split_once('=').is_some_and(|(k, _)| k.trim() == key)
    };
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // The uncommented line wins over a commented example.
    let at = lines
        .iter()
        .position(|l| !l.trim_start().starts_with('#') && is_key(l))
        .or_else(|| lines.iter().position(|l| is_key(l)));
    match (at.and_then(|i| lines.get_mut(i)), value) {
        (Some(line), Some(v)) => *line = format!("{key} = {v}"),
        (Some(line), None) => {
            if !line.trim_start().starts_with('#') {
                *line = format!("# {line}");
            }
        }
        (None, Some(v)) => lines.push(format!("{key} = {v}")),
        (None, None) => {}
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Applies `edits` to the config file at `path` (written atomically), after checking
/// that the result parses; nothing is written otherwise.
pub fn edit_file(path: &Path, edits: &[(&str, Option<String>)]) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::commented(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let text = edits
        .iter()
        .fold(text, |t, (k, v)| with_setting(&t, k, v.as_deref()));
    Config::parse(&text)?;
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, &text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Settings with no default value, and an example of each.
const UNSET: [(&str, &str); 2] = [
    ("broker", "\"/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW…\""),
    ("relay", "true"),
];

/// What each setting does, for the file `kith init` writes.
const HELP: &[(&str, &str)] = &[
    ("listen", "Multiaddrs to listen on."),
    (
        "bootstrap",
        "Peers to join the network through (multiaddrs with /p2p/PEER_ID).",
    ),
    (
        "api",
        "Address of the local HTTP API and web UI (127.0.0.1 only by default).",
    ),
    ("mdns", "Find peers on the local network with mDNS."),
    (
        "upload_limit",
        "Upload cap per second (0 = unlimited), e.g. \"10M\".",
    ),
    (
        "download_limit",
        "Download cap per second (0 = unlimited), e.g. \"10M\".",
    ),
    ("max_connections", "Most connections in total."),
    ("max_connections_per_peer", "Most connections to one peer."),
    (
        "rescan_secs",
        "How often shared files are checked for changes.",
    ),
    (
        "offer",
        "Disk lent to others' vaults (0 = none), e.g. \"20G\".",
    ),
    (
        "vault_audit_secs",
        "How often this node audits the holders of its vault shares.",
    ),
    (
        "vault_grace_secs",
        "How long a vault holder may be gone before its shares are rebuilt elsewhere.",
    ),
    (
        "cache",
        "Popular content cached for readers near this node (0 = none), e.g. \"10G\".",
    ),
    (
        "cache_demand",
        "Peers of one region that must ask for the same content before a cache there fetches it ahead.",
    ),
    (
        "broker",
        "A broker to register this node's catalogue with (multiaddr with /p2p/PEER_ID).",
    ),
    (
        "serve_broker",
        "Serve as a broker (a directory of peers' catalogues).",
    ),
    (
        "broker_ttl_secs",
        "How long a broker keeps a silent peer's entries.",
    ),
    (
        "relay",
        "Serve as a circuit relay for peers behind NATs (on by default for a broker).",
    ),
    (
        "relays",
        "Relays to reserve a slot on when this node is not publicly reachable.",
    ),
    ("relay_circuit_bytes", "Relay served: bytes per circuit."),
    ("relay_circuit_secs", "Relay served: time per circuit."),
    ("relay_max_circuits", "Relay served: circuits at once."),
    (
        "relay_max_reservations",
        "Relay served: reservations at once.",
    ),
    (
        "autonat_private_ips",
        "Let AutoNAT test private and loopback addresses too (LANs, test networks).",
    ),
    (
        "announce",
        "Addresses this node is reachable at, announced as they are.",
    ),
];

/// Numbers in the config file as people write them: an integer, or a string with a unit.
mod units {
    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Int(u64),
        Text(String),
    }

    fn with<'de, D: Deserializer<'de>>(
        d: D,
        parse: fn(&str) -> Result<u64, kith_core::units::UnitError>,
    ) -> Result<u64, D::Error> {
        match Num::deserialize(d)? {
            Num::Int(n) => Ok(n),
            Num::Text(s) => parse(&s).map_err(D::Error::custom),
        }
    }

    /// Bytes per second: `10M`, `500k`, `1Gi`.
    pub fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        with(d, kith_core::units::parse_rate)
    }

    /// Storage: `20G` (powers of 1024).
    pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        with(d, kith_core::units::parse_size)
    }

    /// Seconds: `90s`, `10m`, `24h`, `7d`.
    pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        with(d, kith_core::units::parse_duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_file_documents_every_setting_and_parses_to_the_defaults() {
        let text = Config::commented();
        for line in Config::default().to_toml().lines() {
            let key = line.split_once('=').map(|(k, _)| k.trim()).unwrap_or(line);
            assert!(
                HELP.iter().any(|(k, h)| *k == key && !h.is_empty()),
                "no help for {key}"
            );
            assert!(text.contains(&format!("# {line}")), "{key} missing");
        }
        assert_eq!(Config::parse(&text), Ok(Config::default()));
        // Uncommented, the example lines parse too.
        let all: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(Config::parse(&all).is_ok(), "{all}");
    }

    #[test]
    fn units_are_taken_and_errors_name_the_key() {
        let c = Config::parse(
            "upload_limit = \"10M\"\noffer = \"20G\"\nvault_grace_secs = \"2h\"\ncache = 1024",
        );
        let c = c.unwrap_or_default();
        assert_eq!(c.upload_limit, 10_000_000);
        assert_eq!(c.offer, 20 << 30);
        assert_eq!(c.vault_grace_secs, 7200);
        assert_eq!(c.cache, 1024);
        let bad = Config::parse("mdns = true\nupload_limit = \"fast\"");
        assert!(
            bad.as_ref()
                .is_err_and(|e| e.contains("line 2") && e.contains("upload_limit")),
            "{bad:?}"
        );
        let unknown = Config::parse("bogus = 1");
        assert!(
            unknown.as_ref().is_err_and(|e| e.contains("bogus")),
            "{unknown:?}"
        );
    }

    #[test]
    fn settings_are_changed_in_place() {
        let text = Config::commented();
        let t = with_setting(&text, "upload_limit", Some("1000"));
        let t = with_setting(&t, "broker", Some("\"/ip4/127.0.0.1/tcp/1\""));
        let c = Config::parse(&t).unwrap_or_default();
        assert_eq!(c.upload_limit, 1000);
        assert_eq!(c.broker.as_deref(), Some("/ip4/127.0.0.1/tcp/1"));
        assert_eq!(t.lines().count(), text.lines().count(), "changed in place");
        let t = with_setting(&t, "upload_limit", Some("5"));
        assert_eq!(Config::parse(&t).map(|c| c.upload_limit), Ok(5));
        let t = with_setting(&t, "broker", None);
        assert_eq!(Config::parse(&t).map(|c| c.broker), Ok(None));
        let added = with_setting("mdns = false\n", "relay", Some("true"));
        assert_eq!(added, "mdns = false\nrelay = true\n");
    }

    #[test]
    fn a_bad_edit_leaves_the_file_alone() -> Result<(), Box<dyn std::error::Error>> {
        let d = tempfile::tempdir()?;
        let p = d.path().join("config.toml");
        std::fs::write(&p, "mdns = false\n")?;
        assert!(edit_file(&p, &[("upload_limit", Some("\"fast\"".into()))]).is_err());
        assert_eq!(std::fs::read_to_string(&p)?, "mdns = false\n");
        edit_file(&p, &[("upload_limit", Some("7".into()))])?;
        assert_eq!(Config::load(&p)?.upload_limit, 7);
        Ok(())
    }

    #[test]
    fn defaults_round_trip_and_bad_keys_fail() {
        let c = Config::default();
        assert_eq!(toml::from_str::<Config>(&c.to_toml()).ok(), Some(c));
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        let partial: Result<Config, _> = toml::from_str("upload_limit = 5");
        assert_eq!(partial.map(|c| c.upload_limit).ok(), Some(5));
    }
}
