//! Token-bucket rate limiting for `--upload-limit` and `--download-limit`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Bytes are let through in slices of at most this size, so a limit applies smoothly.
pub const SLICE: usize = 64 * 1024;

#[derive(Debug)]
pub struct RateLimit {
    /// Bytes per second; 0 means unlimited. Changed at runtime by [`RateLimit::set`].
    rate: AtomicU64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn new(rate: u64) -> Self {
        Self {
            rate: AtomicU64::new(rate),
            state: Mutex::new((0.0, Instant::now())),
        }
    }

    pub fn is_limited(&self) -> bool {
        self.rate() > 0
    }

    /// Bytes per second now (0: unlimited).
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// A new limit, applied from the next slice on.
    pub fn set(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
    }

    /// Waits until `n` bytes may pass.
    pub async fn acquire(&self, n: usize) {
        let rate = self.rate();
        if rate == 0 {
            return;
        }
        let wait = {
            let mut st = kith_core::sync::recover(&self.state);
            let now = Instant::now();
            let rate = rate as f64;
            // Burst of at most a quarter second of traffic (or one slice).
            let cap = (rate / 4.0).max(SLICE as f64);
            let (tokens, last) = *st;
            let mut tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(cap);
            tokens -= n as f64;
            *st = (tokens, now);
            if tokens < 0.0 {
                Duration::from_secs_f64(-tokens / rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limits_rate() {
        let l = RateLimit::new(1_000_000);
        let start = tokio::time::Instant::now();
        for _ in 0..40 {
            l.acquire(SLICE).await;
        }
        let secs = start.elapsed().as_secs_f64();
        // 2.6 MB at 1 MB/s, less the initial burst allowance.
        assert!(secs > 2.0 && secs < 3.0, "{secs}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_limit_applies_at_once() {
        let l = RateLimit::new(0);
        let start = tokio::time::Instant::now();
        l.acquire(SLICE * 100).await;
        assert!(start.elapsed().is_zero());
        l.set(SLICE as u64);
        assert_eq!(l.rate(), SLICE as u64);
        for _ in 0..4 {
            l.acquire(SLICE).await;
        }
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        l.set(0);
        let before = tokio::time::Instant::now();
        l.acquire(SLICE * 100).await;
        assert!(before.elapsed().is_zero());
    }

    #[tokio::test]
    async fn unlimited_does_not_wait() {
        let l = RateLimit::new(0);
        l.acquire(usize::MAX).await;
        assert!(!l.is_limited());
    }
}
