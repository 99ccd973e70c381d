//! The bounded fuzzing pass: every target of `fleetup::fuzzing` over its committed seed corpus
//! (`fuzz/corpus/<target>/`) and a fixed number of deterministic mutations of it. A panic or a
//! broken invariant fails the test and leaves the input in `target/fuzz-failures/`, where
//! `fuzz/` can replay it. The long, coverage-guided runs are `bench/fuzz.sh`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use fleetup::fuzzing::{self, Fixture};

/// Mutations per target. Each target's pass takes a few seconds in a debug build.
const CASES: usize = 20_000;

fn run(name: &str) {
    let target = fuzzing::target(name).expect("a fuzz target of that name");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let seeds = fuzzing::corpus(&dir, name).expect("the target's seed corpus");
    assert!(
        seeds.len() >= 3,
        "{name}: the seed corpus under fuzz/corpus/{name} is missing"
    );
    let base = tempfile::tempdir().expect("temporary directory");
    let fixture = Fixture::build(base.path()).expect("fixture");
    // Seeded by the name, so each target sees its own and every run the same mutations.
    let seed = name.bytes().fold(0x00f1_ee70_u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    let mut ran = 0;
    for (i, input) in fuzzing::mutations(target, &seeds, CASES, seed).enumerate() {
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&fixture, &input)));
        if let Err(panic) = outcome {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            let failures = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
            let _ = std::fs::create_dir_all(&failures);
            let file = failures.join(format!("{name}-{i}.bin"));
            let _ = std::fs::write(&file, &input);
            panic!(
                "{name}: case {i} broke an invariant: {why}\ninput ({} bytes) saved to {}; \
                 replay with: cd fuzz && cargo run --bin replay -- {name} {}",
                input.len(),
                file.display(),
                file.display()
            );
        }
        ran += 1;
    }
    assert_eq!(ran, seeds.len() + CASES);
}

#[test]
fn fuzz_tftp_packet() {
    run("tftp_packet");
}

#[test]
fn fuzz_tftp_session() {
    run("tftp_session");
}

#[test]
fn fuzz_ftp_command() {
    run("ftp_command");
}

#[test]
fn fuzz_ftp_session() {
    run("ftp_session");
}

#[test]
fn fuzz_image_path() {
    run("image_path");
}

#[test]
fn fuzz_http_request() {
    run("http_request");
}

#[test]
fn fuzz_playbook() {
    run("playbook");
}

#[test]
fn fuzz_inventory() {
    run("inventory");
}

#[test]
fn every_target_has_a_test_and_a_corpus() {
    let names: Vec<&str> = fuzzing::TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "tftp_packet",
            "tftp_session",
            "ftp_command",
            "ftp_session",
            "image_path",
            "http_request",
            "playbook",
            "inventory"
        ]
    );
}
