//! libFuzzer's inputs to `fuzz_targets::decode_v5::run`; what it checks is written there
//! (crates/fuzz-targets/src/decode_v5.rs). The stable smoke test runs the same function.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::decode_v5::run(data));
