//! Content of a group (a scope): which blocks only group members may fetch, and where the
//! content is announced (under a locator only members can compute, never under its plain
//! content ID).

use std::collections::{HashMap, HashSet};

use kith_core::id::{ContentId, Hash};
use kith_core::manifest::Manifest;
use kith_core::store::{Store, StoreError};

use crate::origins::{Key, Origins};
use crate::records;

/// Every block (manifests and chunks) of the tree under `root` that the store knows.
pub(crate) fn blocks_of(
    store: &Store,
    root: &ContentId,
    out: &mut HashSet<Hash>,
) -> Result<(), StoreError> {
    let mut stack = vec![*root];
    while let Some(id) = stack.pop() {
        if !out.insert(*id.hash()) {
            continue;
        }
        let Some(bytes) = store.block(&id)? else {
            continue;
        };
        match Manifest::decode(&bytes) {
            Ok(Manifest::Dir(d)) => stack.extend(d.entries.iter().map(|e| e.id)),
            Ok(Manifest::File(f)) => out.extend(f.chunks.iter().map(|c| c.hash)),
            Err(_) => {}
        }
    }
    Ok(())
}

/// The blocks that belong only to groups, and the groups they belong to (blocking): those
/// of group shares, and of anything else here that came in a group (a download not
/// finished, or one whose share was since removed). A block that is also in a public
/// share is public.
pub(crate) fn private_blocks(
    store: &Store,
    origins: &Origins,
) -> Result<HashMap<Hash, Vec<String>>, StoreError> {
    let shares = records::shares(store)?;
    let mut public = HashSet::new();
    for s in shares.iter().filter(|s| s.scope.is_none()) {
        blocks_of(store, &s.id, &mut public)?;
    }
    let scoped = shares
        .into_iter()
        .filter_map(|s| Some((s.id, s.scope?)))
        .chain(
            origins
                .roots()
                .into_iter()
                .flat_map(|(id, groups)| groups.into_iter().map(move |g| (id, g))),
        );
    let mut out: HashMap<Hash, Vec<String>> = HashMap::new();
    for (id, scope) in scoped {
        let mut mine = HashSet::new();
        blocks_of(store, &id, &mut mine)?;
        for h in mine.difference(&public) {
            let v = out.entry(*h).or_default();
            if !v.contains(&scope) {
                v.push(scope.clone());
            }
        }
    }
    Ok(out)
}

/// The roots and files of every group share, remembered as their groups' content: data
/// dirs from before origins were kept learn them once (blocking).
pub(crate) fn seed_origins(store: &Store, origins: &Origins) -> Result<(), StoreError> {
    for s in records::shares(store)? {
        let Some(scope) = &s.scope else { continue };
        let mut keys = vec![Key::Root(s.id)];
        let mut stack = vec![s.id];
        while let Some(id) = stack.pop() {
            match store.block(&id)?.map(|b| Manifest::decode(&b)) {
                Some(Ok(Manifest::Dir(d))) => stack.extend(d.entries.iter().map(|e| e.id)),
                Some(Ok(Manifest::File(f))) if f.size > 0 => keys.push(Key::File(f.content_hash())),
                _ => {}
            }
        }
        origins
            .record(&keys, scope)
            .map_err(|e| kith_core::store::io_err("origins.jsonl", e))?;
    }
    Ok(())
}

/// Blocks only a group's members may fetch, and their groups: worked out again whenever
/// the shares change, and added to while a group's download runs. Sets of IDs (every
/// state is valid): taken back from a poisoned lock.
#[derive(Default)]
pub(crate) struct PrivateBlocks(std::sync::Mutex<HashMap<Hash, Vec<String>>>);

impl PrivateBlocks {
    /// Replaces what is known with `blocks` (from [`private_blocks`]).
    pub fn set(&self, blocks: HashMap<Hash, Vec<String>>) {
        *kith_core::sync::recover(&self.0) = blocks;
    }

    /// Every block in `blocks` is `group`'s too.
    pub fn hold(&self, blocks: impl IntoIterator<Item = Hash>, group: &str) {
        let mut private = kith_core::sync::recover(&self.0);
        for h in blocks {
            let v = private.entry(h).or_default();
            if !v.iter().any(|g| g == group) {
                v.push(group.to_owned());
            }
        }
    }

    /// The groups whose members alone may fetch block `hash` (`None`: anyone may).
    pub fn groups_of(&self, hash: &Hash) -> Option<Vec<String>> {
        kith_core::sync::recover(&self.0).get(hash).cloned()
    }
}
