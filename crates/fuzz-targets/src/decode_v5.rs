//! Arbitrary bytes read as an MQTT 5 connection must never panic the decoder, and whatever
//! it accepts must survive encode → decode unchanged, with `encoded_len` matching the
//! bytes written. The same packet written toward 3.1.1 must be readable there too.
//!
//! The input is read twice: its first packet as the broker reads a connection's first
//! packet (before CONNECT says the version, so any CONNECT level; `peek_connect_protocol`
//! must agree with a CONNECT that decodes), then the whole input as an MQTT 5 stream.
//! It is also read as a stored PUBLISH property list (`decode_publish_properties`), which
//! must survive `encode_publish_properties` → decode unchanged.

use bytes::{Bytes, BytesMut};
use mqtt::{DecodeError, EncodeError, Packet, Protocol};

const MAX_PACKET_SIZE: usize = 1 << 20;

fn valid(filter: &str) -> bool {
    mqtt::is_valid_topic_filter(filter)
}

fn check_error(error: &DecodeError) {
    // Both must render for any error.
    let _ = error.to_string();
    let _ = error.reason_code();
}

/// `packet` came from a connection speaking `protocol`: it must round-trip there.
fn check_round_trip(packet: &Packet, protocol: Protocol) {
    let mut encoded = BytesMut::new();
    mqtt::encode(packet, &mut encoded, protocol).expect("a decoded packet must encode");
    assert_eq!(encoded.len(), packet.encoded_len(protocol));
    if let Packet::Publish(p) = packet {
        let mut borrowed = BytesMut::new();
        mqtt::encode_publish(&p.borrowed(), &mut borrowed, protocol).unwrap();
        assert_eq!(borrowed, encoded);
        assert_eq!(
            borrowed.len(),
            mqtt::publish_encoded_len(&p.borrowed(), protocol)
        );
    }
    let again = mqtt::decode(&mut encoded, MAX_PACKET_SIZE, protocol)
        .expect("re-encoded packet must decode")
        .expect("re-encoded packet must be complete");
    assert_eq!(&again, packet);
    assert!(encoded.is_empty());
}

/// A packet from an MQTT 5 connection, written toward 3.1.1: MQTT 5 parts dropped, still
/// a packet of the same type. Except: AUTH has no 3.1.1 form; a PUBLISH whose topic is
/// only a Topic Alias must be resolved by the broker first; and MQTT 5 leaves filter
/// syntax to the receiver (0x8F per filter) where 3.1.1 refuses the whole packet.
fn check_toward_311(packet: &Packet) {
    let mut encoded = BytesMut::new();
    let result = mqtt::encode(packet, &mut encoded, Protocol::V311);
    if let Packet::Auth(_) = packet {
        assert_eq!(result, Err(EncodeError::AuthInMqtt311));
        assert!(encoded.is_empty());
        return;
    }
    result.expect("a decoded MQTT 5 packet must encode toward 3.1.1");
    assert_eq!(encoded.len(), packet.encoded_len(Protocol::V311));
    let decoded = mqtt::decode(&mut encoded, MAX_PACKET_SIZE, Protocol::V311);
    let first_bad_filter = match packet {
        Packet::Subscribe(s) => s.filters.iter().map(|f| &f.filter).find(|f| !valid(f)),
        Packet::Unsubscribe(u) => u.filters.iter().find(|f| !valid(f)),
        _ => None,
    };
    match (packet, first_bad_filter) {
        (Packet::Publish(p), _) if p.topic.is_empty() => {
            assert_eq!(decoded, Err(DecodeError::EmptyTopic));
        }
        (_, Some(filter)) => {
            assert_eq!(
                decoded,
                Err(DecodeError::InvalidTopicFilter(filter.clone()))
            );
        }
        _ => {
            let decoded = decoded
                .expect("toward 3.1.1 must decode as 3.1.1")
                .expect("complete");
            assert_eq!(decoded.name(), packet.name());
            assert!(encoded.is_empty());
        }
    }
}

pub fn run(data: &[u8]) {
    // The first packet as a connection's first packet.
    let peeked = mqtt::peek_connect_protocol(data);
    match mqtt::decode(&mut BytesMut::from(data), MAX_PACKET_SIZE, Protocol::V311) {
        Ok(Some(packet)) => {
            let protocol = match &packet {
                Packet::Connect(c) => {
                    assert_eq!(peeked, Some(c.protocol));
                    c.protocol
                }
                _ => {
                    assert_eq!(peeked, None);
                    Protocol::V311
                }
            };
            check_round_trip(&packet, protocol);
        }
        Ok(None) => {}
        Err(error) => check_error(&error),
    }

    // The whole input as a stored property list.
    if let Ok(properties) = mqtt::decode_publish_properties(Bytes::copy_from_slice(data)) {
        let mut encoded = BytesMut::new();
        mqtt::encode_publish_properties(&properties, &mut encoded);
        let again = mqtt::decode_publish_properties(encoded.freeze())
            .expect("encoded properties must decode");
        assert_eq!(again, properties);
    }

    // The whole input as an MQTT 5 stream (a CONNECT of any level still decodes by the
    // level it carries).
    let mut buf = BytesMut::from(data);
    loop {
        match mqtt::decode(&mut buf, MAX_PACKET_SIZE, Protocol::V5) {
            Ok(Some(packet)) => {
                check_round_trip(&packet, Protocol::V5);
                check_toward_311(&packet);
            }
            Ok(None) => break,
            Err(error) => {
                check_error(&error);
                break;
            }
        }
    }
}
