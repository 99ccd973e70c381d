//! Run saved inputs through a fuzz target without instrumentation, to reproduce a crash found
//! by AFL (`fuzz/out/<target>/default/crashes/`) or by the bounded test
//! (`target/fuzz-failures/`):
//!
//! ```text
//! cargo run --bin replay -- TARGET FILE|DIR...
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fleetup::fuzzing::{self, Fixture};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [name, inputs @ ..] if !inputs.is_empty() => replay(name, inputs),
        _ => {
            eprintln!("usage: replay TARGET FILE|DIR...");
            ExitCode::from(2)
        }
    }
}

fn replay(name: &str, inputs: &[String]) -> ExitCode {
    let Some(target) = fuzzing::target(name) else {
        eprintln!("unknown fuzz target {name:?}");
        return ExitCode::from(2);
    };
    let base = match tempfile_dir() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot create a fixture directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fixture = match Fixture::build(&base) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot build the fixture: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut files = Vec::new();
    for i in inputs {
        collect(Path::new(i), &mut files);
    }
    let mut failed = 0;
    for file in &files {
        let Ok(data) = std::fs::read(file) else {
            eprintln!("{}: cannot read", file.display());
            failed += 1;
            continue;
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (target.run)(&fixture, &data)
        }));
        match r {
            Ok(()) => println!("ok      {}", file.display()),
            Err(_) => {
                println!("FAILED  {}", file.display());
                failed += 1;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    println!("{} inputs, {failed} failed", files.len());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            out.extend(paths.into_iter().filter(|p| p.is_file()));
        }
        Err(_) => out.push(path.to_path_buf()),
    }
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("fleetup-fuzz-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
