//! libFuzzer's inputs to `fuzz_targets::custom_auth_username::run`; what it checks is written there
//! (crates/fuzz-targets/src/custom_auth_username.rs). The stable smoke test runs the same function.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::custom_auth_username::run(data));
