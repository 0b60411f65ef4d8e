//! The memory budget: the message bytes held in RAM for queued delivery, summed over all
//! sessions (`[limits] memory_budget`, less what the store's page cache may take).
//!
//! Sessions report what they hold after every change; the router, which sees every
//! session, brings the total back under the limit when a delivery pushed it over (by
//! evicting messages the store also has, and otherwise by dropping the oldest QoS 1
//! messages of the largest queues).

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes queued messages may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes they hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// By how much the total is over the limit (0 within it).
    pub fn excess(&self) -> usize {
        self.used().saturating_sub(self.limit)
    }

    /// A session now holds `now` bytes where it held `before`.
    pub(crate) fn changed(&self, before: usize, now: usize) {
        if now > before {
            self.used.fetch_add(now - before, Ordering::Relaxed);
        } else if before > now {
            self.used.fetch_sub(before - now, Ordering::Relaxed);
        }
    }
}
