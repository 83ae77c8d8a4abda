//! Locks. A lock is poisoned when a task panicked while holding it, and that panic already
//! stops the node ([`crate::tasks`]). Data whose every state is valid (counters, rate
//! buckets, sets of IDs) is taken back from a poisoned lock with [`recover`]: reading it as
//! "empty" instead would be wrong. Data with invariants across fields is locked with an
//! error instead (each service's `lock` helper).

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the data back if the lock is poisoned. Only for data that no
/// half-done update can leave invalid.
pub fn recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
