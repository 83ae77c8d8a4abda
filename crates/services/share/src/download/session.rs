//! What one download knows as it goes: the peers found, the providers that sent verified
//! content, what went wrong with each peer tried, and its deadline (the last progress plus
//! the patience).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kith_core::ContentId;
use kith_overlay::PeerId;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::DownloadError;
use super::finder::Via;
use crate::Progress;
use crate::client::Failure;
use crate::state::Inner;

/// Most peers a download keeps as candidates.
const MAX_PEERS: usize = 1024;
/// Peers named in a "gave up" message.
const MAX_TRIED_SHOWN: usize = 5;

pub(crate) struct Session {
    pub inner: Arc<Inner>,
    pub id: ContentId,
    pub tx: watch::Sender<Progress>,
    /// Peers that may have the content, from the finder, and how they were found.
    pub found: mpsc::Receiver<(PeerId, Via)>,
    pub finder_open: bool,
    /// Every candidate seen, in the order found.
    pub peers: Vec<PeerId>,
    /// Peers that sent verified content.
    pub providers: HashSet<PeerId>,
    /// Peers found under the content's public provider key.
    found_public: HashSet<PeerId>,
    /// Peers found in the DHT (under the content ID or a group's locator).
    found_dht: HashSet<PeerId>,
    /// Connected peers asked (every connected peer is asked whether it has it).
    asked_connected: HashSet<PeerId>,
    /// What went wrong last with each peer tried.
    tried: HashMap<PeerId, String>,
    patience: Duration,
    last_progress: Instant,
    /// Set by the finder once its first round of lookups is in.
    pub first_round: Arc<AtomicBool>,
    /// Cancelled when the download must stop (the node shuts down, or the user paused or
    /// cancelled it).
    pub stop: tokio_util::sync::CancellationToken,
}

impl Session {
    pub fn new(
        inner: Arc<Inner>,
        id: ContentId,
        tx: watch::Sender<Progress>,
        found: mpsc::Receiver<(PeerId, Via)>,
        patience: Duration,
    ) -> Self {
        let inner_stop = inner.tasks().shutdown().child_token();
        Self {
            inner,
            id,
            tx,
            found,
            finder_open: true,
            peers: Vec::new(),
            providers: HashSet::new(),
            found_public: HashSet::new(),
            found_dht: HashSet::new(),
            asked_connected: HashSet::new(),
            tried: HashMap::new(),
            patience,
            last_progress: Instant::now(),
            first_round: Arc::new(AtomicBool::new(false)),
            stop: inner_stop,
        }
    }

    /// When the download fails unless it makes progress first.
    pub fn deadline(&self) -> Instant {
        self.last_progress + self.patience
    }

    /// Verified content arrived: the deadline moves.
    pub fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Takes a peer the finder found; false when it is not worth trying (shunned).
    pub fn add_found(&mut self, (p, via): (PeerId, Via)) -> bool {
        if via == Via::Public && self.found_public.len() < MAX_PEERS {
            self.found_public.insert(p);
        }
        let seen = if via == Via::Peer {
            &mut self.asked_connected
        } else {
            &mut self.found_dht
        };
        if seen.len() < MAX_PEERS {
            seen.insert(p);
        }
        self.add_peer(p)
    }

    /// The group the download belongs to: none when a provider announced it publicly;
    /// else the group of this node's whose members sent it (its content stays among
    /// them: this node announces it only under that group's locator).
    pub fn scope(&self) -> Option<String> {
        if self.providers.is_empty() || self.providers.iter().any(|p| self.found_public.contains(p))
        {
            return None;
        }
        self.inner
            .scopes()
            .locators(b"")
            .into_iter()
            .map(|(group, _)| group)
            .find(|g| {
                let members: HashSet<PeerId> = self.inner.scopes().members(g).into_iter().collect();
                self.providers.iter().all(|p| members.contains(p))
            })
    }

    fn add_peer(&mut self, p: PeerId) -> bool {
        if self.inner.strikes().is_shunned(&p) {
            return false;
        }
        if !self.peers.contains(&p) && self.peers.len() < MAX_PEERS {
            self.peers.push(p);
        }
        true
    }

    /// What the search for providers covered so far, in words.
    pub fn searched(&self) -> String {
        let dht = self.found_dht.len();
        format!(
            "{} connected peer{} asked, the DHT named {dht} provider{}",
            self.asked_connected.len(),
            if self.asked_connected.len() == 1 {
                ""
            } else {
                "s"
            },
            if dht == 1 { "" } else { "s" },
        )
    }

    /// Notes how a request to `peer` failed. An offence is a strike against the provider
    /// for every download; one that shuns it also disconnects it. Returns true when the
    /// peer is shunned now (by this failure or an earlier one).
    pub async fn failed(&mut self, peer: PeerId, f: &Failure) -> bool {
        if self.tried.len() < MAX_PEERS || self.tried.contains_key(&peer) {
            self.tried.insert(peer, f.to_string());
        }
        if let Failure::Offence(o) = f {
            if matches!(o, crate::strikes::Offence::WrongBytes) {
                self.inner.metrics().bad_chunks.inc();
            } else {
                self.inner.metrics().violations.inc();
            }
            if self.inner.strikes().strike(peer, o) {
                let _ = self.inner.overlay().disconnect(peer).await;
            }
        }
        self.inner.strikes().is_shunned(&peer)
    }

    /// The error a download fails with when its deadline passes: what it waited for and
    /// what it tried.
    pub fn gave_up(&self, waiting_for: &str) -> DownloadError {
        let mut tried: Vec<String> = self
            .tried
            .iter()
            .take(MAX_TRIED_SHOWN)
            .map(|(p, why)| format!("{p}: {why}"))
            .collect();
        tried.sort();
        let more = self.tried.len().saturating_sub(MAX_TRIED_SHOWN);
        let what = if self.tried.is_empty() {
            format!("no provider found: {}", self.searched())
        } else {
            format!(
                "tried {} provider{}: {}{}",
                self.tried.len(),
                if self.tried.len() == 1 { "" } else { "s" },
                tried.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            )
        };
        DownloadError::GaveUp(format!(
            "{waiting_for} of {}: nothing arrived within {:?} ({what})",
            self.id, self.patience
        ))
    }
}
