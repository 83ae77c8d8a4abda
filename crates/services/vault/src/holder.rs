//! The holder's side: shares kept for others in `held/`, within what this node offers
//! and what its disk has free, with an account per owner. `held.json` is the account
//! (written atomically on every change); each share is a file named after it, with its
//! leaf hashes beside it.
//!
//! Fairness: an owner may use up to an eighth of the offer, plus twice what this node
//! stores with that owner; so nodes that lend space get space, and free riders get less.
//!
//! The disk: the offer never promises more than the disk has free beyond
//! [`DISK_HEADROOM`] (asked of the file system before every offer and store), and a
//! write that fails for want of space makes the holder offer nothing for
//! [`FULL_BACKOFF`] (or until it deletes a share), so owners place their shares
//! elsewhere at once instead of sending them here to be refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kith_core::store::now_secs;
use kith_core::sync::{recover, write_atomic};
use serde::{Deserialize, Serialize};

use crate::protocol::Offer;
use crate::tree;

/// Part of the offer any owner gets before it lends anything back.
const FREE_SHARE: u64 = 8;
/// What an owner may use per byte it holds for this node.
const RECIPROCITY: u64 = 2;
/// Most shares held (a bound on the account's size).
const MAX_HELD: usize = 1_000_000;
/// Disk space never offered: the node's own files (its database, the account, logs)
/// need room to grow on the same disk.
const DISK_HEADROOM: u64 = 64 << 20;
/// How long a holder whose write failed for want of space offers nothing (unless a
/// delete frees room first): long enough that owners place elsewhere, short enough that
/// space freed by other means is offered again the same hour.
const FULL_BACKOFF: Duration = Duration::from_secs(600);
/// `errno` for "no space left on device" (Linux and the BSDs agree).
const ENOSPC: i32 = 28;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HeldShare {
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    pub size: u64,
    pub since: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    shares: BTreeMap<String, HeldShare>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("this holder offers no space")]
    NoOffer,
    #[error("over quota: {size} bytes asked, {free} free for you")]
    Quota { size: u64, free: u64 },
    #[error("the share does not match its name")]
    Mismatch,
    #[error("the holder's disk is full")]
    DiskFull,
    #[error("the holder could not keep it: {0}")]
    Io(#[source] std::io::Error),
}

/// What the holder knows of its disk.
#[derive(Debug, Default)]
struct Disk {
    /// Bytes free for shares (free space less [`DISK_HEADROOM`]) when last asked; `None`
    /// when the file system did not say.
    free: Option<u64>,
    /// When a write last failed for want of space.
    full_since: Option<Instant>,
}

/// Poisoned locks are taken back ([`recover`]): the account is a map of shares each
/// valid alone (and checked against the files in `held/` at start), `reserved` a
/// counter, and `disk` two readings that any state leaves valid.
pub(crate) struct Holder {
    dir: PathBuf,
    offered: u64,
    account: Mutex<Account>,
    /// Bytes promised to stores in progress.
    reserved: Mutex<u64>,
    disk: Mutex<Disk>,
    /// Test hook: writes fail with "no space left" once the shares held and this one
    /// would pass this many bytes (a disk that fills behind the holder's back).
    fail_writes_after: Option<u64>,
}

