//! What the cache's tasks share: the config, the overlay and share handles, the entries
//! (saved after every change, written outside the lock), the demand seen as a source, the
//! prefetch requests per peer, and the byte budgets of askers and providers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kith_core::ContentId;
use kith_core::sync::lock;
use kith_core::tasks::Tasks;
use kith_overlay::{Overlay, PeerId};
use kith_share::Share;
use tokio::time::Instant;

use crate::budget::Budget;
use crate::demand::Demand;
use crate::entries::{self, Entries, Entry};
use crate::{Config, Error};

/// Prefetch requests one peer may make per minute (each may cost a manifest lookup; the
/// bytes they make this node fetch are budgeted apart).
pub const PER_PEER_PER_MINUTE: u32 = 30;
/// Fills running at once.
pub const MAX_FILLS: usize = 4;

pub(crate) struct Inner {
    pub config: Config,
    pub overlay: Overlay,
    pub share: Share,
    pub tasks: Tasks,
    pub entries: Mutex<Entries>,
    pub demand: Mutex<Demand>,
    /// Prefetch requests per peer in the current minute.
    asked: Mutex<HashMap<PeerId, (u32, Instant)>>,
    /// Bytes each asking peer made this node fetch, within the hour.
    pub askers: Mutex<Budget>,
    /// Bytes this node fetched for prefetches from each provider, within the hour.
    pub providers: Mutex<Budget>,
    /// Fills running now.
    pub fills: Mutex<usize>,
    /// Cache nodes found in the DHT, and when.
    pub nodes: Mutex<Option<(Vec<PeerId>, Instant)>>,
}

impl Inner {
    pub fn new(
        config: Config,
        overlay: Overlay,
        share: Share,
        tasks: Tasks,
    ) -> Result<Self, Error> {
        let entries = Entries::load(&config.dir.join("cache.json"))?;
        let demand = Demand::new(config.demand, config.window, config.cooldown);
        let askers = Budget::new(config.asker_budget.unwrap_or(config.capacity));
        let providers = Budget::new(config.provider_budget.unwrap_or(config.capacity));
        Ok(Self {
            config,
            overlay,
            share,
            tasks,
            entries: Mutex::new(entries),
            demand: Mutex::new(demand),
            asked: Mutex::default(),
            askers: Mutex::new(askers),
            providers: Mutex::new(providers),
            fills: Mutex::new(0),
            nodes: Mutex::new(None),
        })
    }

    /// Where cached content is written: one file or folder per content ID.
    pub fn data_dir(&self) -> PathBuf {
        self.config.dir.join("data")
    }

    pub fn path_of(&self, id: &ContentId) -> PathBuf {
        self.data_dir().join(id.to_string())
    }

    /// Changes the entries and saves them.
    pub async fn update<T>(&self, f: impl FnOnce(&mut Entries) -> T) -> Result<T, Error> {
        let (out, list) = {
            let mut es = lock(&self.entries)?;
            let out = f(&mut es);
            (out, es.list())
        };
        let path = self.config.dir.join("cache.json");
        self.tasks
            .blocking(move || entries::save(&path, &list))
            .await??;
        Ok(out)
    }

    pub fn entry(&self, id: &ContentId) -> Result<Option<Entry>, Error> {
        Ok(lock(&self.entries)?.get(id).cloned())
    }

    /// Whether `peer` may make one more prefetch request now.
    pub fn may_ask(&self, peer: PeerId) -> bool {
        let mut a = kith_core::sync::recover(&self.asked);
        let now = Instant::now();
        if a.len() >= 4096 {
            a.retain(|_, (_, t)| now.saturating_duration_since(*t).as_secs() < 60);
        }
        let (n, since) = a.entry(peer).or_insert((0, now));
        if now.saturating_duration_since(*since).as_secs() >= 60 {
            *n = 0;
            *since = now;
        }
        *n += 1;
        *n <= PER_PEER_PER_MINUTE
    }

    /// Takes a fill slot; false when [`MAX_FILLS`] run already.
    pub fn start_fill(&self) -> bool {
        let mut f = kith_core::sync::recover(&self.fills);
        if *f >= MAX_FILLS {
            return false;
        }
        *f += 1;
        true
    }

    pub fn end_fill(&self) {
        let mut f = kith_core::sync::recover(&self.fills);
        *f = f.saturating_sub(1);
    }
}

/// Gives the fill slot back however the fill ends.
pub(crate) struct FillSlot(pub Arc<Inner>);

impl Drop for FillSlot {
    fn drop(&mut self) {
        self.0.end_fill();
    }
}
