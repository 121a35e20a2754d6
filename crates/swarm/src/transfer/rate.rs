//! A node-wide upload rate limit: a token bucket kept as a "theoretical
//! arrival time" (GCRA), so it needs one instant and no refill task.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// How far ahead of the rate a sender may run (the bucket's depth).
const BURST: Duration = Duration::from_millis(50);

/// Limits the bytes per second passed through [`RateLimit::wait`].
#[derive(Debug)]
pub(crate) struct RateLimit {
    bytes_per_sec: u64,
    /// When the bytes granted so far will have drained at the rate.
    drained_at: Mutex<Instant>,
}

impl RateLimit {
    pub(crate) fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: bytes_per_sec.max(1),
            drained_at: Mutex::new(Instant::now()),
        }
    }

    /// Reserves `bytes` and returns how long to wait before sending them.
    fn reserve(&self, bytes: usize, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let mut drained = crate::lock(&self.drained_at);
        let start = (*drained).max(now);
        *drained = start + cost;
        drained.saturating_duration_since(now + BURST)
    }

    /// Waits until `bytes` may be sent.
    pub(crate) async fn wait(&self, bytes: usize) {
        let d = self.reserve(bytes, Instant::now());
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_rate_after_a_short_burst() {
        let r = RateLimit::new(1_000_000);
        let t0 = Instant::now();
        // 50 ms of burst pass at once.
        assert_eq!(r.reserve(50_000, t0), Duration::ZERO);
        // The next 100 kB wait 100 ms.
        let d = r.reserve(100_000, t0);
        assert!((d.as_secs_f64() - 0.1).abs() < 1e-3, "{d:?}");
        // Idle time does not bank more than the burst.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(r.reserve(50_000, later), Duration::ZERO);
        assert!(r.reserve(10_000, later) > Duration::ZERO);
    }
}
