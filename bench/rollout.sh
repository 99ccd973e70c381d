#!/usr/bin/env bash
# Rollout benchmark: a simulated fleet upgraded by a real `fleetup serve` over loopback.
#
#   bench/rollout.sh                      # 200 devices, concurrency 50, 4 MB image, boot 0.5 s
#   DEVICES=50 CONCURRENCY=10 bench/rollout.sh
#   WHILE_RELOADING=refuse bench/rollout.sh   # lab devices refuse connections while reloading
#
# Measures total wall time of `fleetup run --json`, the simulated delays (boot time and
# transfer time per device) against it, the orchestration overhead per device, peak RSS and
# CPU time of `serve`, and the SQLite writes per device (rows, and WAL commits counted from
# serve's pwrite64 calls with strace when it is installed; BENCH_STRACE=0 turns that off).
# Builds `--release` once; everything listens on loopback; every process it starts is stopped
# on exit; the rollout is bounded by BENCH_TIMEOUT seconds.
set -euo pipefail

DEVICES=${DEVICES:-200}
CONCURRENCY=${CONCURRENCY:-50}
IMAGE_MB=${IMAGE_MB:-4}
BOOT_TIME=${BOOT_TIME:-0.5}
BASE_IP=${BASE_IP:-127.0.20.1}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}
BENCH_STRACE=${BENCH_STRACE:-1}
# What a reloading lab device does with connections: silent (real devices) or refuse.
WHILE_RELOADING=${WHILE_RELOADING:-silent}
IMAGE=c2960x-universalk9-mz.152-7.E8.bin
TOKEN=bench-token-0123456789

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/fleetup-bench.XXXXXX)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        [[ -n "$pid" ]] || continue
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "${KEEP:-}" ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

cpu_seconds() { # utime + stime of a process, in seconds
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}

