//! What the web UI asks of the node beyond the other services: login links, the live
//! traffic figures, the download history, the settings it may change while the node runs,
//! and a file's bytes for `kith cat` and the HTTP gateway.

use std::path::Path;

use kith_api as api;
use kith_core::store::now_ms;

use crate::config::{self, Config};
use crate::ui::CODE_LIFETIME;
use crate::{Node, NodeError, convert};

/// Downloads the history shows.
const HISTORY: usize = 200;

/// Traffic counters at one moment, to work out rates between two ticks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub at_ms: u64,
    pub sent: u64,
    pub received: u64,
    /// Per peer: sent, received.
    pub peers: std::collections::HashMap<String, (u64, u64)>,
}

fn per_sec(bytes: u64, ms: u64) -> u64 {
    if ms == 0 {
        return 0;
    }
    bytes.saturating_mul(1000) / ms
}

impl Node {
    /// A link that logs a browser in to the web UI once.
    pub fn login_link(&self) -> api::LoginLink {
        let code = self.inner.logins.mint();
        let addr = self.api_addr();
        // A wildcard listen address is not something a browser can open.
        let host = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv6() => format!("[::1]:{}", addr.port()),
            ip if ip.is_unspecified() => format!("127.0.0.1:{}", addr.port()),
            _ => addr.to_string(),
        };
        api::LoginLink {
            url: format!("http://{host}/login?code={code}"),
            expires_secs: CODE_LIFETIME.as_secs(),
        }
    }

    /// A ticket for content this node has: its ID and this node's dialable addresses.
    pub async fn ticket(&self, id: &str) -> Result<api::TicketBody, NodeError> {
        let id = crate::facade::content_id(id)?;
        let st = self.status().await?;
        Ok(api::TicketBody {
            ticket: kith_core::ticket::Ticket::new(id, st.dialable).encode(),
        })
    }

    /// The counters now.
    pub(crate) fn sample(&self) -> Sample {
        let (sent, received) = self.inner.share.traffic();
        let peers = self
            .inner
            .share
            .peer_traffic()
            .into_iter()
            .map(|(p, s, r)| (p.to_string(), (s, r)))
            .collect();
        Sample {
            at_ms: now_ms(),
            sent,
            received,
            peers,
        }
    }

    /// The `tick` event: traffic since `prev`, connections and transfers; and the sample
    /// the next tick starts from.
    pub(crate) async fn tick(
        &self,
        prev: &Sample,
        shares: usize,
    ) -> Result<(api::Tick, Sample), NodeError> {
        let now = self.sample();
        let s = self.inner.overlay.status().await?;
        let relayed = s.connections.iter().filter(|c| c.path == "relayed").count();
        let connected = convert::connected_peers(&s.connections);
        let ms = now.at_ms.saturating_sub(prev.at_ms);
        let downloads = self.inner.share.downloads().await?;
        let peer_rates = connected
            .iter()
            .map(|p| {
                let (sent, received) = now.peers.get(*p).copied().unwrap_or_default();
                let (ps, pr) = prev.peers.get(*p).copied().unwrap_or((sent, received));
                api::PeerRate {
                    peer_id: (*p).to_owned(),
                    up_rate: per_sec(sent.saturating_sub(ps), ms),
                    down_rate: per_sec(received.saturating_sub(pr), ms),
                    sent_bytes: sent,
                    received_bytes: received,
                }
            })
            .collect();
        let tick = api::Tick {
            time: now.at_ms,
            peers: connected.len(),
            direct: s.connections.len() - relayed,
            relayed,
            sent_bytes: now.sent,
            received_bytes: now.received,
            up_rate: per_sec(now.sent.saturating_sub(prev.sent), ms),
            down_rate: per_sec(now.received.saturating_sub(prev.received), ms),
            shares,
            downloads,
            peer_rates,
        };
        Ok((tick, now))
    }

    /// Downloads that ended, newest first.
    pub async fn history(&self) -> Result<Vec<api::Transfer>, NodeError> {
        let records = self.inner.share.history(HISTORY).await?;
        Ok(records
            .into_iter()
            .map(|r| {
                let (state, error) = match r.state {
                    kith_share::DownloadState::Failed(e) => ("failed", Some(e)),
                    _ => ("done", None),
                };
                let name = Path::new(&r.output)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                api::Transfer {
                    id: r.id.to_string(),
                    name,
                    output: r.output,
                    state: state.into(),
                    error,
                    added: r.added,
                }
            })
            .collect())
    }

    /// The settings the UI shows, as the node runs them.
    pub async fn settings(&self) -> Result<api::Settings, NodeError> {
        let path = self.home().config_path();
        let file = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| NodeError::BadRequest(e.to_string()))?
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        let (up, down) = self.inner.share.limits();
        Ok(api::Settings {
            upload_limit: up,
            download_limit: down,
            relay: file.relay,
            broker: file.broker,
            on_restart: kith_core::sync::recover(&self.inner.on_restart)
                .iter()
                .cloned()
                .collect(),
        })
    }

    /// Changes settings: saved in `config.toml`; rate limits apply at once, the rest at
    /// the next start. Nothing is saved if any value is bad.
    pub async fn change_settings(
        &self,
        c: &api::SettingsChange,
    ) -> Result<api::Settings, NodeError> {
        let bad = |k: &str, e: &dyn std::fmt::Display| NodeError::BadRequest(format!("{k}: {e}"));
        let rate = |k: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| kith_core::units::parse_rate(s).map_err(|e| bad(k, &e)))
                .transpose()
        };
        let up = rate("upload_limit", &c.upload_limit)?;
        let down = rate("download_limit", &c.download_limit)?;
        let broker = c.broker.as_deref().map(str::trim);
        if let Some(b) = broker.filter(|b| !b.is_empty()) {
            let a = kith_overlay::parse_addr(b).map_err(|e| bad("broker", &e))?;
            if kith_overlay::peer_of(&a).is_none() {
                return Err(bad("broker", &"end it with /p2p/PEER_ID"));
            }
        }
        let mut edits: Vec<(&str, Option<String>)> = Vec::new();
        if let Some(v) = up {
            edits.push(("upload_limit", Some(v.to_string())));
        }
        if let Some(v) = down {
            edits.push(("download_limit", Some(v.to_string())));
        }
        if let Some(r) = c.relay {
            edits.push(("relay", Some(r.to_string())));
        }
        if let Some(b) = broker {
            let value = (!b.is_empty()).then(|| toml_string(b));
            edits.push(("broker", value));
        }
        let keys: Vec<String> = edits.iter().map(|(k, _)| (*k).to_owned()).collect();
        let path = self.home().config_path();
        tokio::task::spawn_blocking(move || config::edit_file(&path, &edits))
            .await
            .map_err(|e| NodeError::BadRequest(e.to_string()))?
            .map_err(NodeError::BadRequest)?;
        let (cur_up, cur_down) = self.inner.share.limits();
        self.inner
            .share
            .set_limits(up.unwrap_or(cur_up), down.unwrap_or(cur_down));
        {
            let mut later = kith_core::sync::recover(&self.inner.on_restart);
            later.extend(keys.into_iter().filter(|k| k == "relay" || k == "broker"));
        }
        tracing::info!(?up, ?down, relay = ?c.relay, broker = ?broker, "settings changed");
        self.settings().await
    }
}

/// `s` as a TOML string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}
