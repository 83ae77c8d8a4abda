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
    records: BTreeMap<String, NameRecord>,
    subscribed: Vec<String>,
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
            return Err(RecordError::TooManyNames(MAX_NAMES));
        }
        if self.revisions.len() >= MAX_NAMES * 4 {
            self.revisions.clear();
        }
        self.revisions
            .insert(r.id.clone(), (r.full_name(), r.revision));
        self.records.insert(key, r);
        Ok(true)
    }

    /// The newest record known of `full` (`PEER_ID/name`).
    pub fn get(&self, full: &str) -> Option<&NameRecord> {
        self.records.get(full)
    }

    /// Every name known, newest revisions.
    pub fn records(&self) -> impl Iterator<Item = &NameRecord> {
        self.records.values()
    }

    /// The names followed (their topics are subscribed to at start).
    pub fn subscribed(&self) -> &[String] {
        &self.subscribed
    }

    /// Follows `full`; `Ok(false)` when it was already followed.
    pub fn subscribe(&mut self, full: &str) -> Result<bool, RecordError> {
        if self.subscribed.iter().any(|s| s == full) {
            return Ok(false);
        }
        if self.subscribed.len() >= MAX_NAMES {
            return Err(RecordError::TooManySubscriptions(MAX_NAMES));
        }
        self.subscribed.push(full.to_owned());
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
    kith_core::sync::write_atomic(&NameBook::path(dir), bytes)
}
