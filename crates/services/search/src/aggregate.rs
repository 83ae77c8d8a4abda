//! Merges hits from every source into results: one per content ID, its providers growing
//! as peers answer; older revisions of a name are marked outdated.

use std::collections::HashMap;

use kith_names::Names;
use kith_overlay::{Multiaddr, Overlay, PeerId};
use tokio::sync::mpsc;

use crate::SearchResult;
use crate::protocol::WireHit;

/// Most providers listed per result.
const MAX_PROVIDERS: usize = 64;
/// Addresses taken from one hit.
const MAX_ADDRS: usize = 8;

/// The results being merged.
struct Merge<'a> {
    names: &'a Names,
    results: HashMap<String, SearchResult>,
    /// Newest revision seen per name.
    newest: HashMap<String, u64>,
    limit: usize,
}

impl Merge<'_> {
    /// Takes one hit; returns the results to send (new or changed).
    fn take(&mut self, h: WireHit) -> Vec<SearchResult> {
        let is_new = !self.results.contains_key(&h.entry.id);
        if is_new && self.results.len() >= self.limit {
            return Vec::new();
        }
        let id = h.entry.id.clone();
        let r = self
            .results
            .entry(id.clone())
            .or_insert_with(|| SearchResult {
                id: h.entry.id.clone(),
                name: h.entry.name.clone(),
                path: h.entry.path.clone(),
                size: h.entry.size,
                kind: h.entry.kind.clone(),
                providers: Vec::new(),
                score: h.score,
                name_key: h.entry.name_key.clone(),
                revision: h.entry.revision,
                outdated: None,
            });
        let mut changed = is_new;
        if !r.providers.contains(&h.peer) && r.providers.len() < MAX_PROVIDERS {
            r.providers.push(h.peer.clone());
            changed = true;
        }
        if h.score > r.score {
            r.score = h.score;
        }
        let named = r.name_key.clone().zip(r.revision);
        let mut out = match named {
            Some((k, rev)) => self.revisions(&id, &k, rev, &mut changed),
            None => Vec::new(),
        };
        if changed && let Some(r) = self.results.get(&id) {
            out.push(r.clone());
        }
        out
    }

    /// Marks results of name `k` older than the newest revision known as outdated.
    fn revisions(&mut self, id: &str, k: &str, rev: u64, changed: &mut bool) -> Vec<SearchResult> {
        let mut out = Vec::new();
        let known = self.names.newest_revision(k).unwrap_or(0);
        let best = self.newest.entry(k.to_owned()).or_insert(known);
        if rev > *best {
            *best = rev;
            // Earlier results of this name are now outdated.
            for other in self.results.values_mut() {
                if other.name_key.as_deref() == Some(k)
                    && other.revision.is_some_and(|x| x < rev)
                    && other.outdated != Some(true)
                {
                    other.outdated = Some(true);
                    out.push(other.clone());
                }
            }
        }
        let best = *best;
        if let Some(r) = self.results.get_mut(id) {
            let o = Some(rev < best);
            if r.outdated != o {
                r.outdated = o;
                *changed = true;
            }
        }
        out
    }
}

pub(crate) async fn run(
    overlay: &Overlay,
    names: &Names,
    mut hits: mpsc::Receiver<WireHit>,
    tx: mpsc::Sender<SearchResult>,
    deadline: tokio::time::Instant,
    limit: usize,
) {
    let mut merge = Merge {
        names,
        results: HashMap::new(),
        newest: HashMap::new(),
        limit,
    };
    while let Ok(Some(h)) = tokio::time::timeout_at(deadline, hits.recv()).await {
        if let Err(reason) = h.entry.check() {
            tracing::debug!(%reason, "dropped a malformed search hit");
            continue;
        }
        let Ok(peer) = h.peer.parse::<PeerId>() else {
            continue;
        };
        for a in h.addrs.iter().take(MAX_ADDRS) {
            if let Ok(addr) = a.parse::<Multiaddr>() {
                let _ = overlay.add_address(peer, addr).await;
            }
        }
        for r in merge.take(h) {
            if tx.send(r).await.is_err() {
                return;
            }
        }
    }
}
