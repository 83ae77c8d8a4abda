//! Where content came from. Content shared or received under a group's scope is
//! remembered here, by its root ID and by each file's bytes (whatever the file is called),
//! so that every later copy of it on this node — a second download, a copy in another
//! folder, a rescan, a cache fill, an update in place, a rebuild after a damaged store —
//! stays within that group unless its holder shares it publicly on purpose.
//!
//! Kept in `origins.jsonl` beside the journal, not in the store: one JSON line per fact,
//! appended and synced, so it survives a damaged store as the journal does. A line torn
//! by a crash is skipped when read. Nothing is ever forgotten: where content came from
//! does not change.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kith_core::ContentId;
use kith_core::id::Hash;
use serde::{Deserialize, Serialize};

/// Longest line read back (a group ID and a content ID are far shorter).
const MAX_LINE: usize = 1024;
/// Most facts read back; more means the file is not ours.
const MAX_FACTS: usize = 10_000_000;

/// What is remembered: a share's or download's root, or a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Root(ContentId),
    File(Hash),
}

/// One line of the file.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<ContentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    group: String,
}

impl Line {
    fn new(key: Key, group: &str) -> Self {
        let (root, file) = match key {
            Key::Root(id) => (Some(id), None),
            Key::File(h) => (None, Some(blake3::Hash::from_bytes(h).to_hex().to_string())),
        };
        Self {
            root,
            file,
            group: group.to_owned(),
        }
    }

    fn key(&self) -> Option<Key> {
        match (&self.root, &self.file) {
            (Some(id), None) => Some(Key::Root(*id)),
            (None, Some(hex)) => blake3::Hash::from_hex(hex.as_bytes())
                .ok()
                .map(|h| Key::File(*h.as_bytes())),
            _ => None,
        }
    }
}

/// The groups each piece of content came from.
pub(crate) struct Origins {
    path: PathBuf,
    map: Mutex<HashMap<Key, BTreeSet<String>>>,
}

impl Origins {
    /// Reads `origins.jsonl` in `dir` (blocking); a missing file is an empty record.
    pub fn load(dir: &Path) -> Self {
        let path = dir.join("origins.jsonl");
        let mut map: HashMap<Key, BTreeSet<String>> = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines().filter(|l| l.len() <= MAX_LINE).take(MAX_FACTS) {
                let Ok(l) = serde_json::from_str::<Line>(line) else {
                    continue;
                };
                if let Some(k) = l.key() {
                    map.entry(k).or_default().insert(l.group);
                }
            }
        }
        Self {
            path,
            map: Mutex::new(map),
        }
    }

    /// An empty record kept nowhere (for tools that index into a store of their own).
    pub fn empty() -> Self {
        Self {
            path: PathBuf::new(),
            map: Mutex::default(),
        }
    }

    /// The groups `key` came from (none: it never came in a group).
    pub fn groups(&self, key: &Key) -> BTreeSet<String> {
        kith_core::sync::recover(&self.map)
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Every root known to have come in a group, with its groups.
    pub fn roots(&self) -> Vec<(ContentId, BTreeSet<String>)> {
        kith_core::sync::recover(&self.map)
            .iter()
            .filter_map(|(k, g)| match k {
                Key::Root(id) => Some((*id, g.clone())),
                Key::File(_) => None,
            })
            .collect()
    }

    /// Remembers that `keys` came in `group`: appended and synced before it counts
    /// (blocking).
    pub fn record(&self, keys: &[Key], group: &str) -> std::io::Result<()> {
        let mut map = kith_core::sync::recover(&self.map);
        let new: Vec<Key> = keys
            .iter()
            .filter(|k| !map.get(k).is_some_and(|g| g.contains(group)))
            .copied()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for k in &new {
            serde_json::to_writer(&mut text, &Line::new(*k, group))
                .map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        // After a line torn by a crash, the next fact starts on a line of its own.
        let len = f.metadata()?.len();
        let mut last = [b'\n'];
        if len > 0 {
            use std::os::unix::fs::FileExt;
            f.read_exact_at(&mut last, len - 1)?;
        }
        if last != [b'\n'] {
            text.insert(0, b'\n');
        }
        f.write_all(&text)?;
        f.sync_data()?;
        for k in new {
            map.entry(k).or_default().insert(group.to_owned());
        }
        Ok(())
    }
}

/// The identity of the bytes of every non-empty file under `path` (a file or a folder;
/// links and special files are skipped), read and chunked (blocking).
pub(crate) fn contents_under(path: &Path) -> Result<Vec<Hash>, kith_core::chunker::ChunkError> {
    let mut out = Vec::new();
    let mut stack = vec![(path.to_path_buf(), 0usize)];
    while let Some((p, depth)) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() && depth < kith_core::manifest::MAX_DEPTH {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(Result::ok).map(|e| (e.path(), depth + 1)));
            }
        } else if meta.is_file() && meta.len() > 0 {
            let chunks = kith_core::chunker::chunk_file(&p)?;
            let f = kith_core::manifest::FileManifest {
                name: String::new(),
                size: chunks.iter().map(|c| u64::from(c.len)).sum(),
                chunks: chunks
                    .iter()
                    .map(|c| kith_core::manifest::Chunk {
                        hash: c.hash,
                        size: c.len,
                    })
                    .collect(),
            };
            out.push(f.content_hash());
        }
    }
    Ok(out)
}

