//! Constants of the wire format shared by the decoder and the encoder.

pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const UNSUBSCRIBE: u8 = 10;
pub(crate) const UNSUBACK: u8 = 11;
pub(crate) const PINGREQ: u8 = 12;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;
pub(crate) const AUTH: u8 = 15;

/// Largest value four remaining-length bytes can carry.
pub(crate) const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Longest string or binary field a two-byte length prefix can describe.
pub(crate) const MAX_FIELD_LEN: usize = u16::MAX as usize;

// Connect flags (3.1.2.3).
pub(crate) const CONNECT_RESERVED: u8 = 0x01;
pub(crate) const CONNECT_CLEAN_SESSION: u8 = 0x02;
pub(crate) const CONNECT_WILL: u8 = 0x04;
pub(crate) const CONNECT_WILL_QOS_SHIFT: u8 = 3;
pub(crate) const CONNECT_WILL_RETAIN: u8 = 0x20;
pub(crate) const CONNECT_PASSWORD: u8 = 0x40;
pub(crate) const CONNECT_USERNAME: u8 = 0x80;

// PUBLISH fixed header flags (3.3.1).
pub(crate) const PUBLISH_RETAIN: u8 = 0x01;
pub(crate) const PUBLISH_QOS_SHIFT: u8 = 1;
pub(crate) const PUBLISH_DUP: u8 = 0x08;

pub(crate) const SUBACK_FAILURE: u8 = 0x80;

/// Number of bytes the remaining-length field takes for `len`.
pub(crate) fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}
