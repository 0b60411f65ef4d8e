//! IoT Core's per-connection rates (`[limits] publishes_per_connection_per_sec` and
//! `bytes_per_connection_per_sec`, or `iot_core_rate_limits`): token buckets and what a
//! connection does with them. No clock of its own: every call is told the time, so the
//! rules are tested here directly.
//!
//! What IoT Core documents (docs/IOT-FACTS.md, "publishes per connection") and this does:
//! - PUBLISH requests, inbound and outbound, share one budget per connection. An inbound
//!   PUBLISH over it is discarded (not routed, no PUBACK). An outbound one waits in the
//!   session's queue until the budget allows it: IoT Core discards it, but a resumed
//!   session's backlog would then be lost, where IoT Core paces it (10 messages/s); the
//!   queue's own bounds still apply.
//! - Throughput, inbound and outbound, counts the bytes of PUBLISH packets. Over it,
//!   traffic is delayed, not dropped: the connection stops taking packets from the client
//!   (TCP pushes back on the sender) and stops sending it messages until the budget
//!   recovers.

use std::time::{Duration, Instant};

use iot::Limits;

use crate::token_bucket::TokenBucket;

/// What the rate limits did to a connection since it was last reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RateReport {
    /// Inbound PUBLISHes discarded by the publish rate.
    pub(crate) dropped: u64,
    /// Times delivery to the client stopped for the publish rate.
    pub(crate) outbound_waits: u64,
    /// Times reading from or writing to the client stopped for the byte rate.
    pub(crate) byte_waits: u64,
}

impl RateReport {
    fn is_empty(&self) -> bool {
        *self == RateReport::default()
    }
}

/// Work that stopped for want of credit and is retried once the credit is back.
#[derive(Debug, Clone, Copy, Default)]
struct Waiting {
    inbound_bytes: bool,
    outbound_bytes: bool,
    outbound_publishes: bool,
}

/// One connection's rate state; exists only while a rate limit is on, so a connection
/// without one carries a null pointer.
#[derive(Debug)]
pub(crate) struct ConnectionRates {
    publishes: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    waiting: Waiting,
    unlogged: RateReport,
    logged_at: Option<Instant>,
}

/// What the connection's I/O shell must do about the rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Throttling {
    /// Over the byte rate: do not read from the socket.
    pub(crate) read_paused: bool,
    /// When to look again (retry what waits, log what is due); `None`: nothing waits.
    pub(crate) wake_at: Option<Instant>,
}

/// The longest a connection's rate report waits to be logged: at most one line per
/// connection per second, however hard it is throttled.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(1);

impl ConnectionRates {
    /// `None` when neither rate is limited.
    pub(crate) fn new(limits: &Limits, now: Instant) -> Option<Box<ConnectionRates>> {
        let bucket = |per_sec: u64| (per_sec > 0).then(|| TokenBucket::new(per_sec, now));
        let publishes = bucket(u64::from(limits.publishes_per_sec()));
        let bytes = bucket(limits.bytes_per_sec());
        if publishes.is_none() && bytes.is_none() {
            return None;
        }
        Some(Box::new(ConnectionRates {
            publishes,
            bytes,
            waiting: Waiting::default(),
            unlogged: RateReport::default(),
            logged_at: None,
        }))
    }

    /// An inbound PUBLISH: `true` if the publish rate lets it be routed; `false` counts it
    /// as discarded.
    pub(crate) fn admit_inbound(&mut self, now: Instant) -> bool {
        let Some(publishes) = &mut self.publishes else {
            return true;
        };
        if publishes.try_take(1, now) {
            return true;
        }
        self.unlogged.dropped += 1;
        false
    }

    /// Before decoding the next inbound packet: `false` while over the byte rate (the
    /// packet stays buffered until [`Throttling::wake_at`]).
    pub(crate) fn may_receive(&mut self, now: Instant) -> bool {
        let blocked = self.bytes.as_ref().is_some_and(|b| !b.holds(1, now));
        self.wait_for_bytes(blocked, |waiting| &mut waiting.inbound_bytes);
        !blocked
    }

    /// An inbound PUBLISH of `bytes` (its whole packet) was taken.
    pub(crate) fn received(&mut self, bytes: usize, now: Instant) {
        if let Some(bucket) = &mut self.bytes {
            bucket.take(bytes as u64, now);
        }
    }

    /// Before taking the next message for the client: `false` while over either rate
    /// (the message stays queued until [`Throttling::wake_at`]).
    pub(crate) fn may_send(&mut self, now: Instant) -> bool {
        let no_publish = self.publishes.as_ref().is_some_and(|b| !b.holds(1, now));
        let no_bytes = self.bytes.as_ref().is_some_and(|b| !b.holds(1, now));
        if no_publish && !self.waiting.outbound_publishes {
            self.unlogged.outbound_waits += 1;
        }
        self.waiting.outbound_publishes = no_publish;
        self.wait_for_bytes(no_bytes, |waiting| &mut waiting.outbound_bytes);
        !(no_publish || no_bytes)
    }

