//! libFuzzer's inputs to `fuzz_targets::shadow_update::run`; what it checks is written
//! there (crates/fuzz-targets/src/shadow_update.rs). The stable smoke test runs the same
//! function.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::shadow_update::run(data));
