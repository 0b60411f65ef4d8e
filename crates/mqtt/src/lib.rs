//! Strict MQTT 3.1.1 and MQTT 5 codec on `bytes`, without I/O.
//!
//! Written by hand rather than borrowed because the broker's hot path and its error
//! reporting depend on it: every rejection is a typed [`DecodeError`] saying what was wrong.

mod decode;
mod encode;
mod error;
mod packet;
mod properties;
mod topic;
mod wire;

pub use decode::{decode, peek_connect_protocol};
pub use encode::{encode, encode_publish, publish_encoded_len};
pub use error::{ConnectFlagsViolation, DecodeError, EncodeError};
pub use packet::*;
pub use properties::{decode_publish_properties, encode_publish_properties};
pub use topic::{is_valid_topic_filter, is_valid_topic_name};