impl Holder {
    /// Loads the account; shares whose files are gone are dropped from it, and files no
    /// share in the account names (a write cut short, a crash before the account was
    /// saved) are removed. Blocking.
    pub fn load(dir: &Path, offered: u64, fail_writes_after: Option<u64>) -> Self {
        let dir = dir.join("held");
        let mut account: Account = std::fs::read(dir.join("held.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        account.shares.retain(|name, _| dir.join(name).exists());
        remove_strays(&dir, &account);
        let h = Self {
            dir,
            offered,
            account: Mutex::new(account),
            reserved: Mutex::new(0),
            disk: Mutex::new(Disk::default()),
            fail_writes_after,
        };
        h.refresh_disk();
        h
    }

    pub fn offered(&self) -> u64 {
        self.offered
    }

    fn used_by(a: &Account) -> u64 {
        a.shares.values().map(|s| s.size).sum()
    }

    /// Bytes held for everyone.
    pub fn used(&self) -> u64 {
        Self::used_by(&recover(&self.account))
    }

    /// Asks the file system how much room the disk has. Blocking (a `statvfs`).
    pub fn refresh_disk(&self) {
        let mut at = self.dir.as_path();
        while !at.exists() {
            match at.parent() {
                Some(p) => at = p,
                None => break,
            }
        }
        let free = fs4::available_space(at)
            .ok()
            .map(|b| b.saturating_sub(DISK_HEADROOM));
        recover(&self.disk).free = free;
    }

    /// Bytes the disk can still take for shares not yet promised.
    fn disk_room(&self) -> u64 {
        let d = recover(&self.disk);
        if d.full_since.is_some_and(|t| t.elapsed() < FULL_BACKOFF) {
            return 0;
        }
        d.free
            .unwrap_or(u64::MAX)
            .saturating_sub(*recover(&self.reserved))
    }

    /// What `owner` may store, given what this node stores with it (`lent_back`).
    pub fn offer(&self, owner: &str, lent_back: u64) -> Offer {
        let disk = self.disk_room();
        let a = recover(&self.account);
        let used = Self::used_by(&a) + *recover(&self.reserved);
        let yours: u64 = a
            .shares
            .values()
            .filter(|s| s.owner == owner)
            .map(|s| s.size)
            .sum();
        let allowance = self.offered / FREE_SHARE + lent_back.saturating_mul(RECIPROCITY);
        let free_for_you = self
            .offered
            .saturating_sub(used)
            .min(allowance.saturating_sub(yours))
            .min(disk);
        Offer {
            offered: self.offered,
            used,
            yours,
            free_for_you,
        }
    }

    /// Holds room for a share of `size` bytes from `owner`, or refuses.
    pub fn reserve(&self, owner: &str, size: u64, lent_back: u64) -> Result<(), Refusal> {
        if self.offered == 0 {
            return Err(Refusal::NoOffer);
        }
        if size > self.disk_room() {
            return Err(Refusal::DiskFull);
        }
        let free = self.offer(owner, lent_back).free_for_you;
        if size > free || recover(&self.account).shares.len() >= MAX_HELD {
            return Err(Refusal::Quota { size, free });
        }
        *recover(&self.reserved) += size;
        Ok(())
    }

    pub fn release(&self, size: u64) {
        let mut r = recover(&self.reserved);
        *r = r.saturating_sub(size);
    }

    pub fn has(&self, name: &str) -> bool {
        recover(&self.account).shares.contains_key(name)
    }

    /// Keeps a share whose room was reserved; checks it against its name first. Nothing
    /// is kept, on disk or in the account, unless all of it is. Blocking.
    pub fn keep(
        &self,
        owner: &str,
        person: Option<String>,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), Refusal> {
        let size = bytes.len() as u64;
        let result = self.write(name, bytes);
        self.release(size);
        result.inspect_err(|r| self.note_full(r))?;
        let mut a = recover(&self.account);
        a.shares.insert(
            name.to_owned(),
            HeldShare {
                owner: owner.to_owned(),
                person,
                size,
                since: now_secs(),
            },
        );
        let saved = self.save(&a);
        if let Err(r) = &saved {
            // The account on disk does not list it: neither does the one in memory.
            a.shares.remove(name);
            drop(a);
            self.remove_files(name);
            self.note_full(r);
        }
        saved
    }

    fn note_full(&self, r: &Refusal) {
        if matches!(r, Refusal::DiskFull) {
            recover(&self.disk).full_since = Some(Instant::now());
            tracing::warn!(dir = %self.dir.display(), "the disk is full: offering no space for now");
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), Refusal> {
        let leaves = tree::leaves(bytes);
        let Some(want) = tree::parse(name) else {
            return Err(Refusal::Mismatch);
        };
        if tree::root(bytes.len() as u64, &leaves) != want {
            return Err(Refusal::Mismatch);
        }
        if let Some(limit) = self.fail_writes_after
            && self.used() + bytes.len() as u64 > limit
        {
            return Err(io(std::io::Error::from_raw_os_error(ENOSPC)));
        }
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let hashes: Vec<u8> = leaves.concat();
        let (data, hfile) = (self.dir.join(name), self.dir.join(leaves_file(name)));
        let written = write_atomic(&hfile, &hashes).and_then(|()| write_atomic(&data, bytes));
        if let Err(e) = written {
            self.remove_files(name);
            return Err(io(e));
        }
        Ok(())
    }

    /// Removes a share's files, and what a write cut short left of them.
    fn remove_files(&self, name: &str) {
        for f in [
            name.to_owned(),
            leaves_file(name),
            format!("{name}.tmp"),
            format!("{}.tmp", leaves_file(name)),
        ] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
    }

    fn save(&self, a: &Account) -> Result<(), Refusal> {
        let bytes = serde_json::to_vec(a).map_err(|e| Refusal::Io(e.into()))?;
        write_atomic(&self.dir.join("held.json"), &bytes).map_err(io)
    }

    /// A held share's bytes. Blocking.
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        if !self.has(name) {
            return None;
        }
        std::fs::read(self.dir.join(name)).ok()
    }

    /// An audit's answer: the share's size, its leaf hashes, and the asked leaves. Blocking.
    pub fn prove(&self, name: &str, asked: &[u32]) -> Option<(u64, Vec<tree::Hash>, Vec<u8>)> {
        use std::io::{Read, Seek, SeekFrom};
        let size = recover(&self.account).shares.get(name)?.size;
        let raw = std::fs::read(self.dir.join(leaves_file(name))).ok()?;
        let hashes: Vec<tree::Hash> = raw
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok())
            .collect();
        let mut f = std::fs::File::open(self.dir.join(name)).ok()?;
        let mut data = Vec::new();
        for &i in asked {
            let r = tree::leaf_range(size, i as usize)?;
            f.seek(SeekFrom::Start(r.start as u64)).ok()?;
            let at = data.len();
            data.resize(at + r.len(), 0);
            f.read_exact(data.get_mut(at..)?).ok()?;
        }
        Some((size, hashes, data))
    }

    /// Drops a share `owner` (or a device of the same person) stored. Blocking.
    pub fn delete(&self, owner: &str, person: Option<&str>, name: &str) -> bool {
        let mut a = recover(&self.account);
        let Some(s) = a.shares.get(name) else {
            return false;
        };
        let same_person = person.is_some() && s.person.as_deref() == person;
        if s.owner != owner && !same_person {
            return false;
        }
        a.shares.remove(name);
        self.remove_files(name);
        recover(&self.disk).full_since = None;
        self.save(&a).is_ok()
    }

    /// Bytes held for each owner.
    pub fn by_owner(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in recover(&self.account).shares.values() {
            *out.entry(s.owner.clone()).or_insert(0) += s.size;
        }
        out
    }
}

fn leaves_file(name: &str) -> String {
    format!("{name}.leaves")
}

/// Removes the files in `dir` of shares the account does not list (a share's file, its
/// leaves, and temporary files of either), and a temporary copy of the account.
fn remove_strays(dir: &Path, account: &Account) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let base = file.strip_suffix(".tmp").unwrap_or(&file);
        let base = base.strip_suffix(".leaves").unwrap_or(base);
        let stray = if base == "held.json" {
            file != "held.json"
        } else {
            tree::parse(base).is_some() && !account.shares.contains_key(base)
        };
        if stray {
            tracing::info!(file, "removing a file of no share held");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn io(e: std::io::Error) -> Refusal {
    if e.raw_os_error() == Some(ENOSPC) || e.kind() == std::io::ErrorKind::StorageFull {
        Refusal::DiskFull
    } else {
        Refusal::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_hold_and_lending_back_earns_room() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let h = Holder::load(dir.path(), 8_000, None);
        // A stranger gets an eighth of the offer.
        assert_eq!(h.offer("a", 0).free_for_you, 1_000);
        assert!(h.reserve("a", 1_001, 0).is_err());
        // An owner that holds 2,000 bytes for us gets 1,000 + 4,000.
        assert_eq!(h.offer("b", 2_000).free_for_you, 5_000);
        let share = vec![9u8; 900];
        let name = tree::name(&share);
        assert!(h.reserve("a", 900, 0).is_ok());
        assert!(h.keep("a", None, &name, &share).is_ok());
        assert_eq!(h.offer("a", 0).free_for_you, 100);
        assert_eq!(h.read(&name).as_deref(), Some(share.as_slice()));
        let Some((size, hashes, data)) = h.prove(&name, &[0]) else {
            panic!("no proof");
        };
        let root = tree::parse(&name).unwrap_or_default();
        assert!(tree::check_proof(&root, size, &hashes, &[0], &data));
        assert!(!h.delete("b", None, &name), "only its owner deletes it");
        assert!(h.delete("a", None, &name));
        assert_eq!(h.offer("a", 0).free_for_you, 1_000);
        let none = Holder::load(dir.path(), 0, None);
        assert!(matches!(none.reserve("a", 1, 0), Err(Refusal::NoOffer)));
    }

    #[test]
    fn a_share_that_does_not_match_its_name_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let h = Holder::load(dir.path(), 8_000, None);
        let name = tree::name(b"right");
        assert!(h.reserve("a", 5, 0).is_ok());
        assert!(matches!(
            h.keep("a", None, &name, b"wrong"),
            Err(Refusal::Mismatch)
        ));
        assert_eq!(h.offer("a", 0).used, 0);
    }

    #[test]
    fn a_full_disk_is_refused_before_the_bytes_and_nothing_half_written_stays() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // The disk fills behind the holder's back after 1,000 bytes.
        let h = Holder::load(dir.path(), 80_000, Some(1_000));
        let (small, big) = (vec![1u8; 600], vec![2u8; 600]);
        assert!(h.reserve("a", 600, 0).is_ok());
        assert!(h.keep("a", None, &tree::name(&small), &small).is_ok());
        assert!(h.reserve("a", 600, 0).is_ok(), "the offer did not know");
        let name = tree::name(&big);
        assert!(matches!(
            h.keep("a", None, &name, &big),
            Err(Refusal::DiskFull)
        ));
        assert!(!h.has(&name));
        // From now on it offers nothing, and refuses before a byte is read.
        assert_eq!(h.offer("a", 0).free_for_you, 0);
        assert!(matches!(h.reserve("b", 10, 0), Err(Refusal::DiskFull)));
        // A delete frees room: it offers again.
        assert!(h.delete("a", None, &tree::name(&small)));
        assert!(h.offer("a", 0).free_for_you > 0);
        assert_eq!(h.used(), 0);
    }

    #[test]
    fn files_of_no_share_held_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let h = Holder::load(dir.path(), 80_000, None);
        let kept = vec![3u8; 100];
        let name = tree::name(&kept);
        assert!(h.reserve("a", 100, 0).is_ok());
        assert!(h.keep("a", None, &name, &kept).is_ok());
        let held = dir.path().join("held");
        let stray = tree::name(b"stray");
        for f in [
            stray.clone(),
            format!("{stray}.leaves"),
            format!("{stray}.tmp"),
            "held.json.tmp".to_owned(),
        ] {
            std::fs::write(held.join(f), b"x").unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(held.join("notes.txt"), b"mine").unwrap_or_else(|e| panic!("{e}"));
        let again = Holder::load(dir.path(), 80_000, None);
        assert!(again.has(&name));
        let mut left: Vec<String> = std::fs::read_dir(&held)
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            name.clone(),
            format!("{name}.leaves"),
            "held.json".to_owned(),
            "notes.txt".to_owned(),
        ];
        want.sort();
        assert_eq!(left, want);
    }
}
