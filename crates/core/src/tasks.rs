//! A service's tasks: one tracker per service, stopped by the node's shutdown token. A panic
//! in any of them, or in blocking work they hand to the blocking pool, is reported to the
//! node ([`Fatal`]), which stops with a clear error and a non-zero exit instead of running
//! on half alive.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    #[error("internal error in {service}: {what}")]
    Panicked { service: &'static str, what: String },
    #[error("{0} has stopped")]
    Stopped(&'static str),
}

/// The first fatal error of a node: set once, watched by the node.
#[derive(Clone, Default)]
pub struct Fatal {
    token: CancellationToken,
    what: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fatal")
            .field("set", &self.token.is_cancelled())
            .finish()
    }
}

impl Fatal {
    /// Records `what` (only the first report is kept) and wakes the node.
    pub fn report(&self, what: String) {
        tracing::error!(error = %what, "fatal error; the node stops");
        let mut w = crate::sync::recover(&self.what);
        if w.is_none() {
            *w = Some(what);
        }
        drop(w);
        self.token.cancel();
    }

    /// The first fatal error, once there is one.
    pub async fn wait(&self) -> String {
        self.token.cancelled().await;
        self.get().unwrap_or_else(|| "fatal error".to_owned())
    }

    pub fn get(&self) -> Option<String> {
        crate::sync::recover(&self.what).clone()
    }
}

thread_local! {
    static HANDLED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Marks a stretch of code on this thread whose panics are caught and turned into errors
/// (a damaged database makes its library panic). A panic hook can ask
/// [`panic_is_handled`] to keep quiet about them: the caller reports them in one line.
pub(crate) struct HandledPanics;

impl HandledPanics {
    pub(crate) fn enter() -> Self {
        HANDLED.with(|h| h.set(h.get() + 1));
        Self
    }
}

impl Drop for HandledPanics {
    fn drop(&mut self) {
        HANDLED.with(|h| h.set(h.get().saturating_sub(1)));
    }
}

/// Whether a panic on this thread now will be caught and reported as an error.
pub fn panic_is_handled() -> bool {
    HANDLED.with(|h| h.get() > 0)
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a task panicked".to_owned())
}

/// The tasks of one service.
#[derive(Clone, Debug)]
pub struct Tasks {
    service: &'static str,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    fatal: Fatal,
}

impl Tasks {
    pub fn new(service: &'static str, shutdown: CancellationToken, fatal: Fatal) -> Self {
        Self {
            service,
            tracker: TaskTracker::new(),
            shutdown,
            fatal,
        }
    }

    /// Cancelled when the node shuts down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    fn panicked(&self, what: String) -> TaskError {
        let e = TaskError::Panicked {
            service: self.service,
            what,
        };
        self.fatal.report(e.to_string());
        e
    }

    /// Spawns a task of this service; a panic in it stops the node.
    pub fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let me = self.clone();
        self.tracker.spawn(async move {
            if let Err(p) = std::panic::AssertUnwindSafe(f).catch_unwind().await {
                me.panicked(panic_message(p.as_ref()));
            }
        });
    }

    /// Runs blocking work (database commits, file reads and writes, hashing) on the
    /// blocking pool; a panic in it stops the node and comes back as an error.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, TaskError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match tokio::task::spawn_blocking(f).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_panic() => Err(self.panicked(panic_message(e.into_panic().as_ref()))),
            Err(_) => Err(TaskError::Stopped(self.service)),
        }
    }

    /// Waits for every task to end (after shutdown was signalled).
    pub async fn stopped(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_a_task_or_blocking_work_is_fatal() {
        let fatal = Fatal::default();
        let tasks = Tasks::new("test", CancellationToken::new(), fatal.clone());
        assert_eq!(tasks.blocking(|| 7).await, Ok(7));
        assert!(fatal.get().is_none());
        tasks.spawn(async { panic!("boom") });
        let what = tokio::time::timeout(std::time::Duration::from_secs(5), fatal.wait()).await;
        assert_eq!(what.ok().as_deref(), Some("internal error in test: boom"));
        let r = tasks.blocking(|| -> u8 { panic!("bang") }).await;
        assert!(matches!(r, Err(TaskError::Panicked { .. })));
        // The first report is the one kept.
        assert_eq!(fatal.get().as_deref(), Some("internal error in test: boom"));
        tasks.stopped().await;
    }
}
