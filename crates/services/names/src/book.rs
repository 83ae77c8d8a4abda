//! The names this node knows (its own, and those it resolved or follows), kept in
//! `names.json` in the service's folder. Only a verified record that is newer than the one
//! held replaces it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::{NameRecord, RecordError};

/// Most names a node remembers.
pub const MAX_NAMES: usize = 10_000;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct NameBook {
    pub records: BTreeMap<String, NameRecord>,
    pub subscribed: Vec<String>,
    /// Every revision seen: content ID -> (name, revision), so older copies are
    /// recognised as revisions too.
    #[serde(default)]
    revisions: BTreeMap<String, (String, u64)>,
}

impl NameBook {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("names.json")
    }

    /// Reads the book (blocking); an unreadable one is set aside and a new one started.
    pub fn load(dir: &Path) -> Self {
        match std::fs::read(Self::path(dir)) {
            Ok(b) => match serde_json::from_slice::<NameBook>(&b) {
                Ok(mut book) => {
                    // Keep only records that still verify.
                    book.records.retain(|_, r| r.verify().is_ok());
                    book
                }
                Err(e) => {
                    tracing::warn!(error = %e, "name book unreadable; starting empty");
                    Self::default()
                }
            },
            Err(_) => Self::default(),
        }
    }

    /// The book as JSON, to be written by [`save`].
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Takes a verified record if it is newer than the one held. `Ok(true)` when it is.
    pub fn accept(&mut self, r: NameRecord) -> Result<bool, RecordError> {
        let key = r.full_name();
        if let Some(old) = self.records.get(&key) {
            r.replaces(old)?;
            if *old == r {
                return Ok(false);
            }
        } else if self.records.len() >= MAX_NAMES {
            return Err(RecordError::BadName("too many names known".into()));
        }
        if self.revisions.len() >= MAX_NAMES * 4 {
            self.revisions.clear();
        }
        self.revisions
            .insert(r.id.clone(), (r.full_name(), r.revision));
        self.records.insert(key, r);
        Ok(true)
    }

    /// The name and revision each known content ID is a revision of.
    pub fn by_content(&self) -> HashMap<String, (String, u64)> {
        let mut m: HashMap<String, (String, u64)> = self.revisions.clone().into_iter().collect();
        for r in self.records.values() {
            m.insert(r.id.clone(), (r.full_name(), r.revision));
        }
        m
    }
}

/// Writes a snapshot atomically (blocking).
pub(crate) fn save(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join("names.json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, NameBook::path(dir))
}
