//! What this node shares, item by item, for services that describe it to others (search):
//! every shared file or folder, and every file inside a shared folder.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use kith_core::ContentId;
use kith_core::store::{Store, StoreError};

use crate::records::{self, ShareKind};

/// Most items in one node's catalogue.
pub const MAX_ITEMS: usize = 100_000;

/// One item of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: ContentId,
    /// File or folder name.
    pub name: String,
    /// Path inside the share, starting with the share's name.
    pub path: String,
    pub size: u64,
    pub kind: ShareKind,
    /// Where it is on this node's disk.
    pub local: PathBuf,
    /// The group only whose members may see it; `None` for public content.
    pub scope: Option<String>,
}

/// The catalogue, by group and content ID (an item shared twice with the same group, or
/// publicly twice, is listed once).
pub(crate) fn build(
    store: &Store,
) -> Result<BTreeMap<(Option<String>, ContentId), Item>, StoreError> {
    let mut out: BTreeMap<(Option<String>, ContentId), Item> = BTreeMap::new();
    let mut by_share: HashMap<ContentId, Vec<(String, u64, ContentId)>> = HashMap::new();
    for (path, rec) in records::files(store)? {
        by_share
            .entry(rec.share)
            .or_default()
            .push((path, rec.size, rec.manifest));
    }
    for s in records::shares(store)? {
        if out.len() >= MAX_ITEMS {
            break;
        }
        out.entry((s.scope.clone(), s.id)).or_insert_with(|| Item {
            id: s.id,
            name: s.name.clone(),
            path: s.name.clone(),
            size: s.size,
            kind: s.kind,
            local: PathBuf::from(&s.path),
            scope: s.scope.clone(),
        });
        if s.kind != ShareKind::Dir {
            continue;
        }
        let root = Path::new(&s.path);
        for (path, size, fid) in by_share.remove(&s.id).unwrap_or_default() {
            if out.len() >= MAX_ITEMS {
                break;
            }
            let p = Path::new(&path);
            let rel = p
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.entry((s.scope.clone(), fid)).or_insert_with(|| Item {
                id: fid,
                name,
                path: format!("{}/{}", s.name, rel),
                size,
                kind: ShareKind::File,
                local: p.to_owned(),
                scope: s.scope.clone(),
            });
        }
    }
    Ok(out)
}
