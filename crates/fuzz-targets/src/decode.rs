//! Arbitrary bytes read as an MQTT 3.1.1 connection must never panic the decoder, and
//! whatever it accepts must survive encode → decode unchanged (`decode_v5` does MQTT 5).

use bytes::BytesMut;
use mqtt::Protocol;

const MAX_PACKET_SIZE: usize = 1 << 20;

pub fn run(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = mqtt::decode(&mut buf, MAX_PACKET_SIZE, Protocol::V311) {
        let mut encoded = BytesMut::new();
        mqtt::encode(&packet, &mut encoded, Protocol::V311).expect("a decoded packet must encode");
        assert_eq!(encoded.len(), packet.encoded_len(Protocol::V311));
        let again = mqtt::decode(&mut encoded, MAX_PACKET_SIZE, Protocol::V311)
            .expect("re-encoded packet must decode")
            .expect("re-encoded packet must be complete");
        assert_eq!(again, packet);
        assert!(encoded.is_empty());
    }
}
