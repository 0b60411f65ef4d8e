//! A short run of every fuzz target on the stable toolchain, in the test command: each
//! target's `run` (the very function its libFuzzer binary calls) over its committed seeds
//! (`fuzz/seeds/<target>`) and then over mutations of them. The mutations come from a
//! fixed seed, so a failure reproduces; the failing input is printed. Depth comes from the
//! libFuzzer runs recorded in the README; this catches a target broken by a change.

use std::fs;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use fuzz_targets::TARGETS;

const MUTATIONS_PER_TARGET: usize = 4_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = repo().join("fuzz/seeds").join(target);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths.iter().map(|path| fs::read(path).unwrap()).collect()
}

/// libFuzzer's cheapest moves: flip, overwrite, insert, delete, duplicate, splice.
fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds[rng.usize(..seeds.len())].clone();
    for _ in 0..rng.usize(1..=4) {
        let len = input.len();
        match rng.u8(..6) {
            0 if len > 0 => input[rng.usize(..len)] ^= 1 << rng.u8(..8),
            1 if len > 0 => {
                // Mostly printable, since half the targets read text.
                let byte = match rng.u8(..4) {
                    0 => *[0, 0x7f, 0x80, 0xff].get(rng.usize(..4)).unwrap(),
                    _ => rng.u8(0x20..0x7f),
                };
                input[rng.usize(..len)] = byte;
            }
            2 => {
                let at = rng.usize(..=len);
                let bytes: Vec<u8> = (0..rng.usize(1..=8)).map(|_| rng.u8(..)).collect();
                input.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let start = rng.usize(..len);
                let end = rng.usize(start..=len.min(start + 16));
                input.drain(start..end);
            }
            4 if len > 0 => {
                let start = rng.usize(..len);
                let end = rng.usize(start..=len);
                let copy = input[start..end].to_vec();
                let at = rng.usize(..=len);
                input.splice(at..at, copy);
            }
            _ => {
                let other = &seeds[rng.usize(..seeds.len())];
                let from = rng.usize(..=other.len());
                input.truncate(rng.usize(..=len));
                input.extend_from_slice(&other[from..]);
            }
        }
    }
    input
}

fn run_one(target: &str, run: fn(&[u8]), input: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(input))) {
        eprintln!(
            "fuzz target {target} failed on {} bytes: {:?}",
            input.len(),
            String::from_utf8_lossy(input)
        );
        eprintln!("as hex: {}", hex(input));
        resume_unwind(panic);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn smoke(target: &str) {
    let run = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target}"))
        .1;
    let seeds = seeds(target);
    assert!(!seeds.is_empty(), "fuzz/seeds/{target} has no seeds");
    for seed in &seeds {
        run_one(target, run, seed);
    }
    run_one(target, run, b"");
    let mut rng = fastrand::Rng::with_seed(0x5eed_f022);
    for _ in 0..MUTATIONS_PER_TARGET {
        run_one(target, run, &mutate(&mut rng, &seeds));
    }
}

#[test]
fn authorizer_response() {
    smoke("authorizer_response");
}

#[test]
fn custom_auth_username() {
    smoke("custom_auth_username");
}

#[test]
fn decode() {
    smoke("decode");
}

#[test]
fn decode_v5() {
    smoke("decode_v5");
}

#[test]
fn http_head() {
    smoke("http_head");
}

#[test]
fn policy() {
    smoke("policy");
}

#[test]
fn shadow_update() {
    smoke("shadow_update");
}

#[test]
fn sigv4_header() {
    smoke("sigv4_header");
}

#[test]
fn sigv4_query() {
    smoke("sigv4_query");
}

/// A target added to `TARGETS` without a smoke test above, a fuzz binary calling it, or
/// seeds would go unrun somewhere.
#[test]
fn every_target_has_a_smoke_test_a_fuzz_binary_and_seeds() {
    let this = fs::read_to_string(repo().join("crates/fuzz-targets/tests/smoke.rs")).unwrap();
    let manifest = fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(
            this.contains(&format!("smoke(\"{name}\")")),
            "{name}: no smoke test"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name}: no [[bin]]"
        );
        let binary = repo().join(format!("fuzz/fuzz_targets/{name}.rs"));
        let binary = fs::read_to_string(&binary).unwrap_or_default();
        assert!(
            binary.contains(&format!("fuzz_targets::{name}::run")),
            "fuzz/fuzz_targets/{name}.rs does not call fuzz_targets::{name}::run"
        );
        assert!(!seeds(name).is_empty(), "{name}: no seeds");
    }
}