/// Who a share is for, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Public, unless the content came to this node in a group: a copy of one group's
    /// content stays in that group, and a folder that mixes a group's content with other
    /// content is refused (the holder says which it is to be).
    Inherit,
    /// Public; refused if any of it came in a group (a name is public).
    PublicOnly,
    /// Public, even what came in a group: the holder's explicit choice (`--public`).
    Public,
    /// The members of this group only.
    Group(String),
}

impl From<Option<String>> for Audience {
    fn from(scope: Option<String>) -> Self {
        scope.map_or(Audience::Inherit, Audience::Group)
    }
}

/// Why content cannot go to the audience asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error(
        "{path} came to this node in group {group}: share it publicly only on purpose (--public)"
    )]
    FromGroup { path: String, group: String },
    #[error(
        "{path} holds content of group {group} beside other content: share it with --group {group}, or with --public to make all of it public"
    )]
    Mixed { path: String, group: String },
    #[error(
        "{path} holds content of group {group}: sharing it with {wanted} would show it to that group's members"
    )]
    OtherGroup {
        path: String,
        group: String,
        wanted: String,
    },
    #[error(
        "{path} holds content of several groups ({groups}): share it with one of them (--group)"
    )]
    ManyGroups { path: String, groups: String },
    #[error("{path} holds content of group {group}, which this device is no longer in")]
    Left { path: String, group: String },
}

/// What is known of one tree about to be shared: where each of its non-empty files
/// came from, and its root.
pub(crate) struct Tree<'a> {
    /// The path shared (named in refusals).
    pub path: &'a str,
    /// The groups the root itself came from.
    pub root: BTreeSet<String>,
    /// Each non-empty file: its path and the groups its bytes came from.
    pub files: Vec<(String, BTreeSet<String>)>,
}

