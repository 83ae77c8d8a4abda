//! What happened to a job since its `job.json` was last saved: units handed out, results
//! taken and results on trust set aside (a fault of their volunteer), one JSON line each in `journal.jsonl`, appended before the volunteer
//! hears the answer. A master that dies between saves replays it at start, so a result
//! it accepted is never lost and a unit it handed out is still known as given.
//!
//! A save moves the journal aside (`journal.saving.jsonl`) with the job's snapshot taken
//! at the same moment, writes `job.json`, then deletes the moved journal. Replaying an
//! entry that is already in `job.json` changes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::job::{Job, Replica, ReplicaState};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Entry {
    Issued {
        unit: String,
        needed: u8,
        replica: Replica,
    },
    Taken {
        unit: String,
        volunteer: String,
        #[serde(flatten)]
        state: ReplicaState,
    },
    /// The volunteer `key` disagreed with a quorum: its results on trust are set aside.
    Revoked { key: String },
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join("journal.jsonl")
}

fn saving(dir: &Path) -> PathBuf {
    dir.join("journal.saving.jsonl")
}

/// Appends entries (blocking).
pub fn append(dir: &Path, entries: &[Entry]) -> std::io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path(dir))?
        .write_all(&buf)
}

/// Moves the journal aside before a save; [`saved`] deletes it after.
pub fn begin_save(dir: &Path) -> std::io::Result<()> {
    match std::fs::rename(path(dir), saving(dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub fn saved(dir: &Path) {
    let _ = std::fs::remove_file(saving(dir));
}

/// Applies what the journals hold to `job` (blocking); entries that cannot be read or
/// applied are skipped.
pub fn replay(job: &mut Job, dir: &Path) -> usize {
    let mut n = 0;
    for file in [saving(dir), path(dir)] {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            let Ok(e) = serde_json::from_str::<Entry>(line) else {
                continue;
            };
            if apply(job, e) {
                n += 1;
            }
        }
    }
    n
}

fn apply(job: &mut Job, e: Entry) -> bool {
    match e {
        Entry::Issued {
            unit,
            needed,
            replica,
        } => {
            let Some(u) = job.unit_mut(&unit) else {
                return false;
            };
            let known = u
                .replicas
                .iter()
                .any(|r| r.volunteer == replica.volunteer && r.issued == replica.issued);
            if !known {
                u.needed = needed;
                u.replicas.push(replica);
            }
            !known
        }
        Entry::Taken {
            unit,
            volunteer,
            state,
        } => job
            .take(&unit, &volunteer, state, &mut |a, b| a == b)
            .is_ok(),
        Entry::Revoked { key } => job.revoke(&key) > 0,
    }
}
