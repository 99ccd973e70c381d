#!/usr/bin/env bash
# Coverage-guided fuzzing of fleetup's parsers and protocol machines with AFL++ (cargo-afl).
#
# Each target of `fleetup::fuzzing` (src/fuzzing/) runs under `cargo afl fuzz`, starting from
# its seed corpus in fuzz/corpus/TARGET/ with its token dictionary, until it has executed
# EXECS cases (AFL's -E). Then the script prints, per target, the executions, the rate, the
# time, the paths found, and the crashes and hangs AFL saved, and exits non-zero if any target
# crashed. Crashing inputs stay in OUT_DIR/TARGET/default/crashes/; replay one with
#   (cd fuzz && cargo run --bin replay -- TARGET FILE)
#
# Needs cargo-afl (installed from crates.io when missing: `cargo install cargo-afl`; it builds
# its own AFL++). The harness is built in fuzz/ (its own workspace and target directory), with
# the library instrumented, in release mode with overflow checks and debug assertions on.
#
# Usage: bench/fuzz.sh [TARGET...]
#   env: EXECS=1000000  OUT_DIR=fuzz/out  TIMEOUT_MS=2000 (AFL's -t: a case slower is a hang)
#        MAX_SECONDS=3600 (per target: stop there even below EXECS, and say so)
set -euo pipefail
cd "$(dirname "$0")/.."

EXECS=${EXECS:-1000000}
OUT_DIR=${OUT_DIR:-fuzz/out}
TIMEOUT_MS=${TIMEOUT_MS:-2000}
MAX_SECONDS=${MAX_SECONDS:-3600}
ALL_TARGETS=(tftp_packet tftp_session ftp_command ftp_session image_path http_request playbook inventory)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${ALL_TARGETS[@]}"); fi

if ! cargo afl --version >/dev/null 2>&1; then
  echo "bench/fuzz.sh: installing cargo-afl from crates.io" >&2
  cargo install cargo-afl
fi

(cd fuzz && cargo afl build --release --features afl --bin afl)
harness="$PWD/fuzz/target/release/afl"

mkdir -p "$OUT_DIR"
out_dir=$(cd "$OUT_DIR" && pwd)
fixture=$(mktemp -d /tmp/fleetup-fuzz-fixture.XXXXXX)
trap 'rm -rf "$fixture"' EXIT

# Containers seldom let AFL set the CPU governor or see core dumps: neither matters here.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
export FLEETUP_FUZZ_FIXTURE="$fixture"
# The instrumented library has more edges than AFL's default map holds: ask the harness.
AFL_MAP_SIZE=$(AFL_DUMP_MAP_SIZE=1 "$harness" "${targets[0]}" || true)
export AFL_MAP_SIZE

stat() { sed -n "s/^$2 *: *//p" "$1" | head -n1; }

results=()
crashed=0
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  [ -d "$corpus" ] || { echo "bench/fuzz.sh: no corpus for target $t" >&2; exit 1; }
  dict="$out_dir/$t.dict"
  "$harness" --dict "$t" > "$dict"
  rm -rf "${out_dir:?}/$t"
  echo "== $t: fuzzing until $EXECS executions (at most ${MAX_SECONDS}s)" >&2
  start=$(date +%s)
  status=0
  timeout --signal=INT --kill-after=30 "$MAX_SECONDS" \
    cargo afl fuzz -i "$corpus" -o "$out_dir/$t" -x "$dict" -E "$EXECS" -t "$TIMEOUT_MS" \
    -- "$harness" "$t" > "$out_dir/$t.log" 2>&1 || status=$?
  end=$(date +%s)
  stats="$out_dir/$t/default/fuzzer_stats"
  if [ ! -f "$stats" ]; then
    echo "bench/fuzz.sh: AFL did not start on $t (exit $status); see $out_dir/$t.log" >&2
    tail -n 30 "$out_dir/$t.log" >&2
    exit 1
  fi
  execs=$(stat "$stats" execs_done)
  crashes=$(stat "$stats" saved_crashes)
  hangs=$(stat "$stats" saved_hangs)
  paths=$(stat "$stats" corpus_count)
  # AFL's own fuzzing time (run_time), without the build and the dictionary step.
  secs=$(stat "$stats" run_time)
  [ -n "$secs" ] && [ "$secs" -gt 0 ] || secs=$((end - start))
  [ "$secs" -gt 0 ] || secs=1
  rate=$((execs / secs))
  note=""
  [ "$execs" -ge "$EXECS" ] || note=" (stopped at MAX_SECONDS)"
  results+=("$(printf '%-13s %10s %9s %7s %7s %8s %6s%s' "$t" "$execs" "$rate" "$secs" "$paths" "$crashes" "$hangs" "$note")")
  if [ "$crashes" != "0" ]; then
    crashed=1
    echo "bench/fuzz.sh: $t crashed; inputs in $out_dir/$t/default/crashes/" >&2
  fi
done

printf '%-13s %10s %9s %7s %7s %8s %6s\n' target execs execs/s seconds paths crashes hangs
printf '%s\n' "${results[@]}"
exit "$crashed"