impl Tree<'_> {
    /// The scope a share of this tree gets for `audience` (`None`: public), or why it
    /// cannot have one. `belongs` says whether this node is in a group.
    pub fn scope(
        &self,
        audience: &Audience,
        belongs: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, Refusal> {
        let tainted: Vec<&(String, BTreeSet<String>)> =
            self.files.iter().filter(|(_, g)| !g.is_empty()).collect();
        let first = |group: &str| {
            tainted
                .iter()
                .find(|(_, g)| g.contains(group))
                .map_or(self.path, |(p, _)| p.as_str())
                .to_owned()
        };
        match audience {
            Audience::Public => Ok(None),
            Audience::PublicOnly => match self.root.iter().next() {
                Some(g) => Err(Refusal::FromGroup {
                    path: self.path.to_owned(),
                    group: g.clone(),
                }),
                None => match tainted.first() {
                    Some((p, g)) => Err(Refusal::FromGroup {
                        path: p.clone(),
                        group: g.iter().next().cloned().unwrap_or_default(),
                    }),
                    None => Ok(None),
                },
            },
            Audience::Group(wanted) => {
                let outside = std::iter::once((self.path, &self.root))
                    .chain(tainted.iter().map(|(p, g)| (p.as_str(), g)))
                    .find(|(_, g)| !g.is_empty() && !g.contains(wanted));
                match outside {
                    Some((p, g)) => Err(Refusal::OtherGroup {
                        path: p.to_owned(),
                        group: g.iter().next().cloned().unwrap_or_default(),
                        wanted: wanted.clone(),
                    }),
                    None => Ok(Some(wanted.clone())),
                }
            }
            Audience::Inherit => self.inherited(&tainted, first, belongs),
        }
    }

    fn inherited(
        &self,
        tainted: &[&(String, BTreeSet<String>)],
        first: impl Fn(&str) -> String,
        belongs: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, Refusal> {
        if self.root.is_empty() && tainted.is_empty() {
            return Ok(None);
        }
        // The root came in a group: every file in it did too.
        if self.root.is_empty() && tainted.len() < self.files.len() {
            let group = tainted
                .first()
                .and_then(|(_, g)| g.iter().next())
                .cloned()
                .unwrap_or_default();
            return Err(Refusal::Mixed {
                path: first(&group),
                group,
            });
        }
        let mut common: Option<BTreeSet<String>> =
            (!self.root.is_empty()).then(|| self.root.clone());
        for (_, g) in tainted {
            common = Some(match common {
                None => (*g).clone(),
                Some(c) => c.intersection(g).cloned().collect(),
            });
        }
        let common = common.unwrap_or_default();
        if common.is_empty() {
            let all: BTreeSet<&String> = self
                .root
                .iter()
                .chain(tainted.iter().flat_map(|(_, g)| g))
                .collect();
            return Err(Refusal::ManyGroups {
                path: self.path.to_owned(),
                groups: all.into_iter().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        match common.iter().find(|g| belongs(g)) {
            Some(g) => Ok(Some(g.clone())),
            None => {
                let group = common.iter().next().cloned().unwrap_or_default();
                Err(Refusal::Left {
                    path: first(&group),
                    group,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(groups: &[&str]) -> BTreeSet<String> {
        groups.iter().map(|g| (*g).to_owned()).collect()
    }

    fn tree<'a>(root: &[&str], files: &[&[&str]]) -> Tree<'a> {
        Tree {
            path: "/d",
            root: set(root),
            files: files
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("/d/{i}"), set(g)))
                .collect(),
        }
    }

    #[test]
    fn scope_follows_what_came_in_a_group() {
        let member = |g: &str| g != "gone";
        let g = |s: &str| Some(s.to_owned());
        let inherit = |t: &Tree<'_>| t.scope(&Audience::Inherit, member);
        // Nothing came in a group: public, whatever is asked.
        assert_eq!(inherit(&tree(&[], &[&[], &[]])), Ok(None));
        assert_eq!(
            tree(&[], &[&[]]).scope(&Audience::PublicOnly, member),
            Ok(None)
        );
        // All of it came in fam: it stays in fam.
        assert_eq!(
            inherit(&tree(&[], &[&["fam"], &["fam", "x"]])),
            Ok(g("fam"))
        );
        assert_eq!(inherit(&tree(&["fam"], &[&[]])), Ok(g("fam")));
        // Mixed with other content, or from two groups: the holder chooses.
        assert!(matches!(
            inherit(&tree(&[], &[&["fam"], &[]])),
            Err(Refusal::Mixed { .. })
        ));
        assert!(matches!(
            inherit(&tree(&[], &[&["fam"], &["club"]])),
            Err(Refusal::ManyGroups { .. })
        ));
        // A group this device left: refused.
        assert!(matches!(
            inherit(&tree(&["gone"], &[])),
            Err(Refusal::Left { .. })
        ));
        // Another group: refused; the same group: fine.
        let fam = Audience::Group("fam".into());
        assert_eq!(
            tree(&[], &[&["fam"], &[]]).scope(&fam, member),
            Ok(g("fam"))
        );
        assert!(matches!(
            tree(&[], &[&["club"]]).scope(&fam, member),
            Err(Refusal::OtherGroup { .. })
        ));
        // A name is public: refused; on purpose: public.
        assert!(matches!(
            tree(&[], &[&["fam"]]).scope(&Audience::PublicOnly, member),
            Err(Refusal::FromGroup { .. })
        ));
        assert_eq!(
            tree(&["fam"], &[&["fam"]]).scope(&Audience::Public, member),
            Ok(None)
        );
    }

    #[test]
    fn facts_survive_a_reload_and_a_torn_line() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        let o = Origins::load(d.path());
        let root = ContentId::manifest(b"root");
        o.record(&[Key::Root(root), Key::File([3; 32])], "grp-a")?;
        o.record(&[Key::File([3; 32])], "grp-b")?;
        o.record(&[Key::File([3; 32])], "grp-b")?;
        // A crash in the middle of an append leaves half a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join("origins.jsonl"))?;
        f.write_all(b"{\"file\":\"ab")?;
        Origins::load(d.path()).record(&[Key::File([5; 32])], "grp-c")?;
        let again = Origins::load(d.path());
        assert_eq!(again.groups(&Key::File([5; 32])).len(), 1);
        let both: BTreeSet<String> = ["grp-a".to_owned(), "grp-b".to_owned()].into();
        assert_eq!(again.groups(&Key::File([3; 32])), both);
        assert_eq!(again.groups(&Key::Root(root)).len(), 1);
        assert!(again.groups(&Key::File([4; 32])).is_empty());
        assert_eq!(again.roots().len(), 1);
        let lines = std::fs::read_to_string(d.path().join("origins.jsonl"))?;
        assert_eq!(
            lines.lines().count(),
            5,
            "a fact already known is not written again"
        );
        Ok(())
    }
}
