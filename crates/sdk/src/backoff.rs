//! The reconnect schedule, as a pure function of the attempt number.
//!
//! Mirrors the iOS SDK: the first retry waits `base` (1 s), each further failure doubles the
//! wait up to `max` (128 s), and a connection that stayed up for at least
//! `minimum_connection_time` (20 s) resets the schedule. A bounded jitter makes each wait
//! a little shorter at random so that many clients do not retry in lock step.

use std::time::Duration;

/// Reconnect schedule parameters. Start from the default (iOS's values) and change what
/// you need:
///
/// ```
/// use std::time::Duration;
/// use pubsub::{backoff::BackoffConfig, MqttConfiguration};
/// let backoff = BackoffConfig::default()
///     .base(Duration::from_millis(500))
///     .max(Duration::from_secs(30));
/// assert_eq!(backoff.delay(0), Duration::from_millis(500));
/// assert_eq!(backoff.delay(10), Duration::from_secs(30));
/// let mut mqtt = MqttConfiguration::default();
/// mqtt.backoff = backoff;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// Wait before the first retry (iOS `baseReconnectTimeInterval`, default 1 s).
    pub base: Duration,
    /// Longest wait (iOS `maximumReconnectTimeInterval`, default 128 s).
    pub max: Duration,
    /// A connection that lasts this long resets the schedule (iOS
    /// `minimumConnectionTimeInterval`, default 20 s).
    pub minimum_connection_time: Duration,
    /// Fraction of each wait that jitter may remove, in `[0, 1]` (default 0.2: a wait of
    /// `d` becomes a value in `(0.8·d, d]`).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_secs(1),
            max: Duration::from_secs(128),
            minimum_connection_time: Duration::from_secs(20),
            jitter: 0.2,
        }
    }
}

impl BackoffConfig {
    /// Sets [`BackoffConfig::base`].
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets [`BackoffConfig::max`].
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Sets [`BackoffConfig::minimum_connection_time`].
    pub fn minimum_connection_time(mut self, time: Duration) -> Self {
        self.minimum_connection_time = time;
        self
    }

    /// Sets [`BackoffConfig::jitter`] (clamped to `[0, 1]` when used).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The wait before retry number `attempt` (0 = the first retry after a failure),
    /// without jitter: `min(base · 2^attempt, max)`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u64.checked_shl(attempt.min(62)).unwrap_or(u64::MAX);
        let nanos = (self.base.as_nanos() as u64).saturating_mul(factor);
        Duration::from_nanos(nanos).min(self.max)
    }

    /// The wait before retry number `attempt` with jitter applied; `random` is a number in
    /// `[0, 1)` (the SDK draws it uniformly). The result lies in
    /// `((1 - jitter) · delay(attempt), delay(attempt)]` and never exceeds `max`.
    pub fn delay_with_jitter(&self, attempt: u32, random: f64) -> Duration {
        let d = self.delay(attempt);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let random = random.clamp(0.0, 1.0);
        d.mul_f64(1.0 - jitter * random)
    }
}

/// Tracks the retry number across connection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A schedule at its start.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    /// The retry number the next [`Backoff::next_delay`] will use.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The wait before the next retry (with jitter from `random` in `[0, 1)`), and advance.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let d = self.config.delay_with_jitter(self.attempt, random);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Report that a connection that had been established was lost after `lasted`:
    /// a connection that lasted at least `minimum_connection_time` resets the schedule.
    pub fn connection_lost(&mut self, lasted: Duration) {
        if lasted >= self.config.minimum_connection_time {
            self.attempt = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_to_128() {
        let c = BackoffConfig::default();
        let secs: Vec<u64> = (0..10).map(|a| c.delay(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 128, 128]);
        assert_eq!(c.delay(u32::MAX), Duration::from_secs(128));
    }

    #[test]
    fn jitter_is_bounded() {
        let c = BackoffConfig::default();
        for a in 0..12 {
            let d = c.delay(a);
            for i in 0..100 {
                let r = i as f64 / 100.0;
                let j = c.delay_with_jitter(a, r);
                assert!(j <= d && j <= c.max, "{j:?} > {d:?}");
                assert!(j >= d.mul_f64(0.8), "{j:?} < 0.8·{d:?}");
            }
        }
        let none = BackoffConfig { jitter: 0.0, ..c };
        assert_eq!(none.delay_with_jitter(3, 0.99), Duration::from_secs(8));
    }

    #[test]
    fn resets_after_twenty_seconds_connected() {
        let mut b = Backoff::new(BackoffConfig {
            jitter: 0.0,
            ..Default::default()
        });
        assert_eq!(b.next_delay(0.5), Duration::from_secs(1));
        assert_eq!(b.next_delay(0.5), Duration::from_secs(2));
        assert_eq!(b.next_delay(0.5), Duration::from_secs(4));
        b.connection_lost(Duration::from_secs(19));
        assert_eq!(b.next_delay(0.5), Duration::from_secs(8));
        b.connection_lost(Duration::from_secs(20));
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.next_delay(0.5), Duration::from_secs(1));
    }
}
