//! Content of a group (a scope): which blocks only group members may fetch, and where the
//! content is announced (under a locator only members can compute, never under its plain
//! content ID).

use std::collections::{HashMap, HashSet};

use kith_core::id::{ContentId, Hash};
use kith_core::manifest::Manifest;
use kith_core::store::{Store, StoreError};

use crate::records;

/// Every block (manifests and chunks) of the tree under `root` that the store knows.
fn blocks_of(store: &Store, root: &ContentId, out: &mut HashSet<Hash>) -> Result<(), StoreError> {
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

/// The blocks that belong only to group shares, and the groups they belong to (blocking).
/// A block that is also in a public share is public.
pub(crate) fn private_blocks(store: &Store) -> Result<HashMap<Hash, Vec<String>>, StoreError> {
    let shares = records::shares(store)?;
    let mut public = HashSet::new();
    for s in shares.iter().filter(|s| s.scope.is_none()) {
        blocks_of(store, &s.id, &mut public)?;
    }
    let mut out: HashMap<Hash, Vec<String>> = HashMap::new();
    for s in shares {
        let Some(scope) = s.scope else { continue };
        let mut mine = HashSet::new();
        blocks_of(store, &s.id, &mut mine)?;
        for h in mine.difference(&public) {
            let v = out.entry(*h).or_default();
            if !v.contains(&scope) {
                v.push(scope.clone());
            }
        }
    }
    Ok(out)
}
