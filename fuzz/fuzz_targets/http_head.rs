//! libFuzzer's inputs to `fuzz_targets::http_head::run`; what it checks is written there
//! (crates/fuzz-targets/src/http_head.rs). The stable smoke test runs the same function.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::http_head::run(data));
