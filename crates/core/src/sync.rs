//! Locks. A lock is poisoned when a task panicked while holding it, and that panic already
//! stops the node ([`crate::tasks`]). Data whose every state is valid (counters, rate
//! buckets, sets of IDs) is taken back from a poisoned lock with [`recover`]: reading it as
//! "empty" instead would be wrong. Data with invariants across fields is locked with an
//! error instead ([`lock`]).

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the data back if the lock is poisoned. Only for data that no
/// half-done update can leave invalid.
pub fn recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A lock whose holder panicked: the node is stopping. Each service's error converts
/// it (`#[from]`), so `lock(&m)?` reads the same in every service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopping: a task panicked while holding this state")]
pub struct Poisoned;

/// Locks `m`; a poisoned lock is an error, never read as "empty". For data with
/// invariants across fields, where a half-done update may have left it invalid.
pub fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, Poisoned> {
    m.lock().map_err(|_| Poisoned)
}

/// Writes `bytes` to `path` so that a reader (or a crash) sees the old file or the new
/// one, never half of one: a temporary file beside it, synced, then renamed over it.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_an_error_for_lock_and_taken_back_by_recover() {
        let m = std::sync::Arc::new(Mutex::new(vec![1]));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("poison it");
        })
        .join();
        assert_eq!(lock(&m).err(), Some(Poisoned));
        assert_eq!(*recover(&m), vec![1]);
    }
}
