//! The broker's directory: who shares what, and who is online. Entries are filed under the
//! peer ID the connection authenticated, so only a peer can register or remove its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kith_overlay::PeerId;

use kith_core::sync::lock;

use crate::Error;
use crate::index::CatalogIndex;
use crate::protocol::{Entry, WireHit};
use crate::query::Query;

/// Most entries one peer may register.
pub const MAX_ENTRIES_PER_PEER: usize = 10_000;
/// Most peers registered at once.
pub const MAX_PEERS: usize = 100_000;
/// Addresses kept per peer, and their longest length.
const MAX_ADDRS: usize = 8;
const MAX_ADDR_LEN: usize = 256;

#[derive(Debug, Clone)]
struct PeerInfo {
    last_seen: Instant,
    addrs: Vec<String>,
    entries: usize,
}

pub struct Directory {
    index: CatalogIndex,
    peers: Mutex<HashMap<PeerId, PeerInfo>>,
    dirty: AtomicBool,
    ttl: Duration,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// An empty in-memory directory whose entries live `ttl` past the last heartbeat.
    pub fn new(ttl: Duration) -> Result<Self, Error> {
        Ok(Self {
            index: CatalogIndex::open(None)?,
            peers: Mutex::default(),
            dirty: AtomicBool::new(false),
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn check_all(entries: &[Entry]) -> Result<(), Error> {
        for e in entries {
            e.check()?;
        }
        Ok(())
    }

    /// Replaces everything `peer` registered.
    pub fn register(
        &self,
        peer: PeerId,
        entries: &[Entry],
        addrs: Vec<String>,
    ) -> Result<(), Error> {
        if entries.len() > MAX_ENTRIES_PER_PEER {
            return Err(Error::TooManyEntries {
                entries: entries.len(),
                max: MAX_ENTRIES_PER_PEER,
            });
        }
        Self::check_all(entries)?;
        let mut peers = lock(&self.peers)?;
        if !peers.contains_key(&peer) && peers.len() >= MAX_PEERS {
            return Err(Error::BrokerFull);
        }
        let key = peer.to_string();
        self.index.remove_peer(&key)?;
        for e in entries {
            self.index.add(&key, e, None)?;
        }
        peers.insert(
            peer,
            PeerInfo {
                last_seen: Instant::now(),
                addrs: addrs
                    .into_iter()
                    .filter(|a| a.len() <= MAX_ADDR_LEN)
                    .take(MAX_ADDRS)
                    .collect(),
                entries: entries.len(),
            },
        );
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Adds entries of a registered peer; `Ok(false)` if the peer is not registered.
    pub fn add(&self, peer: PeerId, entries: &[Entry]) -> Result<bool, Error> {
        Self::check_all(entries)?;
        let mut peers = lock(&self.peers)?;
        let Some(info) = peers.get_mut(&peer) else {
            return Ok(false);
        };
        if info.entries + entries.len() > MAX_ENTRIES_PER_PEER {
            return Err(Error::TooManyEntries {
                entries: info.entries + entries.len(),
                max: MAX_ENTRIES_PER_PEER,
            });
        }
        let key = peer.to_string();
        for e in entries {
            self.index.add(&key, e, None)?;
        }
        info.entries += entries.len();
        info.last_seen = Instant::now();
        self.dirty.store(true, Ordering::Release);
        Ok(true)
    }

    /// Removes entries of a registered peer (only its own: they are filed under its ID).
    pub fn remove(&self, peer: PeerId, ids: &[String]) -> Result<bool, Error> {
        let mut peers = lock(&self.peers)?;
        let Some(info) = peers.get_mut(&peer) else {
            return Ok(false);
        };
        let key = peer.to_string();
        for id in ids.iter().take(MAX_ENTRIES_PER_PEER) {
            self.index.remove(&key, id)?;
        }
        info.entries = info.entries.saturating_sub(ids.len());
        info.last_seen = Instant::now();
        self.dirty.store(true, Ordering::Release);
        Ok(true)
    }

    /// Records a heartbeat; `false` if the peer is not registered.
    pub fn heartbeat(&self, peer: PeerId) -> Result<bool, Error> {
        Ok(lock(&self.peers)?
            .get_mut(&peer)
            .map(|i| i.last_seen = Instant::now())
            .is_some())
    }

    /// Drops peers not heard from within the TTL. Returns how many.
    pub fn expire(&self) -> Result<usize, Error> {
        let mut peers = lock(&self.peers)?;
        let gone: Vec<PeerId> = peers
            .iter()
            .filter(|(_, i)| i.last_seen.elapsed() > self.ttl)
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            self.index.remove_peer(&p.to_string())?;
            peers.remove(p);
            tracing::info!(peer = %p, "peer went offline; its entries are removed");
        }
        if !gone.is_empty() {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(gone.len())
    }

    /// Makes buffered changes searchable (blocking: commits the index).
    pub fn commit(&self) -> Result<(), Error> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.index.commit()?;
        }
        Ok(())
    }

    /// Peers registered and online now.
    pub fn online(&self) -> Result<usize, Error> {
        Ok(lock(&self.peers)?
            .values()
            .filter(|i| i.last_seen.elapsed() <= self.ttl)
            .count())
    }

    /// Entries searchable now.
    pub fn entries(&self) -> u64 {
        self.index.len()
    }

    /// The best matches held by peers online now. (The peer table stays locked while the
    /// in-memory index is searched: CPU work only, no I/O.)
    pub fn search(&self, q: &Query, limit: usize) -> Result<Vec<WireHit>, Error> {
        let peers = lock(&self.peers)?;
        let online = |p: &str| -> Option<&PeerInfo> {
            p.parse::<PeerId>()
                .ok()
                .and_then(|p| peers.get(&p))
                .filter(|i| i.last_seen.elapsed() <= self.ttl)
        };
        let hits = self
            .index
            .search_where(q, limit, limit * 4, |p| online(p).is_some())?;
        Ok(hits
            .into_iter()
            .map(|h| WireHit {
                addrs: online(&h.peer).map(|i| i.addrs.clone()).unwrap_or_default(),
                entry: h.entry,
                peer: h.peer,
                score: h.score,
            })
            .collect())
    }
}
