//! A token bucket told the time: the per-connection rates (`connection::rate`) and the
//! Device Shadow service's per-thing request rate (`shadow`) both count with it.

use std::time::{Duration, Instant};

/// Credit is kept in units × 10⁹ so that refilling by elapsed nanoseconds × rate is exact.
const SCALE: i128 = 1_000_000_000;

/// A token bucket refilled continuously at `per_sec`, holding at most one second's worth
/// (a connection that was quiet may burst to the full rate, not beyond). Credit may go
/// negative: bytes already received cannot be given back, so a packet larger than what is
/// left still passes and the connection pays for it by waiting.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_sec: u64,
    credit: i128,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(per_sec: u64, now: Instant) -> TokenBucket {
        TokenBucket {
            per_sec,
            credit: Self::scaled(per_sec),
            at: now,
        }
    }

    /// The rate it refills at.
    pub(crate) fn per_sec(&self) -> u64 {
        self.per_sec
    }

    fn scaled(amount: u64) -> i128 {
        i128::from(amount) * SCALE
    }

    /// The credit at `now` (a time before the last one counts as the last one).
    fn credit_at(&self, now: Instant) -> i128 {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        let gained = i128::try_from(elapsed)
            .unwrap_or(i128::MAX)
            .saturating_mul(i128::from(self.per_sec));
        self.credit
            .saturating_add(gained)
            .min(Self::scaled(self.per_sec))
    }

    fn refill(&mut self, now: Instant) {
        self.credit = self.credit_at(now);
        self.at = self.at.max(now);
    }

    /// Whether `amount` is available at `now`.
    pub(crate) fn holds(&self, amount: u64, now: Instant) -> bool {
        self.credit_at(now) >= Self::scaled(amount)
    }

    /// Takes `amount` if all of it is available; takes nothing otherwise.
    pub(crate) fn try_take(&mut self, amount: u64, now: Instant) -> bool {
        self.refill(now);
        let cost = Self::scaled(amount);
        if self.credit < cost {
            return false;
        }
        self.credit -= cost;
        true
    }

    /// Takes `amount` whatever is left, into debt if need be.
    pub(crate) fn take(&mut self, amount: u64, now: Instant) {
        self.refill(now);
        self.credit = self.credit.saturating_sub(Self::scaled(amount));
    }

    /// When `amount` will be available: `now` if it is.
    pub(crate) fn holds_at(&self, amount: u64, now: Instant) -> Instant {
        let missing = Self::scaled(amount) - self.credit_at(now);
        if missing <= 0 || self.per_sec == 0 {
            return now;
        }
        let per_sec = i128::from(self.per_sec);
        let nanos = (missing + per_sec - 1) / per_sec;
        now + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_bucket_gives_one_second_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        let taken = (0..50).filter(|_| bucket.try_take(1, t0)).count();
        assert_eq!(taken, 10);
        // 10 per second = one every 100 ms; credit is not lost to rounding.
        assert!(!bucket.try_take(1, t0 + ms(99)));
        assert!(bucket.try_take(1, t0 + ms(100)));
        assert!(!bucket.try_take(1, t0 + ms(150)));
        assert!(bucket.try_take(1, t0 + ms(200)));
        // A long pause fills it to one second's worth, no more.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..50).filter(|_| bucket.try_take(1, later)).count(), 10);
    }

    #[test]
    fn try_take_takes_nothing_when_short() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100, t0);
        assert!(bucket.try_take(60, t0));
        assert!(!bucket.try_take(60, t0));
        assert!(bucket.try_take(40, t0));
        assert!(!bucket.holds(1, t0));
    }

    #[test]
    fn debt_is_paid_by_waiting() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1000, t0);
        bucket.take(3000, t0); // 2000 bytes over: 2 s to get back to 0, 1 ms more for 1 byte
        assert!(!bucket.holds(1, t0 + ms(2000)));
        assert_eq!(bucket.holds_at(1, t0), t0 + ms(2001));
        assert!(bucket.holds(1, t0 + ms(2001)));
        assert_eq!(bucket.holds_at(1, t0 + ms(2500)), t0 + ms(2500));
    }

    #[test]
    fn time_going_backwards_gains_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(10, t0);
        for _ in 0..10 {
            assert!(bucket.try_take(1, t0));
        }
        assert!(!bucket.try_take(1, t0 - Duration::from_secs(5)));
        assert!(!bucket.try_take(1, t0 + ms(50)));
        assert!(bucket.try_take(1, t0 + ms(100)));
    }

    #[test]
    fn huge_rates_and_pauses_do_not_overflow() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(u64::MAX, t0);
        assert!(bucket.try_take(u64::MAX, t0));
        bucket.take(u64::MAX, t0);
        let far = t0 + Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(bucket.holds(u64::MAX, far));
        assert!(bucket.holds_at(1, t0) > t0);
    }
}
