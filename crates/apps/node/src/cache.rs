//! The facade over the cache: what `kith pin`, `kith unpin` and `kith cache status` do.

use kith_api as api;
use kith_cache::{Entry, Why};

use crate::facade::content_id;
use crate::{Node, NodeError};

fn entry(e: Entry) -> api::CacheEntry {
    let (why, source, region, demand) = match e.why {
        Why::Pinned => ("pinned", None, None, None),
        Why::Prefetch {
            source,
            region,
            demand,
        } => ("prefetch", Some(source), Some(region), Some(demand)),
    };
    api::CacheEntry {
        id: e.id.to_string(),
        name: e.name,
        bytes: e.bytes,
        pinned: e.pinned,
        state: e.fill,
        error: e.error,
        why: why.to_owned(),
        source,
        region,
        demand,
        served: e.served,
        last_served_ms: e.last_served_ms,
        added_ms: e.added_ms,
    }
}

impl Node {
    pub async fn pin(&self, id: &str) -> Result<api::CacheEntry, NodeError> {
        Ok(entry(self.inner.cache.pin(content_id(id)?).await?))
    }

    pub async fn unpin(&self, id: &str) -> Result<api::CacheEntry, NodeError> {
        Ok(entry(self.inner.cache.unpin(content_id(id)?).await?))
    }

    pub async fn cache_status(&self) -> Result<api::CacheStatus, NodeError> {
        let s = self.inner.cache.status()?;
        let regions = self.inner.overlay.own_regions().await?;
        Ok(api::CacheStatus {
            capacity: s.capacity,
            used: s.used,
            pinned_bytes: s.pinned_bytes,
            regions: regions.iter().map(ToString::to_string).collect(),
            entries: s.entries.into_iter().map(entry).collect(),
            hints: s
                .hints
                .into_iter()
                .map(|h| api::CacheHint {
                    id: h.id.to_string(),
                    region: h.region,
                    demand: h.demand,
                    node: h.node,
                    answer: h.answer,
                    at_ms: h.at_ms,
                })
                .collect(),
            demand: s
                .demand
                .into_iter()
                .map(|d| api::CacheDemand {
                    id: d.id.to_string(),
                    region: d.region,
                    peers: d.peers,
                })
                .collect(),
        })
    }
}
