//! The catalogue of what this node shares, built from the store: one entry per shared file
//! or folder and per file inside a shared folder, with the text of text-like files.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use kith_core::store::{ShareKind, Store};

use crate::wire::Entry;

/// Text read from the start of a text-like file for the full-text index.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Most entries in one node's catalogue.
pub const MAX_ENTRIES: usize = 100_000;

/// Builds the catalogue (by content ID). `named` maps content IDs to the name records that
/// point at them, so revisions of named documents carry their name and revision.
pub fn build(
    store: &Store,
    named: &HashMap<String, (String, u64)>,
) -> Result<BTreeMap<String, (Entry, String)>, kith_core::store::StoreError> {
    let mut out: BTreeMap<String, (Entry, String)> = BTreeMap::new();
    let shares = store.shares()?;
    let files = store.files()?;
    let mut by_share: HashMap<String, Vec<(String, u64, String)>> = HashMap::new();
    for (path, rec) in files {
        by_share.entry(rec.share.to_string()).or_default().push((
            path,
            rec.size,
            rec.manifest.to_string(),
        ));
    }
    for s in shares {
        if out.len() >= MAX_ENTRIES {
            break;
        }
        let id = s.id.to_string();
        let kind = match s.kind {
            ShareKind::File => "file",
            ShareKind::Dir => "dir",
        };
        out.entry(id.clone()).or_insert_with(|| {
            let entry = named_entry(
                Entry {
                    id: id.clone(),
                    name: s.name.clone(),
                    path: s.name.clone(),
                    size: s.size,
                    kind: kind.into(),
                    name_key: None,
                    revision: None,
                },
                named,
            );
            (entry, s.path.clone())
        });
        if s.kind != ShareKind::Dir {
            continue;
        }
        let root = Path::new(&s.path);
        for (path, size, fid) in by_share.remove(&id).unwrap_or_default() {
            if out.len() >= MAX_ENTRIES {
                break;
            }
            let rel = Path::new(&path)
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.entry(fid.clone()).or_insert_with(|| {
                let entry = named_entry(
                    Entry {
                        id: fid.clone(),
                        name,
                        path: format!("{}/{}", s.name, rel),
                        size,
                        kind: "file".into(),
                        name_key: None,
                        revision: None,
                    },
                    named,
                );
                (entry, path.clone())
            });
        }
    }
    Ok(out)
}

fn named_entry(mut e: Entry, named: &HashMap<String, (String, u64)>) -> Entry {
    if let Some((name, rev)) = named.get(&e.id) {
        e.name_key = Some(name.clone());
        e.revision = Some(*rev);
    }
    e
}

/// The text of a text-like file (its first [`MAX_TEXT_BYTES`]), or `None` for binary files.
pub fn text_of(path: &Path) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    let mut buf = Vec::with_capacity(8192);
    f.take(MAX_TEXT_BYTES as u64).read_to_end(&mut buf).ok()?;
    if buf.is_empty() || buf.contains(&0) {
        return None;
    }
    let text = String::from_utf8_lossy(&buf);
    let bad = text.chars().filter(|c| *c == '\u{fffd}').count();
    // A few bad characters (e.g. a multibyte one cut at the end) are fine; many mean binary.
    if bad * 100 > text.chars().count().max(1) {
        return None;
    }
    Some(text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_like_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("a.txt");
        std::fs::write(&t, "hello world").unwrap();
        assert_eq!(text_of(&t).as_deref(), Some("hello world"));
        let b = dir.path().join("b.bin");
        std::fs::write(&b, [0u8, 159, 146, 150, 1, 2]).unwrap();
        assert_eq!(text_of(&b), None);
        let bad = dir.path().join("c.dat");
        std::fs::write(&bad, vec![0xffu8; 100]).unwrap();
        assert_eq!(text_of(&bad), None);
        assert_eq!(text_of(&dir.path().join("missing")), None);
    }
}