peak_rss_mib() {
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

if [[ -n "${FLEETUP_BIN:-}" ]]; then
    BIN=$FLEETUP_BIN # a binary built elsewhere (e.g. to check the script against a debug build)
else
    echo "== building (release)" >&2
    (cd "$ROOT" && cargo build --release --quiet)
    BIN=$ROOT/target/release/fleetup
fi

echo "== lab: $DEVICES devices from $BASE_IP, boot time ${BOOT_TIME}s" >&2
ADMIN_PORT=$(free_port tcp)
"$BIN" lab --devices "$DEVICES" --ssh-port 0 --boot-time "$BOOT_TIME" --base-ip "$BASE_IP" \
    --while-reloading "$WHILE_RELOADING" --write-inventory "$WORK/lab.yml" --state-dir "$WORK/lab" --admin "127.0.0.1:$ADMIN_PORT" \
    >"$WORK/lab.out" 2>"$WORK/lab.err" &
LAB_PID=$!
PIDS+=("$LAB_PID")
wait_for_line "$WORK/lab.out" "admin API:" "$LAB_PID" 120

echo "== serve" >&2
TFTP_PORT=$(free_port udp)
mkdir -p "$WORK/data"
SERVE_CMD=("$BIN" serve --http 127.0.0.1:0 --tftp "127.0.0.1:$TFTP_PORT" --ftp off --image-http off
    --data-dir "$WORK/data")
export FLEETUP_API_TOKEN=$TOKEN FLEETUP_LOG=warn
if [[ "$BENCH_STRACE" != 0 ]] && command -v strace >/dev/null; then
    # Only pwrite64 is traced (seccomp filter), so the other syscalls run at full speed. -y
    # names the file, -xx shows the WAL frame header bytes (page number, commit size).
    strace -f --seccomp-bpf -qq -ttt -y -xx -s 8 -e trace=pwrite64 -o "$WORK/pwrite.trace" \
        "${SERVE_CMD[@]}" >"$WORK/serve.out" 2>"$WORK/serve.err" &
    STRACE_PID=$!
    for _ in $(seq 100); do
        SERVE_PID=$(pgrep -P "$STRACE_PID" || true)
        [[ -n "$SERVE_PID" ]] && break
        sleep 0.1
    done
    # serve first: stopping strace alone would detach and leave serve running.
    PIDS+=("${SERVE_PID:-}" "$STRACE_PID")
    [[ -n "$SERVE_PID" ]] || die "serve did not start under strace"
else
    "${SERVE_CMD[@]}" >"$WORK/serve.out" 2>"$WORK/serve.err" &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
fi
wait_for_line "$WORK/serve.err" "dashboard and API:" "$SERVE_PID" 60
SERVER=$(sed -n 's/.*dashboard and API: *\(http[^ ]*\).*/\1/p' "$WORK/serve.err" | head -1)
SERVER=${SERVER%/}
export FLEETUP_SERVER=$SERVER

"$BIN" inventory import "$WORK/lab.yml" >&2
head -c $((IMAGE_MB * 1024 * 1024)) /dev/urandom >"$WORK/$IMAGE"
"$BIN" image add "$WORK/$IMAGE" >&2

cat >"$WORK/playbook.yml" <<EOF
name: bench-$DEVICES
targets:
  groups: [lab]
image:
  ios: $IMAGE
transfer:
  protocol: tftp
  server: 127.0.0.1
strategy:
  canary: 1
  waves: ["100%"]
  concurrency: $CONCURRENCY
  timeouts: {poll: 1}
EOF

CPU_BEFORE=$(cpu_seconds "$SERVE_PID")
LAB_CPU_BEFORE=$(cpu_seconds "$LAB_PID")
echo "== fleetup run --json ($DEVICES devices, concurrency $CONCURRENCY)" >&2
START=$(date +%s.%N)
set +e
timeout "$BENCH_TIMEOUT" "$BIN" run "$WORK/playbook.yml" --json >"$WORK/run.jsonl" 2>"$WORK/run.err"
RUN_RC=$?
set -e
END=$(date +%s.%N)
CPU_AFTER=$(cpu_seconds "$SERVE_PID")
LAB_CPU_AFTER=$(cpu_seconds "$LAB_PID")
RSS=$(peak_rss_mib "$SERVE_PID")
[[ $RUN_RC -eq 124 ]] && die "the rollout did not end within ${BENCH_TIMEOUT}s"

curl -fsS "http://127.0.0.1:$ADMIN_PORT/api/devices" >"$WORK/lab-devices.json"
RID=$(tail -1 "$WORK/run.jsonl" | python3 -c 'import json, sys; print(json.load(sys.stdin)["rollout"])') ||
    die "no rollout id in the last line of fleetup run: $(tail -3 "$WORK/run.jsonl") $(tail -3 "$WORK/run.err")"
curl -fsS -H "authorization: Bearer $TOKEN" "$SERVER/api/v1/rollouts/$RID/report" >"$WORK/report.json"
# serve stops first, so strace has written every line of the trace.
kill -TERM "$SERVE_PID"
for _ in $(seq 100); do
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.1
done
python3 "$ROOT/bench/rollout_stats.py" \
    --run "$WORK/run.jsonl" --run-rc "$RUN_RC" --report "$WORK/report.json" \
    --db "$WORK/data/fleetup.db" --lab "$WORK/lab-devices.json" \
    --pwrite-trace "$WORK/pwrite.trace" --from-epoch "$START" --to-epoch "$END" \
    --wall "$(minus "$END" "$START")" --boot-time "$BOOT_TIME" \
    --devices "$DEVICES" --concurrency "$CONCURRENCY" --image-mb "$IMAGE_MB" \
    --serve-cpu "$(minus "$CPU_AFTER" "$CPU_BEFORE")" --serve-cpu-total "$CPU_AFTER" \
    --lab-cpu "$(minus "$LAB_CPU_AFTER" "$LAB_CPU_BEFORE")" --serve-rss-mib "$RSS" \
    --while-reloading "$WHILE_RELOADING"
exit "$RUN_RC"
