//! The latest policy refusals, kept for the console's "why denied" view (`GET
//! /pubsub/refusals`): who was refused what, and which policy statement decided it, as the
//! broker's log lines say. A bounded ring: the oldest entry goes when a new one comes.
//!
//! A utility: any layer may use it; it uses none of them.

use std::collections::VecDeque;

use parking_lot::Mutex;

/// How many refusals are kept.
pub const KEPT: usize = 200;

/// One refusal of an action by the policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// The MQTT client id; `None` for an HTTP request.
    pub client_id: Option<String>,
    pub principal: String,
    /// `iot:Publish`, …
    pub action: &'static str,
    /// The resource ARN.
    pub resource: String,
    /// The policy whose statement decided (an explicit deny), if one did.
    pub policy: Option<String>,
    pub statement: Option<usize>,
    pub sid: Option<String>,
    /// The decision's reason, as logged.
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct RecentRefusals {
    ring: Mutex<VecDeque<Refusal>>,
}

impl RecentRefusals {
    pub fn record(&self, refusal: Refusal) {
        let mut ring = self.ring.lock();
        if ring.len() == KEPT {
            ring.pop_front();
        }
        ring.push_back(refusal);
    }

    /// Newest first.
    pub fn latest(&self) -> Vec<Refusal> {
        self.ring.lock().iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(n: u64) -> Refusal {
        Refusal {
            time_ms: n,
            client_id: Some(format!("c{n}")),
            principal: "anonymous".into(),
            action: "iot:Publish",
            resource: format!("arn:aws:iot:us-east-1:123456789012:topic/t/{n}"),
            policy: None,
            statement: None,
            sid: None,
            reason: "no statement allows it".into(),
        }
    }

    #[test]
    fn keeps_the_latest_newest_first_and_forgets_the_oldest() {
        let recent = RecentRefusals::default();
        for n in 0..(KEPT as u64 + 5) {
            recent.record(refusal(n));
        }
        let latest = recent.latest();
        assert_eq!(latest.len(), KEPT);
        assert_eq!(latest[0].time_ms, KEPT as u64 + 4);
        assert_eq!(latest[KEPT - 1].time_ms, 5);
    }
}