    /// An outbound PUBLISH of `bytes` was written for the client.
    pub(crate) fn sent(&mut self, bytes: usize, now: Instant) {
        if let Some(publishes) = &mut self.publishes {
            publishes.take(1, now);
        }
        if let Some(bucket) = &mut self.bytes {
            bucket.take(bytes as u64, now);
        }
    }

    /// What the shell must do now: pause reading while over the byte rate, and wake when
    /// waiting work may go on or a report is due.
    ///
    /// Work whose credit is back by now is no longer counted as waiting: the pass the
    /// wake-up causes retries it (and marks it again if it is still short), so a wait
    /// whose work went away (the queue emptied) costs one pass, not a busy loop.
    pub(crate) fn throttling(&mut self, now: Instant) -> Throttling {
        let bytes_at = self.bytes.as_ref().map(|b| b.holds_at(1, now));
        let publish_at = self.publishes.as_ref().map(|b| b.holds_at(1, now));
        let read_paused = bytes_at.is_some_and(|at| at > now);
        let mut wake_at = None;
        if read_paused {
            earliest(&mut wake_at, bytes_at);
        }
        let waiting = &mut self.waiting;
        for (flag, at) in [
            (&mut waiting.inbound_bytes, bytes_at),
            (&mut waiting.outbound_bytes, bytes_at),
            (&mut waiting.outbound_publishes, publish_at),
        ] {
            if *flag {
                earliest(&mut wake_at, at);
                *flag = at.is_some_and(|at| at > now);
            }
        }
        if !self.unlogged.is_empty() {
            let at = self.logged_at.map_or(now, |at| at + REPORT_INTERVAL);
            earliest(&mut wake_at, Some(at));
        }
        Throttling {
            read_paused,
            wake_at,
        }
    }

