//! This node's catalogue: what share shares (through its public API), each entry marked
//! with the name and revision it is, if the names service knows one; kept in step with the
//! local full-text index and the keywords announced in the DHT. [`Catalog`] owns all of
//! it; the broker client and the word index follow its changes ([`Catalog::changes`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kith_core::sync::lock;
use kith_core::tasks::Tasks;
use kith_names::Names;
use kith_overlay::Overlay;
use kith_share::catalogue::Item;
use kith_share::{Share, ShareKind};
use tokio::sync::{broadcast, watch};

use crate::index::CatalogIndex;
use crate::protocol::{Entry, WireHit};
use crate::query::Query;
use crate::{Error, Event, MAX_KEYWORDS, keyword_key, query};

/// Events kept for slow receivers (a receiver that lags reads the catalogue again).
const EVENTS: usize = 16;

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

/// This node's catalogue, its full-text index and the keywords it announces.
pub(crate) struct Catalog {
    local: CatalogIndex,
    /// The catalogue by scope and content ID, with where each item is on disk.
    entries: Mutex<Catalogue>,
    /// Held while the index is brought up to date: one refresh at a time, so an older
    /// snapshot never lands after a newer one.
    refreshing: tokio::sync::Mutex<()>,
    /// Bumped whenever the catalogue changes.
    generation: watch::Sender<u64>,
    keywords: Mutex<HashSet<String>>,
    events: broadcast::Sender<Event>,
    share: Share,
    names: Names,
    overlay: Overlay,
    tasks: Tasks,
}

impl Catalog {
    /// Opens the index in `dir` (blocking work on `tasks`); the catalogue starts as the
    /// index holds it, until the first refresh.
    pub async fn open(
        dir: PathBuf,
        share: Share,
        names: Names,
        overlay: Overlay,
        tasks: Tasks,
    ) -> Result<Self, Error> {
        let (local, prev) = tasks
            .blocking(move || -> Result<_, Error> {
                std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?;
                let local = CatalogIndex::open(Some(&dir.join("index")))?;
                let prev: Catalogue = local
                    .entries_of("")?
                    .into_iter()
                    .map(|(scope, e)| ((scope, e.id.clone()), (e, PathBuf::new())))
                    .collect();
                Ok((local, prev))
            })
            .await??;
        Ok(Self {
            local,
            entries: Mutex::new(prev),
            refreshing: tokio::sync::Mutex::new(()),
            generation: watch::channel(0).0,
            keywords: Mutex::default(),
            events: broadcast::channel(EVENTS).0,
            share,
            names,
            overlay,
            tasks,
        })
    }

    /// The public catalogue (what the broker and everyone may see).
    pub fn public(&self) -> Result<Vec<Entry>, Error> {
        Ok(lock(&self.entries)?
            .iter()
            .filter(|((scope, _), _)| scope.is_empty())
            .map(|(_, (e, _))| e.clone())
            .collect())
    }

    /// Bumped whenever the catalogue changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The local index's best matches, as hits held by this node: public ones, or those
    /// of group `scope`.
    pub fn hits(&self, q: &Query, limit: usize, scope: Option<&str>) -> Vec<WireHit> {
        let me = self.overlay.peer_id().to_string();
        let hits = match scope {
            None => self.local.search(q, limit),
            Some(s) => self.local.search_scope(q, limit, s),
        };
        match hits {
            Ok(h) => h
                .into_iter()
                .map(|h| WireHit {
                    entry: h.entry,
                    peer: me.clone(),
                    addrs: Vec::new(),
                    score: h.score,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "local search failed");
                Vec::new()
            }
        }
    }

    /// Refreshes the catalogue whenever shares or names change, until shutdown.
    pub async fn follow(self: Arc<Self>) {
        use tokio::sync::broadcast::error::RecvError::Closed;
        let mut shares = self.share.events();
        let mut names = self.names.events();
        loop {
            if let Err(e) = self.refresh().await
                && !self.tasks.is_stopping()
            {
                tracing::warn!(error = %e, "cannot update the search index");
            }
            tokio::select! {
                () = self.tasks.shutdown().cancelled() => return,
                r = shares.recv() => if matches!(r, Err(Closed)) { return },
                r = names.recv() => if matches!(r, Err(Closed)) { return },
            }
            // Let a burst of changes settle.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Updates the local index to `now` (blocking: reads files, commits the index; no
    /// lock is held while it does). Returns whether anything changed.
    fn reindex(&self, now: &Catalogue) -> Result<bool, Error> {
        let old = lock(&self.entries)?.clone();
        let ix = &self.local;
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

    /// Brings the local index, the keyword announcements and (through [`Self::changes`])
    /// the broker registration and the word index in step with what this node shares.
    pub async fn refresh(self: &Arc<Self>) -> Result<(), Error> {
        let _one = self.refreshing.lock().await;
        let items = self.share.catalogue().await?;
        let named = self.names.by_content()?;
        let now = entries(items, &named);
        let words = keywords(&now);
        let entries = now.len();
        let me = self.clone();
        let changed = self
            .tasks
            .blocking(move || -> Result<bool, Error> {
                let changed = me.reindex(&now)?;
                *lock(&me.entries)? = now;
                Ok(changed)
            })
            .await??;
        if changed {
            self.generation.send_modify(|g| *g += 1);
            let _ = self.events.send(Event::CatalogueChanged { entries });
        }
        let (added, removed) = {
            let mut kw = lock(&self.keywords)?;
            let added: Vec<String> = words.difference(&kw).cloned().collect();
            let removed: Vec<String> = kw.difference(&words).cloned().collect();
            *kw = words;
            (added, removed)
        };
        for w in added {
            self.overlay.start_providing(keyword_key(&w)).await?;
        }
        for w in removed {
            self.overlay.stop_providing(keyword_key(&w)).await?;
        }
        Ok(())
    }
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
