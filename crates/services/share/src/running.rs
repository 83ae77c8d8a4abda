//! The downloads this node runs: each one's progress (kept while it runs, and after it is
//! paused) and its control (the stop token, and why the user stopped it). [`Running`]
//! owns both; the download tasks and the handle reach them through its methods only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kith_core::ContentId;
use kith_core::sync::{lock, recover};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Error, MAX_DOWNLOADS, Progress, State};

/// Why the user stopped a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Halt {
    Pause,
    Cancel,
}

/// A running download's stop token, why it was stopped, and which download it is.
#[derive(Clone)]
pub(crate) struct Control {
    pub stop: CancellationToken,
    generation: u64,
}

/// A download asked for: one of `id` already running, or a new one to start.
pub(crate) enum Start {
    Running(watch::Receiver<Progress>),
    New(watch::Sender<Progress>),
}

#[derive(Default)]
pub(crate) struct Running {
    /// Progress of each download running or paused (at most [`MAX_DOWNLOADS`]).
    progress: Mutex<HashMap<ContentId, watch::Receiver<Progress>>>,
    /// Each running download's control, and why it was halted (independent entries:
    /// taken back from a poisoned lock).
    controls: Mutex<HashMap<ContentId, (Control, Option<Halt>)>>,
    /// Numbers the downloads started, so a download that ends forgets only its own control.
    generation: AtomicU64,
    /// Woken when a halted download has stopped.
    stopped: tokio::sync::Notify,
}

impl Running {
    /// A download of `id` is asked for: the one running, or room for a new one (a paused
    /// one starts again).
    pub fn start(&self, id: ContentId) -> Result<Start, Error> {
        let mut map = lock(&self.progress)?;
        map.retain(|_, rx| !rx.borrow().finished() || rx.borrow().state == State::Paused);
        if map
            .get(&id)
            .is_some_and(|rx| rx.borrow().state == State::Paused)
        {
            map.remove(&id);
        }
        if let Some(rx) = map.get(&id) {
            return Ok(Start::Running(rx.clone()));
        }
        if map.len() >= MAX_DOWNLOADS {
            return Err(Error::TooManyDownloads);
        }
        let (tx, rx) = watch::channel(Progress::new(id));
        map.insert(id, rx);
        Ok(Start::New(tx))
    }

    /// Forgets the progress of `id` (a paused download cancelled).
    pub fn forget(&self, id: &ContentId) -> Result<(), Error> {
        lock(&self.progress)?.remove(id);
        Ok(())
    }

    /// The progress of every download running or paused.
    pub fn progress(&self) -> Result<Vec<Progress>, Error> {
        Ok(lock(&self.progress)?
            .values()
            .map(|rx| rx.borrow().clone())
            .filter(|p| !p.finished() || p.state == State::Paused)
            .collect())
    }

    /// Whether a download of `id` is running now.
    pub fn is_running(&self, id: &ContentId) -> bool {
        lock(&self.progress)
            .map(|d| d.get(id).is_some_and(|rx| !rx.borrow().finished()))
            .unwrap_or(false)
    }

    /// A new download's control: its stop token (a child of `shutdown`).
    pub fn control(&self, id: ContentId, shutdown: &CancellationToken) -> Control {
        let c = Control {
            stop: shutdown.child_token(),
            generation: self.generation.fetch_add(1, Ordering::Relaxed),
        };
        recover(&self.controls).insert(id, (c.clone(), None));
        c
    }

    /// Stops a running download for `why`; false when none runs.
    pub fn halt(&self, id: ContentId, why: Halt) -> bool {
        match recover(&self.controls).get_mut(&id) {
            Some((c, halt)) => {
                *halt = Some(why);
                c.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Why the download of `id` was halted, if it was.
    pub fn halt_of(&self, id: &ContentId) -> Option<Halt> {
        recover(&self.controls).get(id).and_then(|(_, h)| *h)
    }

    /// The download `control` belongs to is over: wakes whoever waits for it to stop.
    pub fn ended(&self, id: &ContentId, control: &Control) {
        let mut c = recover(&self.controls);
        if c.get(id)
            .is_some_and(|(c, _)| c.generation == control.generation)
        {
            c.remove(id);
        }
        drop(c);
        self.stopped.notify_waiters();
    }

    /// Waits (at most 10 s) until the download of `id` has stopped.
    pub async fn halted(&self, id: ContentId) {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let wait = self.stopped.notified();
            if !recover(&self.controls).contains_key(&id) {
                return;
            }
            if tokio::time::timeout_at(until, wait).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_halt_reaches_only_the_download_it_names_and_an_old_end_forgets_nothing() {
        let r = Running::default();
        let stop = CancellationToken::new();
        let id = ContentId::manifest(b"a");
        let first = r.control(id, &stop);
        let second = r.control(id, &stop);
        assert!(r.halt(id, Halt::Pause));
        assert!(second.stop.is_cancelled() && !first.stop.is_cancelled());
        // The first download ending late does not forget the second's control.
        r.ended(&id, &first);
        assert_eq!(r.halt_of(&id), Some(Halt::Pause));
        r.ended(&id, &second);
        assert_eq!(r.halt_of(&id), None);
        assert!(!r.halt(id, Halt::Cancel));
    }

    #[test]
    fn a_second_ask_joins_the_running_download() {
        let r = Running::default();
        let id = ContentId::manifest(b"a");
        let Ok(Start::New(_tx)) = r.start(id) else {
            panic!("not a new download")
        };
        assert!(matches!(r.start(id), Ok(Start::Running(_))));
        assert!(r.is_running(&id));
        assert_eq!(r.progress().map(|p| p.len()).ok(), Some(1));
    }
}
