//! Strict MQTT 3.1.1 codec on `bytes`, without I/O.
//!
//! Written by hand rather than borrowed because the broker's hot path and its error
//! reporting depend on it: every rejection is a typed [`DecodeError`] saying what was wrong.

mod packet;

pub use packet::*;
