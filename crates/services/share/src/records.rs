//! Share's own state in the store: indexed files, shares and downloads, as JSON records in
//! tables of the store engine. (The table names predate namespacing and are kept so
//! existing data dirs keep their shares.)

use kith_core::ContentId;
use kith_core::store::{Op, Store, StoreError, Table};
use serde::{Deserialize, Serialize};

const FILES: Table = Table::new("files");
const SHARES: Table = Table::new("shares");
const DOWNLOADS: Table = Table::new("downloads");

/// What the store knows of one indexed file on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub size: u64,
    pub mtime_ns: u128,
    pub manifest: ContentId,
    /// The share (root ID) this file belongs to.
    pub share: ContentId,
    /// The file as it was when its chunks were hashed (absent in records from before
    /// 0.1.1, and when the file changed while it was read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<kith_core::store::Stamp>,
}

/// A file or a folder (`file`, `dir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShareKind {
    File,
    Dir,
}

/// A shared file or folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    pub id: ContentId,
    pub path: String,
    pub name: String,
    pub kind: ShareKind,
    pub size: u64,
    pub files: u64,
    /// Seconds since the Unix epoch.
    pub added: u64,
    /// The group only whose members may see it; `None` for public content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Shared publicly on purpose (`--public`), though it came in a group: a rescan
    /// keeps it public.
    #[serde(default, skip_serializing_if = "is_false")]
    pub public_on_purpose: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ShareRecord {
    /// Its key in the table: the content and its scope, so the same content shared
    /// publicly and with a group (or with two groups) are distinct records.
    pub fn key(&self) -> String {
        key(&self.id, self.scope.as_deref())
    }
}

fn key(id: &ContentId, scope: Option<&str>) -> String {
    match scope {
        None => id.to_string(),
        Some(s) => format!("{id}@{s}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "error")]
pub enum DownloadState {
    Running,
    /// Stopped by the user; its verified chunks stay, it resumes when asked.
    Paused,
    Done,
    Failed(String),
}

impl DownloadState {
    /// Running or paused: its manifests are still needed.
    pub fn unfinished(&self) -> bool {
        matches!(self, DownloadState::Running | DownloadState::Paused)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRecord {
    pub id: ContentId,
    pub output: String,
    pub state: DownloadState,
    pub added: u64,
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn unjson<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(StoreError::from)
}

fn all<T: for<'a> Deserialize<'a>>(store: &Store, t: Table) -> Result<Vec<T>, StoreError> {
    store
        .scan(t)?
        .into_iter()
        .map(|(_, v)| unjson(&v))
        .collect()
}

pub(crate) fn put_file(path: String, r: &FileRecord) -> Op {
    Op::Put(FILES, path, json(r))
}

pub(crate) fn remove_file(path: String) -> Op {
    Op::Remove(FILES, path)
}

pub(crate) fn put_share(r: &ShareRecord) -> Op {
    Op::Put(SHARES, r.key(), json(r))
}

pub(crate) fn remove_share(r: &ShareRecord) -> Op {
    Op::Remove(SHARES, r.key())
}

/// Moves share records written before records were keyed by content and scope (keyed
/// by content alone) to their keys (blocking).
pub(crate) fn migrate(store: &Store) -> Result<(), StoreError> {
    let mut ops = Vec::new();
    for (k, v) in store.scan(SHARES)? {
        let r: ShareRecord = unjson(&v)?;
        if k != r.key() {
            ops.push(Op::Remove(SHARES, k));
            ops.push(put_share(&r));
        }
    }
    store.apply(ops)
}

pub(crate) fn put_download(r: &DownloadRecord) -> Op {
    Op::Put(DOWNLOADS, r.id.to_string(), json(r))
}

pub(crate) fn remove_download(id: &ContentId) -> Op {
    Op::Remove(DOWNLOADS, id.to_string())
}

pub(crate) fn file(store: &Store, path: &str) -> Result<Option<FileRecord>, StoreError> {
    store.get(FILES, path)?.map(|v| unjson(&v)).transpose()
}

/// Every indexed file, in one pass over the table.
pub(crate) fn files(store: &Store) -> Result<Vec<(String, FileRecord)>, StoreError> {
    store
        .scan(FILES)?
        .into_iter()
        .map(|(k, v)| Ok((k, unjson(&v)?)))
        .collect()
}

/// All indexed files that belong to `share`.
pub(crate) fn files_of(
    store: &Store,
    share: &ContentId,
) -> Result<Vec<(String, FileRecord)>, StoreError> {
    let mut all = files(store)?;
    all.retain(|(_, r)| &r.share == share);
    Ok(all)
}

/// Every share of content `id` (publicly, with groups).
pub(crate) fn shares_of(store: &Store, id: &ContentId) -> Result<Vec<ShareRecord>, StoreError> {
    let mut all = shares(store)?;
    all.retain(|s| s.id == *id);
    Ok(all)
}

pub(crate) fn shares(store: &Store) -> Result<Vec<ShareRecord>, StoreError> {
    all(store, SHARES)
}

pub(crate) fn download(
    store: &Store,
    id: &ContentId,
) -> Result<Option<DownloadRecord>, StoreError> {
    store
        .get(DOWNLOADS, &id.to_string())?
        .map(|v| unjson(&v))
        .transpose()
}

pub(crate) fn downloads(store: &Store) -> Result<Vec<DownloadRecord>, StoreError> {
    all(store, DOWNLOADS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_store() -> Result<(), StoreError> {
        let d = tempfile::tempdir().map_err(|e| kith_core::store::io_err("tempdir", e))?;
        let store = Store::open(&d.path().join("db"))?;
        let id = ContentId::manifest(b"m");
        let dl = DownloadRecord {
            id,
            output: "/x".into(),
            state: DownloadState::Failed("gone".into()),
            added: 1,
        };
        store.apply(vec![put_download(&dl)])?;
        assert_eq!(download(&store, &id)?, Some(dl.clone()));
        assert_eq!(downloads(&store)?, vec![dl]);
        assert_eq!(shares_of(&store, &id)?, vec![]);
        // The same content, publicly and in a group: two records.
        let public = ShareRecord {
            id,
            path: "/x".into(),
            name: "x".into(),
            kind: ShareKind::File,
            size: 1,
            files: 1,
            added: 1,
            scope: None,
            public_on_purpose: false,
        };
        let group = ShareRecord {
            scope: Some("grp-1".into()),
            ..public.clone()
        };
        store.apply(vec![put_share(&public), put_share(&group)])?;
        assert_eq!(shares_of(&store, &id)?.len(), 2);
        store.apply(vec![remove_share(&public)])?;
        assert_eq!(shares_of(&store, &id)?, vec![group.clone()]);
        // A record from before: keyed by content alone.
        store.apply(vec![Op::Put(SHARES, id.to_string(), json(&group))])?;
        migrate(&store)?;
        assert_eq!(store.scan(SHARES)?.len(), 1);
        assert_eq!(shares_of(&store, &id)?, vec![group]);
        Ok(())
    }
}
