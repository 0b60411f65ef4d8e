//! The fuzz targets' bodies. Each module's `run` takes one input and panics on a bug (a
//! panic in the code under test or a failed invariant). `fuzz/fuzz_targets/<name>.rs` is
//! one line handing libFuzzer's input to `<name>::run`; `tests/smoke.rs` runs the same
//! functions on the stable toolchain over the committed seeds (`fuzz/seeds/<name>`) and
//! some thousands of mutations of them, so the test command exercises every target.

pub mod authorizer_response;
pub mod custom_auth_username;
pub mod decode;
pub mod decode_v5;
pub mod http_head;
pub mod policy;
pub mod shadow_update;
pub mod sigv4_header;
pub mod sigv4_query;

/// One input in; a panic is a bug.
pub type Run = fn(&[u8]);

/// Every target by the name of its fuzz binary and seed folder.
pub const TARGETS: &[(&str, Run)] = &[
    ("authorizer_response", authorizer_response::run),
    ("custom_auth_username", custom_auth_username::run),
    ("decode", decode::run),
    ("decode_v5", decode_v5::run),
    ("http_head", http_head::run),
    ("policy", policy::run),
    ("shadow_update", shadow_update::run),
    ("sigv4_header", sigv4_header::run),
    ("sigv4_query", sigv4_query::run),
];
