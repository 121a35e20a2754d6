//! Adaptive request timeouts: a smoothed round-trip estimate over all DHT
//! requests, as TCP computes its retransmission timeout (RFC 6298), so a
//! dead node costs a few round trips, not seconds.

use std::time::Duration;

/// Smoothed round-trip time and its variation.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min: Duration,
    max: Duration,
}

impl RttEstimator {
    /// Before any sample the timeout is `max`; it never leaves
    /// `[min, max]`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            min,
            max,
        }
    }

    /// Adds one measured round trip.
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(s) => {
                let delta = s.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((s * 7 + rtt) / 8);
            }
        }
    }

    /// How long to wait for an answer before trying someone else.
    pub fn timeout(&self) -> Duration {
        match self.srtt {
            None => self.max,
            Some(s) => (s + self.rttvar * 4).clamp(self.min, self.max),
        }
    }
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self::new(Duration::from_millis(50), Duration::from_secs(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_to_a_few_round_trips() {
        let mut r = RttEstimator::default();
        assert_eq!(r.timeout(), Duration::from_secs(2));
        for i in 0..50 {
            r.sample(Duration::from_millis(45 + (i % 10)));
        }
        let t = r.timeout();
        assert!(
            t > Duration::from_millis(50) && t < Duration::from_millis(120),
            "{t:?}"
        );
    }

    #[test]
    fn stays_within_bounds() {
        let mut r = RttEstimator::new(Duration::from_millis(50), Duration::from_secs(2));
        r.sample(Duration::from_micros(10));
        for _ in 0..20 {
            r.sample(Duration::from_micros(10));
        }
        assert_eq!(r.timeout(), Duration::from_millis(50));
        r.sample(Duration::from_secs(60));
        assert_eq!(r.timeout(), Duration::from_secs(2));
    }
}
