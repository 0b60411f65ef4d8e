//! libFuzzer's inputs to `fuzz_targets::policy::run`; what it checks is written there
//! (crates/fuzz-targets/src/policy.rs). The stable smoke test runs the same function.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::policy::run(data));
