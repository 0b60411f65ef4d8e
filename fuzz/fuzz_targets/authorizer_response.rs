//! libFuzzer's inputs to `fuzz_targets::authorizer_response::run`; what it checks is written there
//! (crates/fuzz-targets/src/authorizer_response.rs). The stable smoke test runs the same function.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::authorizer_response::run(data));
