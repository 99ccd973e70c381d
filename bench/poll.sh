#!/usr/bin/env bash
# API polling benchmark: 50 dashboard-like clients poll `GET /api/v1/rollouts/{id}` (and then
# `GET /api/v1/devices`) once a second each while a rollout of 1,000 simulated devices runs,
# side by side with nginx serving a saved copy of the same response to the same pollers.
#
#   bench/poll.sh                          # 1000 devices, 50 pollers at 1/s, 20 s per route
#   DEVICES=200 POLLERS=20 SECONDS_EACH=10 bench/poll.sh
#
# nginx is the floor: the cost of shipping the same bytes over loopback with no work behind
# them. Prints p50/p90/p99/max latency per route and fleetup's p99 against nginx's.
# Needs: nginx (apt-get install nginx-light), curl, python3, cargo. Builds --release once;
# everything listens on loopback; every process it starts is stopped on exit.
set -euo pipefail

DEVICES=${DEVICES:-1000}
POLLERS=${POLLERS:-50}
RATE=${RATE:-1}
SECONDS_EACH=${SECONDS_EACH:-20}
CONCURRENCY=${CONCURRENCY:-50}
# Long enough that the rollout is still running while every route is measured.
BOOT_TIME=${BOOT_TIME:-30}
BASE_IP=${BASE_IP:-127.0.30.1}
IMAGE=c2960x-universalk9-mz.152-7.E8.bin
TOKEN=bench-token-0123456789
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[ -x "$NGINX" ] || { echo "bench/poll.sh: nginx not found (apt-get install nginx-light)" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/fleetup-poll.XXXXXX)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -f "$WORK/nginx.pid" ]]; then
        kill -QUIT "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    fi
    if [[ -n "${KEEP:-}" ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

echo "== building (release)" >&2
(cd "$ROOT" && cargo build --release --quiet --bin fleetup --example api-poller)
BIN=${FLEETUP_BIN:-$ROOT/target/release/fleetup}
POLLER=$ROOT/target/release/examples/api-poller

echo "== lab: $DEVICES devices, boot time ${BOOT_TIME}s" >&2
"$BIN" lab --devices "$DEVICES" --ssh-port 0 --boot-time "$BOOT_TIME" --base-ip "$BASE_IP" \
    --write-inventory "$WORK/lab.yml" --state-dir "$WORK/lab" --admin "127.0.0.1:$(free_port)" \
    >"$WORK/lab.out" 2>"$WORK/lab.err" &
PIDS+=($!)
wait_for_line "$WORK/lab.out" "admin API:" "$!" 180

echo "== serve" >&2
mkdir -p "$WORK/data"
export FLEETUP_API_TOKEN=$TOKEN FLEETUP_LOG=warn
"$BIN" serve --http 127.0.0.1:0 --tftp "127.0.0.1:$(free_port)" --ftp off --image-http off \
    --data-dir "$WORK/data" >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
wait_for_line "$WORK/serve.err" "dashboard and API:" "$SERVE_PID" 60
SERVER=$(sed -n 's/.*dashboard and API: *\(http[^ ]*\).*/\1/p' "$WORK/serve.err" | head -1)
export FLEETUP_SERVER=${SERVER%/}
API=$FLEETUP_SERVER/api/v1

"$BIN" inventory import "$WORK/lab.yml" >&2
head -c $((1024 * 1024)) /dev/urandom >"$WORK/$IMAGE"
"$BIN" image add "$WORK/$IMAGE" >&2

cat >"$WORK/playbook.yml" <<YAML
name: poll-bench-$DEVICES
targets:
  groups: [lab]
image:
  ios: $IMAGE
transfer:
  protocol: tftp
  server: 127.0.0.1
strategy:
  waves: ["100%"]
  concurrency: $CONCURRENCY
  timeouts: {poll: 1}
YAML
RID=$(curl -fsS -H "authorization: Bearer $TOKEN" -H 'content-type: application/yaml' \
    --data-binary @"$WORK/playbook.yml" "$API/rollouts" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "== rollout $RID started; $POLLERS pollers at ${RATE}/s each, ${SECONDS_EACH}s per route" >&2

# The same responses, saved, for nginx to serve as static files.
mkdir -p "$WORK/www"
# nginx workers run as an unprivileged user: they must be able to read the copies.
chmod 755 "$WORK" "$WORK/www"
NGINX_PORT=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    server { listen 127.0.0.1:$NGINX_PORT; root $WORK/www; }
}
CONF
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" || die "nginx did not start: $(cat "$WORK/nginx.err")"

poll() { # NAME URL [TOKEN]
    local name=$1 url=$2 token=${3:-}
    local args=(--url "$url" --clients "$POLLERS" --rate "$RATE" --seconds "$SECONDS_EACH")
    [[ -n "$token" ]] && args+=(--token "$token")
    "$POLLER" "${args[@]}" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read()); r["name"] = sys.argv[1]; print(json.dumps(r))' "$name" >>"$WORK/results.jsonl"
}

for route in "rollouts/$RID" "devices"; do
    state=$(curl -fsS -H "authorization: Bearer $TOKEN" "$API/rollouts/$RID" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])')
    [[ "$state" == running ]] || die "the rollout is $state before GET /$route was measured; raise BOOT_TIME"
    poll "fleetup GET /$route" "$API/$route" "$TOKEN"
    file=$(echo "$route" | tr '/' '_').json
    curl -fsS -H "authorization: Bearer $TOKEN" "$API/$route" >"$WORK/www/$file"
    poll "nginx, same bytes" "http://127.0.0.1:$NGINX_PORT/$file"
done
state=$(curl -fsS -H "authorization: Bearer $TOKEN" "$API/rollouts/$RID" |
    python3 -c 'import json, sys; d = json.load(sys.stdin); p = d["progress"]; print(d["state"], p)')
echo "== rollout after the measurements: $state" >&2

python3 - "$WORK/results.jsonl" "$DEVICES" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n{sys.argv[2]} devices in a running rollout; {rows[0]['clients']} pollers at {rows[0]['rate_per_client']}/s each\n")
print(f"| {'route':<44} | {'requests':>8} | {'failed':>6} | {'KiB':>6} | {'p50 ms':>7} | {'p90 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | {'p99 / nginx':>11} |")
print(f"|{'-'*46}|{'-'*10}:|{'-'*7}:|{'-'*7}:|{'-'*8}:|{'-'*8}:|{'-'*8}:|{'-'*8}:|{'-'*12}:|")
for i in range(0, len(rows), 2):
    ours, floor = rows[i], rows[i + 1]
    ratio = ours["p99_ms"] / floor["p99_ms"] if ours["p99_ms"] and floor["p99_ms"] else None
    for r, ratio in ((ours, ratio), (floor, None)):
        ms = lambda k: "-" if r[k] is None else f"{r[k]:.1f}"
        print(f"| {r['name']:<44} | {r['requests']:>8} | {r['failures']:>6} | {r['mean_bytes'] / 1024:>6.0f} | "
              f"{ms('p50_ms'):>7} | {ms('p90_ms'):>7} | {ms('p99_ms'):>7} | {ms('max_ms'):>7} | "
              f"{'' if ratio is None else f'{ratio:.1f}':>11} |")
        if r["failures"]:
            print(f"  first failure of {r['name']}: {r['first_failure']}")
PY
