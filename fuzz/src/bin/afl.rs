//! The coverage-guided harness: `afl TARGET`, run by `cargo afl fuzz` (see bench/fuzz.sh).
//! Built with `cargo afl build --release --features afl --bin afl` in `fuzz/`.

use std::path::PathBuf;

use fleetup::fuzzing::{self, Fixture};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, name] = args.as_slice()
        && flag == "--dict"
    {
        // The target's tokens as an AFL dictionary (bench/fuzz.sh passes it with -x).
        let Some(target) = fuzzing::target(name) else {
            eprintln!("unknown fuzz target {name:?} (one of: {})", names());
            std::process::exit(2);
        };
        for (i, token) in target.tokens.iter().enumerate() {
            println!("token_{i}=\"{}\"", fuzzing::dictionary_escape(token));
        }
        return;
    }
    let Some(name) = args.first().cloned() else {
        eprintln!(
            "usage: afl TARGET | afl --dict TARGET (targets: {})",
            names()
        );
        std::process::exit(2);
    };
    let Some(target) = fuzzing::target(&name) else {
        eprintln!("unknown fuzz target {name:?} (one of: {})", names());
        std::process::exit(2);
    };
    // Built once, before AFL forks its children, which all read it; never removed by them.
    let base = std::env::var_os("FLEETUP_FUZZ_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("fleetup-fuzz-fixture"));
    let fixture = match Fixture::build(&base) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot build the fuzz fixture in {}: {e}", base.display());
            std::process::exit(1);
        }
    };
    afl::fuzz!(|data: &[u8]| {
        (target.run)(&fixture, data);
    });
}

fn names() -> String {
    fuzzing::TARGETS
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}