    /// What happened since the last report, once at least [`REPORT_INTERVAL`] has passed
    /// since it (the first report comes at once); `flush` takes it regardless (the
    /// connection is ending).
    pub(crate) fn take_report(&mut self, now: Instant, flush: bool) -> Option<RateReport> {
        if self.unlogged.is_empty() {
            return None;
        }
        let due = self.logged_at.is_none_or(|at| now >= at + REPORT_INTERVAL);
        if !due && !flush {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// Records whether reading or sending waits for bytes. A wait is counted once, not
    /// again on each retry that finds the credit still short, nor for the other direction
    /// stopping on the same debt.
    fn wait_for_bytes(&mut self, blocked: bool, direction: fn(&mut Waiting) -> &mut bool) {
        let was_waiting = self.waiting.inbound_bytes || self.waiting.outbound_bytes;
        if blocked && !was_waiting {
            self.unlogged.byte_waits += 1;
        }
        *direction(&mut self.waiting) = blocked;
    }

    /// The publish rate in force (0 = none), for log lines.
    pub(crate) fn publishes_per_sec(&self) -> u64 {
        self.publishes.as_ref().map_or(0, |b| b.per_sec())
    }

    /// The byte rate in force (0 = none), for log lines.
    pub(crate) fn bytes_per_sec(&self) -> u64 {
        self.bytes.as_ref().map_or(0, |b| b.per_sec())
    }
}

fn earliest(wake_at: &mut Option<Instant>, at: Option<Instant>) {
    if let Some(at) = at {
        *wake_at = Some(wake_at.map_or(at, |earlier: Instant| earlier.min(at)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limits(publishes: u32, bytes: u64) -> Limits {
        Limits {
            publishes_per_connection_per_sec: publishes,
            bytes_per_connection_per_sec: bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn no_state_when_both_rates_are_off() {
        let now = Instant::now();
        assert!(ConnectionRates::new(&Limits::default(), now).is_none());
        let preset = Limits {
            iot_core_rate_limits: true,
            ..Limits::default()
        };
        let rates = ConnectionRates::new(&preset, now).unwrap();
        assert_eq!(
            (rates.publishes_per_sec(), rates.bytes_per_sec()),
            (100, 524_288)
        );
    }

    #[test]
    fn inbound_excess_is_dropped_and_counted() {
        let t0 = Instant::now();
        let mut rates = ConnectionRates::new(&limits(10, 0), t0).unwrap();
        let admitted = (0..50).filter(|_| rates.admit_inbound(t0)).count();
        assert_eq!(admitted, 10);
        // The first report is due at once.
        assert_eq!(rates.throttling(t0).wake_at, Some(t0));
        assert_eq!(rates.take_report(t0, false).unwrap().dropped, 40);
        // Dropping needs no wake-up of its own, nor pauses reading.
        let quiet = Throttling {
            read_paused: false,
            wake_at: None,
        };
        assert_eq!(rates.throttling(t0), quiet);
        // The next second works again.
        assert!(rates.admit_inbound(t0 + ms(1000)));
    }

    #[test]
    fn inbound_and_outbound_share_the_publish_budget() {
        let t0 = Instant::now();
        let mut rates = ConnectionRates::new(&limits(4, 0), t0).unwrap();
        for _ in 0..2 {
            assert!(rates.may_send(t0));
            rates.sent(100, t0);
        }
        assert!(rates.admit_inbound(t0));
        assert!(rates.admit_inbound(t0));
        assert!(!rates.admit_inbound(t0));
        assert!(!rates.may_send(t0));
        // Outbound waits for one publish's worth: 250 ms at 4/s.
        assert_eq!(rates.throttling(t0).wake_at, Some(t0));
        let _ = rates.take_report(t0, false);
        assert_eq!(rates.throttling(t0).wake_at, Some(t0 + ms(250)));
        assert!(rates.may_send(t0 + ms(250)));
        assert_eq!(rates.throttling(t0 + ms(250)).wake_at, None);
    }

    #[test]
    fn byte_rate_pauses_reading_and_sending_until_the_debt_is_paid() {
        let t0 = Instant::now();
        let mut rates = ConnectionRates::new(&limits(0, 1000), t0).unwrap();
        assert!(rates.may_receive(t0));
        rates.received(1500, t0); // 500 over
        assert!(!rates.may_receive(t0));
        assert!(!rates.may_send(t0));
        let throttling = rates.throttling(t0);
        assert!(throttling.read_paused);
        // The first report is due at once; the debt is paid 501 ms on.
        assert_eq!(throttling.wake_at, Some(t0));
        let report = rates.take_report(t0, false).unwrap();
        assert_eq!(
            report.byte_waits, 1,
            "one wait, counted once for in and out"
        );
        assert_eq!(rates.throttling(t0).wake_at, Some(t0 + ms(501)));
        // Retrying while still short counts no new wait.
        assert!(!rates.may_receive(t0 + ms(300)));
        let later = t0 + ms(501);
        assert!(!rates.throttling(later).read_paused);
        assert!(rates.may_receive(later));
        assert!(rates.may_send(later));
        assert_eq!(rates.throttling(later).wake_at, None);
        assert_eq!(rates.take_report(later, false), None);
    }

    #[test]
    fn waiting_that_is_over_needs_no_wake_up() {
        let t0 = Instant::now();
        let mut rates = ConnectionRates::new(&limits(1, 0), t0).unwrap();
        assert!(rates.may_send(t0));
        rates.sent(10, t0);
        assert!(!rates.may_send(t0));
        let _ = rates.take_report(t0, true);
        assert_eq!(rates.throttling(t0).wake_at, Some(t0 + ms(1000)));
        // At the wake-up the queue has emptied, so no retry marks the wait again: one
        // pass, then nothing (not a wake-up loop).
        let t1 = t0 + ms(1000);
        assert_eq!(rates.throttling(t1).wake_at, Some(t1));
        assert_eq!(rates.throttling(t1).wake_at, None);
        // A retry that finds the credit there clears it just the same.
        rates.sent(10, t1);
        assert!(!rates.may_send(t1));
        assert!(rates.may_send(t1 + ms(1000)));
        assert_eq!(
            rates
                .take_report(t1 + ms(1000), false)
                .unwrap()
                .outbound_waits,
            1
        );
        assert_eq!(rates.throttling(t1 + ms(1000)).wake_at, None);
    }

    #[test]
    fn reports_come_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut rates = ConnectionRates::new(&limits(1, 0), t0).unwrap();
        assert!(rates.admit_inbound(t0));
        assert!(!rates.admit_inbound(t0));
        assert_eq!(rates.take_report(t0, false).unwrap().dropped, 1);
        for _ in 0..5 {
            assert!(!rates.admit_inbound(t0 + ms(10)));
        }
        assert_eq!(rates.take_report(t0 + ms(999), false), None);
        assert_eq!(rates.throttling(t0 + ms(10)).wake_at, Some(t0 + ms(1000)));
        assert_eq!(rates.take_report(t0 + ms(1000), false).unwrap().dropped, 5);
        assert_eq!(rates.take_report(t0 + ms(5000), false), None);
        // A closing connection reports what is left at once.
        assert!(rates.admit_inbound(t0 + ms(1001)));
        assert!(!rates.admit_inbound(t0 + ms(1001)));
        assert_eq!(rates.take_report(t0 + ms(1001), true).unwrap().dropped, 1);
    }
}
