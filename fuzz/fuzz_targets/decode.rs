//! libFuzzer's inputs to `fuzz_targets::decode::run`; what it checks is written there
//! (crates/fuzz-targets/src/decode.rs). The stable smoke test runs the same function.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::decode::run(data));
