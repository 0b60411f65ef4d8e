//! Wall-clock conversions the broker needs in more than one place.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as lifecycle events carry them.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// Unix milliseconds of a future (or past) `Instant`, for storing expiry times.
pub fn instant_to_unix_ms(at: Instant) -> u64 {
    let now = Instant::now();
    let now_ms = unix_millis();
    if at >= now {
        now_ms + (at - now).as_millis() as u64
    } else {
        now_ms.saturating_sub((now - at).as_millis() as u64)
    }
}
