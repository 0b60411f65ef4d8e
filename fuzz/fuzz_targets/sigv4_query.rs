//! libFuzzer's inputs to `fuzz_targets::sigv4_query::run`; what it checks is written there
//! (crates/fuzz-targets/src/sigv4_query.rs). The stable smoke test runs the same function.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::sigv4_query::run(data));
