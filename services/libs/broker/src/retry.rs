//! Capped, jittered exponential back-off, for reconnects here and for retries in services.

use rand::Rng;
use std::time::Duration;

/// Settings of a [`Backoff`]. Defaults: 100 ms initial delay, doubling, capped at 10 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// Delay ceiling of the first attempt.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// Growth factor per attempt (≥ 1).
    pub multiplier: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
        }
    }
}

/// Capped exponential back-off with "equal jitter" (Brooker, "Exponential Backoff And
/// Jitter", AWS Architecture Blog, 2015): attempt n waits a uniformly random time in
/// `[c/2, c]` with `c = min(max, initial · multiplier^n)`, so retries from many clients spread
/// out while each still waits at least half the nominal delay.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A back-off at its first attempt.
    #[must_use]
    pub fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// The delay ceiling of the current attempt, without jitter.
    #[must_use]
    pub fn ceiling(&self) -> Duration {
        let factor = self
            .config
            .multiplier
            .max(1.0)
            .powi(self.attempt.min(64) as i32);
        let secs = self.config.initial.as_secs_f64() * factor;
        let max = self.config.max.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
    }

    /// The delay before the next try; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(0.0..=1.0_f64);
        half + half.mul_f64(jitter)
    }

    /// Sleeps for [`Backoff::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Number of delays handed out since the last reset.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Back to the first attempt (call after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(BackoffConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped_and_jittered() {
        let mut b = Backoff::default();
        let mut last_ceiling = Duration::ZERO;
        for _ in 0..20 {
            let ceiling = b.ceiling();
            assert!(ceiling >= last_ceiling);
            assert!(ceiling <= Duration::from_secs(10));
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
            last_ceiling = ceiling;
        }
        assert_eq!(last_ceiling, Duration::from_secs(10));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }
}
