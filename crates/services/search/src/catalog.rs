//! This node's catalogue: what share shares (through its public API), each entry marked
//! with the name and revision it is, if the names service knows one; kept in step with the
//! local full-text index and the keywords announced in the DHT.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use kith_share::ShareKind;
use kith_share::catalogue::Item;

use crate::protocol::Entry;
use crate::state::{Inner, lock};
use crate::{Error, MAX_KEYWORDS, keyword_key, query};

/// Text read from the start of a text-like file for the full-text index.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;

/// Entries by scope (a group; empty for public entries) and content ID.
pub(crate) type Catalogue = BTreeMap<(String, String), (Entry, PathBuf)>;

/// Entries of `items`, marked with the names they are revisions of.
fn entries(items: Vec<Item>, named: &HashMap<String, (String, u64)>) -> Catalogue {
    items
        .into_iter()
        .map(|it| {
            let id = it.id.to_string();
            let scope = it.scope.unwrap_or_default();
            let (name_key, revision) = named
                .get(&id)
                .map(|(n, r)| (Some(n.clone()), Some(*r)))
                .unwrap_or_default();
            let entry = Entry {
                id: id.clone(),
                name: it.name,
                path: it.path,
                size: it.size,
                kind: match it.kind {
                    ShareKind::File => "file",
                    ShareKind::Dir => "dir",
                }
                .into(),
                name_key,
                revision,
            };
            ((scope, id), (entry, it.local))
        })
        .collect()
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

/// The words of the public catalogue's names that keyword routing announces (a group's
/// entries are never announced).
fn keywords(cat: &Catalogue) -> HashSet<String> {
    let mut words = HashSet::new();
    let public = cat.iter().filter(|((scope, _), _)| scope.is_empty());
    for (_, (e, _)) in public {
        for t in query::tokens(&e.name) {
            if t.chars().count() >= query::MIN_KEYWORD_CHARS {
                if words.len() >= MAX_KEYWORDS {
                    return words;
                }
                words.insert(t);
            }
        }
    }
    words
}

/// Updates the local index to `now` (blocking: reads files, commits the index; no lock is
/// held while it does). Returns whether anything changed.
fn reindex(inner: &Inner, now: &Catalogue) -> Result<bool, Error> {
    let old = lock(&inner.catalog)?.clone();
    let ix = &inner.local;
    let mut changed = false;
    for key @ (scope, id) in old.keys() {
        if !now.contains_key(key) {
            ix.remove_scoped("", scope, id)?;
            changed = true;
        }
    }
    for (key, (e, path)) in now {
        if old.get(key).map(|(o, _)| o) != Some(e) {
            let body = (e.kind == "file").then(|| text_of(path)).flatten();
            ix.add_scoped("", &key.0, e, body.as_deref())?;
            changed = true;
        }
    }
    if changed {
        ix.commit()?;
    }
    Ok(changed)
}

/// Brings the local index, the keyword announcements and (through the generation the
/// broker client watches) the broker registration in step with what this node shares.
pub(crate) async fn refresh(inner: &std::sync::Arc<Inner>) -> Result<(), Error> {
    let _one = inner.refreshing.lock().await;
    let items = inner.share.catalogue().await?;
    let named = inner.names.by_content()?;
    let now = entries(items, &named);
    let words = keywords(&now);
    let entries = now.len();
    let i = inner.clone();
    let changed = inner
        .tasks
        .blocking(move || -> Result<bool, Error> {
            let changed = reindex(&i, &now)?;
            *lock(&i.catalog)? = now;
            Ok(changed)
        })
        .await??;
    if changed {
        inner.generation.send_modify(|g| *g += 1);
        let _ = inner
            .events
            .send(crate::Event::CatalogueChanged { entries });
    }
    let (added, removed) = {
        let mut kw = lock(&inner.keywords)?;
        let added: Vec<String> = words.difference(&kw).cloned().collect();
        let removed: Vec<String> = kw.difference(&words).cloned().collect();
        *kw = words;
        (added, removed)
    };
    for w in added {
        inner.overlay.start_providing(keyword_key(&w)).await?;
    }
    for w in removed {
        inner.overlay.stop_providing(keyword_key(&w)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_like_files_only() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let t = dir.path().join("a.txt");
        std::fs::write(&t, "hello world")?;
        assert_eq!(text_of(&t).as_deref(), Some("hello world"));
        let b = dir.path().join("b.bin");
        std::fs::write(&b, [0u8, 159, 146, 150, 1, 2])?;
        assert_eq!(text_of(&b), None);
        let bad = dir.path().join("c.dat");
        std::fs::write(&bad, vec![0xffu8; 100])?;
        assert_eq!(text_of(&bad), None);
        assert_eq!(text_of(&dir.path().join("missing")), None);
        Ok(())
    }

    #[test]
    fn revisions_carry_their_name() {
        let id = kith_core::ContentId::manifest(b"x");
        let items = vec![Item {
            id,
            name: "plan.odt".into(),
            path: "plan.odt".into(),
            size: 3,
            kind: ShareKind::File,
            local: PathBuf::from("/x/plan.odt"),
            scope: None,
        }];
        let named = HashMap::from([(id.to_string(), ("P/plan".to_owned(), 4))]);
        let cat = entries(items, &named);
        let (e, local) = &cat[&(String::new(), id.to_string())];
        assert_eq!(e.name_key.as_deref(), Some("P/plan"));
        assert_eq!(e.revision, Some(4));
        assert_eq!(local, Path::new("/x/plan.odt"));
        assert!(keywords(&cat).contains("plan"));
    }
}
