//! Arbitrary bytes must never panic the decoder, and whatever it accepts must survive
//! encode → decode unchanged.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

const MAX_PACKET_SIZE: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = mqtt::decode(&mut buf, MAX_PACKET_SIZE) {
        let mut encoded = BytesMut::new();
        mqtt::encode(&packet, &mut encoded).expect("a decoded packet must encode");
        assert_eq!(encoded.len(), packet.encoded_len());
        let again = mqtt::decode(&mut encoded, MAX_PACKET_SIZE)
            .expect("re-encoded packet must decode")
            .expect("re-encoded packet must be complete");
        assert_eq!(again, packet);
        assert!(encoded.is_empty());
    }
});
