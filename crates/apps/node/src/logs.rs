//! The node's recent log lines, for the web UI's logs page: a `tracing` layer that keeps
//! the last [`KEPT`] lines (each at most [`LINE_MAX`] bytes) and hands new ones to
//! whoever follows them. Installed by the `kith` binary beside its stderr output.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// Lines kept for a page that opens later.
pub const KEPT: usize = 1000;
/// Longest line kept (longer ones are cut).
pub const LINE_MAX: usize = 2048;

pub use kith_api::LogLine;

/// The kept lines and the followers.
pub struct LogBook {
    lines: Mutex<VecDeque<LogLine>>,
    tx: broadcast::Sender<LogLine>,
}

static BOOK: OnceLock<LogBook> = OnceLock::new();

/// The process's log book.
pub fn book() -> &'static LogBook {
    BOOK.get_or_init(|| LogBook {
        lines: Mutex::new(VecDeque::with_capacity(KEPT)),
        tx: broadcast::channel(256).0,
    })
}

impl LogBook {
    /// The kept lines, oldest first.
    pub fn recent(&self) -> Vec<LogLine> {
        kith_core::sync::recover(&self.lines)
            .iter()
            .cloned()
            .collect()
    }

    /// New lines from now on (a slow follower misses lines rather than holding any up).
    pub fn follow(&self) -> broadcast::Receiver<LogLine> {
        self.tx.subscribe()
    }

    fn push(&self, line: LogLine) {
        {
            let mut lines = kith_core::sync::recover(&self.lines);
            if lines.len() == KEPT {
                lines.pop_front();
            }
            lines.push_back(line.clone());
        }
        let _ = self.tx.send(line);
    }
}

/// The `tracing` layer that writes into [`book`].
pub fn layer() -> LogLayer {
    LogLayer
}

pub struct LogLayer;

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.0.len() >= LINE_MAX {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?} ");
        } else {
            let _ = write!(self.0, "{}={value:?} ", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.0.len() >= LINE_MAX {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value} ");
        } else {
            let _ = write!(self.0, "{}={value} ", field.name());
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        let meta = event.metadata();
        book().push(LogLine {
            time: kith_core::store::now_ms(),
            level: meta.level().to_string(),
            target: meta.target().to_owned(),
            text: cut(text.0.trim_end().to_owned(), LINE_MAX),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_the_last_lines_and_cuts_long_ones() {
        let sub = tracing_subscriber::registry().with(layer());
        let mut follow = book().follow();
        let sub = std::sync::Arc::new(sub);
        tracing::subscriber::with_default(sub.clone(), || {
            tracing::warn!(peer = "p1", "cannot reach bootstrap peer");
            tracing::info!("{}", "é".repeat(LINE_MAX));
        });
        let first = follow.try_recv().ok();
        assert_eq!(first.as_ref().map(|l| l.level.as_str()), Some("WARN"));
        assert_eq!(
            first.map(|l| l.text),
            Some("cannot reach bootstrap peer peer=p1".to_owned())
        );
        let long = follow.try_recv().ok().map(|l| l.text.len()).unwrap_or(0);
        assert!(long <= LINE_MAX && long > LINE_MAX - 4, "{long}");
        tracing::subscriber::with_default(sub, || {
            for i in 0..KEPT {
                tracing::debug!(i, "filler");
            }
        });
        let recent = book().recent();
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent.last().map(|l| l.text.as_str()), Some("filler i=999"));
    }
}
