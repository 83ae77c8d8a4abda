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
