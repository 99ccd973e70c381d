#!/usr/bin/env bash
# Scale benchmark (issue #19): a rollout of 2,000 simulated devices at two sites, concurrency
# 400, in two configurations run one after the other and reported side by side:
#
#   A  SQLite, one `fleetup serve`, no agents: every device copies from serve's TFTP server.
#   B  PostgreSQL (scripts/postgres, in the work directory), two serve nodes on it (the
#      rollout is submitted to node a, which leads it; node b answers the API too) and one
#      `fleetup agent` per site, which drives its site's devices (AGENT_DRIVE=true: node a
#      hands it their jobs; false: node a drives them) and serves them the image.
#
#   bench/scale.sh                                   # 2000 devices, both configurations
#   DEVICES=100 CONCURRENCY=50 bench/scale.sh        # a quick look
#   ONLY=B KEEP=1 FLEETUP_BIN=target/release/fleetup bench/scale.sh
#
# Each configuration gets a fresh `fleetup lab` (its startup time, resting RSS and CPU during
# the rollout are reported as the lab's own cost), an inventory whose devices alternate between
# sites `site-a` and `site-b`, a 1 MiB image and the playbook
#   strategy: {canary: 1, waves: ["100%"], concurrency: 400, timeouts: {poll: 1}}
#   transfer: {protocol: tftp, tftp_blocksize: 8192}
# While the rollout runs, dashboard-like pollers (bench/scale_poller.py) ask every node for
# GET /api/v1/rollouts/ID and GET /api/v1/devices, and bench/scale_probe.py measures: CPU of
# every fleetup process (utime+stime+cutime+cstime from /proc/PID/stat), split by thread name
# (live threads from /proc/PID/task, ended ones from the kernel's taskstats exit records), so the
# TFTP transfer threads (`tftp-transfer`, the file server) are reported apart from the
# orchestration; peak RSS (VmHWM) of each process; SQLite write transactions (a uprobe on
# SQLite's WAL commit hook) or, on PostgreSQL, transaction ids assigned (write transactions) and
# pg_stat_database's xact_commit (all transactions, read-only ones included); at the end, each
# serve node's /metrics for the calls of the agents' jobs per device, by op. bench/scale_stats.py
# prints one table with A and B columns, the targets as PASS/FAIL rows, and where the time goes.
#
# Knobs: DEVICES (2000), CONCURRENCY (400), IMAGE_MB (1), BOOT_TIME (2 s), LAB_RATE (copy rate
# of each simulated device, bytes/s, 2097152), TFTP_BLOCKSIZE (8192; 0: the device's default,
# 512), POLL (timeouts.poll, 1 s), POLL_CLIENTS (1 per route and node: one dashboard on each
# node), POLL_RATE (1/s each), AGENT_HEARTBEAT (2 s), AGENT_DRIVE (true: the agents drive their
# sites' devices, with --max-jobs CONCURRENCY), LAB_NICE (the lab's nice value, 0), PERF (1:
# sample serve node a with perf), NGINX_FLOOR (1 when nginx is installed: nginx serves a copy
# of node a's latest rollout answer, renewed every 2 s, and the pollers ask it too, the floor
# of moving those bytes on this machine under the same load; 0: off),
# PG_STATEMENTS (1: B's PostgreSQL loads pg_stat_statements, with planning time, and the run
# keeps its statements by time spent during the rollout in B/pg-statements.txt; 0, the
# default, leaves the server as the published runs had it),
# PG_SLOW_MS (a number: B's PostgreSQL logs every statement that takes at least that many
# ms, with the lock waits, and the run keeps those lines in B/pg-slow.txt; 0, the default:
# off),
# PG_CONF (extra lines for B's postgresql.conf, e.g. `autovacuum_naptime = 5`; none by default),
# BASE_IP (127.0.40.1), ONLY=A|B, KEEP=1 (keep the work directory), FLEETUP_BIN (a prebuilt
# binary; else `cargo build --release`), SCALE_TIMEOUT (seconds per rollout, 1800), FLEETUP_LOG
# (the fleetup processes' log filter, `warn`; their logs are in the work directory).
# Needs python3, curl, nm (binutils); PostgreSQL for B (scripts/postgres installs it); root for
# the taskstats and uprobe counters (without it those figures are left out, with the reason).
# Everything listens on loopback with free ports; every process it starts is stopped on exit,
# also on Ctrl-C. It raises the open-file limit (ulimit -n) to what the lab and serve need
# (about 3 descriptors per device plus 8 per concurrent job), and says so.
set -euo pipefail

DEVICES=${DEVICES:-2000}
CONCURRENCY=${CONCURRENCY:-400}
IMAGE_MB=${IMAGE_MB:-1}
BOOT_TIME=${BOOT_TIME:-2}
LAB_RATE=${LAB_RATE:-2097152}
# The lab's CPU priority (nice(1)). The lab stands in for the network's devices, which have
# CPUs of their own: at 10, it takes the CPU that fleetup and PostgreSQL leave, as devices on
# other machines would; 0 runs it as their equal on the shared cores.
LAB_NICE=${LAB_NICE:-0}
PG_STATEMENTS=${PG_STATEMENTS:-0}
PG_SLOW_MS=${PG_SLOW_MS:-0}
PG_CONF=${PG_CONF:-}
TFTP_BLOCKSIZE=${TFTP_BLOCKSIZE:-8192}
POLL=${POLL:-1}
POLL_CLIENTS=${POLL_CLIENTS:-1}
POLL_RATE=${POLL_RATE:-1}
AGENT_HEARTBEAT=${AGENT_HEARTBEAT:-2}
AGENT_DRIVE=${AGENT_DRIVE:-true}
# Sample the machine with perf (99 Hz, cpu-clock, every CPU: under 5 % of one core) during the
# rollout, to tell where serve node a's CPU goes; PERF=0 turns it off.
PERF=${PERF:-1}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
if [[ -x "$NGINX" ]]; then NGINX_FLOOR=${NGINX_FLOOR:-1}; else NGINX_FLOOR=${NGINX_FLOOR:-0}; fi
BASE_IP=${BASE_IP:-127.0.40.1}
SCALE_TIMEOUT=${SCALE_TIMEOUT:-1800}
ONLY=${ONLY:-}
IMAGE=c2960x-universalk9-mz.152-7.E8.bin
TOKEN=bench-token-0123456789
# Site agents' TFTP addresses (a port of their own each, picked by the agent).
AGENT_IPS=(127.0.60.1 127.0.60.2)
SITES=(site-a site-b)

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/fleetup-scale.XXXXXX)
PIDS=()
PG_DIRS=()

stop_pids() { # PID... : SIGTERM, up to 10 s, then SIGKILL
    local pid
    for pid in "$@"; do
        if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for pid in "$@"; do
        [[ -n "$pid" ]] || continue
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

cleanup() {
    local d
    stop_pids "${PIDS[@]}"
    for d in "${PG_DIRS[@]}"; do
        "$ROOT/scripts/postgres" down "$d" >/dev/null 2>&1 || true
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

say() { echo "== $*" >&2; }
now() { date +%s.%N; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
# The wait for a line scales with the fleet: the lab makes a state directory per device.
lab_wait=$((120 + DEVICES / 10))

# nginx serving a copy of the rollout's answer: the floor for GET /rollouts/ID.
NGINX_PORT=""
if [[ "$NGINX_FLOOR" == 1 ]]; then
    [[ -x "$NGINX" ]] || die "NGINX_FLOOR=1 needs nginx (apt-get install nginx-light)"
    mkdir -p "$WORK/www"
    NGINX_PORT=$(free_port)
    cat >"$WORK/nginx.conf" <<CONF
daemon off;
worker_processes 1;
user root;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 64; }
http {
    access_log off;
    default_type application/json;
    server { listen 127.0.0.1:$NGINX_PORT; root $WORK/www; }
}
CONF
    "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" &
    PIDS+=("$!")
fi

case "$ONLY" in
"") CONFIGS=(A B) ;;
A | B) CONFIGS=("$ONLY") ;;
*) die "ONLY is A or B, not '$ONLY'" ;;
esac
[[ "$DEVICES" -ge 2 ]] || die "DEVICES must be at least 2 (two sites)"
# The lower bound needs a copy rate; 0 (unlimited in the lab) has none.
[[ "$LAB_RATE" -gt 0 ]] || die "LAB_RATE must be a copy rate in bytes/s"
for tool in python3 curl nm; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

# Open files: the lab holds a listener per device and, per copy, an SSH session, a TFTP socket
# and a flash file; serve holds an SSH session, a TFTP socket and the image per job.
NOFILE=$((DEVICES * 3 + CONCURRENCY * 8 + 4096))
OLD_NOFILE=$(ulimit -n)
if [[ "$OLD_NOFILE" != unlimited && "$OLD_NOFILE" -lt "$NOFILE" ]]; then
    if [[ "$(ulimit -Hn)" != unlimited && "$(ulimit -Hn)" -lt "$NOFILE" ]]; then
        ulimit -Hn "$NOFILE" 2>/dev/null || die "open-file limit: need $NOFILE, the hard limit is $(ulimit -Hn) (raise it, or run as root)"
    fi
    ulimit -Sn "$NOFILE"
    say "open-file limit raised: ulimit -n $NOFILE (was $OLD_NOFILE)"
else
    say "open-file limit: ulimit -n $OLD_NOFILE (at least $NOFILE needed)"
fi

if [[ -n "${FLEETUP_BIN:-}" ]]; then
    BIN=$(cd "$(dirname "$FLEETUP_BIN")" && pwd)/$(basename "$FLEETUP_BIN")
else
    say "building (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin fleetup)
    BIN=$ROOT/target/release/fleetup
fi
[[ -x "$BIN" ]] || die "no fleetup binary at $BIN"

head -c $((IMAGE_MB * 1024 * 1024)) /dev/urandom >"$WORK/$IMAGE"
# As root, scripts/postgres runs PostgreSQL as the postgres user, who must reach B/pg.
chmod 711 "$WORK"
export FLEETUP_API_TOKEN=$TOKEN FLEETUP_LOG=${FLEETUP_LOG:-warn}

api() { # METHOD URL [curl args...]
    local method=$1 url=$2
    shift 2
    curl -fsS --max-time 60 -X "$method" -H "authorization: Bearer $TOKEN" "$@" "$url"
}

start_serve() { # DIR NAME HTTP_PORT [serve flags...]: sets SERVE_PID
    local dir=$1 name=$2 port=$3
    shift 3
    mkdir -p "$dir/data-$name"
    "$BIN" serve --http "127.0.0.1:$port" --tftp "127.0.0.1:$(free_port udp)" --ftp off \
        --image-http off --data-dir "$dir/data-$name" --max-concurrent-devices "$CONCURRENCY" \
        "$@" >"$dir/serve-$name.out" 2>"$dir/serve-$name.err" &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
    wait_for_line "$dir/serve-$name.err" "dashboard and API:" "$SERVE_PID" 120
}

pg_statements() { # URL: pg_stat_statements by time spent (planning and execution), per device
    psql "$1" -qP footer=off -c "SELECT calls,
        round(((total_plan_time + total_exec_time) / $DEVICES)::numeric, 3) AS ms_per_device,
        round((total_plan_time / $DEVICES)::numeric, 3) AS plan_ms_per_device,
        round(((total_plan_time + total_exec_time) / calls)::numeric, 3) AS ms_per_call,
        rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 140) AS query
        FROM pg_stat_statements WHERE calls > 0
        ORDER BY total_plan_time + total_exec_time DESC LIMIT 40"
}

pg_counters() { # URL FILE: transactions, the next transaction id, rows read per table
    psql "$1" -qAtF' ' -c "SELECT xact_commit, xact_rollback, pg_snapshot_xmax(pg_current_snapshot()) FROM pg_stat_database WHERE datname = current_database()" >"$2"
    psql "$1" -qAtF' ' -c "SELECT relname, seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables" >"$2.tables"
}

run_config() { # A | B
    local cfg=$1 dir=$WORK/$1
    local procs=() trees=() targets=() cfg_pids=() sqlite_args=()
    mkdir -p "$dir"
    local facts=$dir/facts
    : >"$facts"
    fact() { echo "$1=$2" >>"$facts"; }
    fact config "$cfg"

    say "$cfg: lab of $DEVICES devices from $BASE_IP (boot ${BOOT_TIME}s, copy rate $LAB_RATE B/s)"
    local lab_admin t0 t1
    lab_admin=127.0.0.1:$(free_port)
    t0=$(now)
    # nice(1) execs the lab: $! is the lab's own pid.
    nice -n "$LAB_NICE" \
        "$BIN" lab --devices "$DEVICES" --ssh-port 0 --boot-time "$BOOT_TIME" --base-ip "$BASE_IP" \
        --rate "$LAB_RATE" --write-inventory "$dir/lab.yml" --state-dir "$dir/lab" \
        --admin "$lab_admin" >"$dir/lab.out" 2>"$dir/lab.err" &
    local lab_pid=$!
    PIDS+=("$lab_pid")
    cfg_pids+=("$lab_pid")
    wait_for_line "$dir/lab.out" "admin API:" "$lab_pid" "$lab_wait"
    t1=$(now)
    fact lab_startup_s "$(minus "$t1" "$t0")"
    sleep 2
    fact lab_rest_rss_kib "$(awk '/^VmRSS:/ { print $2 }' "/proc/$lab_pid/status")"
    trees+=(--tree "lab=$lab_pid")

    # Devices alternate between the two sites (the lab writes site `lab` for all).
    python3 - "$dir/lab.yml" "${SITES[@]}" <<'PY'
import sys
path, sites = sys.argv[1], sys.argv[2:]
out, k, in_devices = [], 0, False
for line in open(path):
    if line.startswith("devices:"):
        in_devices = True
    elif in_devices and line.strip() == "site: lab":
        line = line.replace("site: lab", f"site: {sites[k % len(sites)]}")
        k += 1
    out.append(line)
open(path, "w").writelines(out)
PY

    local port_a server_a server_b="" db_url="" serve_a_pid
    port_a=$(free_port)
    server_a=http://127.0.0.1:$port_a
    if [[ "$cfg" == A ]]; then
        say "A: serve (SQLite)"
        start_serve "$dir" a "$port_a"
        serve_a_pid=$SERVE_PID
        procs+=(--proc "serve-a=$SERVE_PID")
        cfg_pids+=("$SERVE_PID")
        sqlite_args=(--sqlite-bin "$BIN")
        fact database sqlite
    else
        say "B: PostgreSQL"
        PG_DIRS+=("$dir/pg")
        local su_url
        local pg_conf=""
        if [[ "$PG_STATEMENTS" == 1 ]]; then
            pg_conf=$'shared_preload_libraries = \'pg_stat_statements\'\npg_stat_statements.track_planning = on'
        fi
        if [[ "$PG_SLOW_MS" != 0 ]]; then
            pg_conf+=$'\n'"log_min_duration_statement = $PG_SLOW_MS"$'\nlog_lock_waits = on\nlog_line_prefix = \'%m [%p] \''
        fi
        if [[ -n "$PG_CONF" ]]; then
            pg_conf+=$'\n'"$PG_CONF"
        fi
        su_url=$(FLEETUP_PG_CONF="$pg_conf" "$ROOT/scripts/postgres" up "$dir/pg" 2>"$dir/pg-up.err") ||
            die "scripts/postgres up failed: $(cat "$dir/pg-up.err")"
        command -v psql >/dev/null || die "psql is needed (postgresql-client)"
        psql "$su_url" -qAtc "CREATE DATABASE fleetup_scale" >/dev/null
        db_url=${su_url%/postgres}/fleetup_scale
        if [[ "$PG_STATEMENTS" == 1 ]]; then
            psql "$db_url" -qAtc "CREATE EXTENSION pg_stat_statements" >/dev/null
        fi
        trees+=(--tree "postgres=$(head -1 "$dir/pg/pg/data/postmaster.pid")")
        fact database postgres
        say "B: serve nodes a and b"
        start_serve "$dir" a "$port_a" --database "$db_url" --node-name scale-a --advertise-url "$server_a"
        serve_a_pid=$SERVE_PID
        procs+=(--proc "serve-a=$SERVE_PID")
        cfg_pids+=("$SERVE_PID")
        local port_b
        port_b=$(free_port)
        server_b=http://127.0.0.1:$port_b
        start_serve "$dir" b "$port_b" --database "$db_url" --node-name scale-b --advertise-url "$server_b"
        procs+=(--proc "serve-b=$SERVE_PID")
        cfg_pids+=("$SERVE_PID")
    fi

    FLEETUP_SERVER=$server_a "$BIN" inventory import "$dir/lab.yml" >"$dir/import.out"
    FLEETUP_SERVER=$server_a "$BIN" image add "$WORK/$IMAGE" >"$dir/image.out"

    if [[ "$cfg" == B ]]; then
        local i site server agent_pid
        for i in 0 1; do
            site=${SITES[$i]}
            # Each agent reports to a node of its own, as agents at two sites might.
            server=$server_a
            [[ $i == 1 ]] && server=$server_b
            mkdir -p "$dir/agent-$site"
            FLEETUP_AGENT_TOKEN=$TOKEN "$BIN" agent --site "$site" --server "$server" \
                --name "agent-$site" --data-dir "$dir/agent-$site" \
                --tftp "${AGENT_IPS[$i]}:0" --heartbeat "$AGENT_HEARTBEAT" \
                --drive "$AGENT_DRIVE" --max-jobs "$CONCURRENCY" \
                >"$dir/agent-$site.out" 2>"$dir/agent-$site.err" &
            agent_pid=$!
            PIDS+=("$agent_pid")
            cfg_pids+=("$agent_pid")
            procs+=(--proc "agent-$site=$agent_pid")
            wait_for_line "$dir/agent-$site.err" "TFTP: " "$agent_pid" 60
        done
        say "B: waiting for both agents to count as live"
        for _ in $(seq 60); do
            api GET "$server_a/api/v1/agents" -o "$dir/agents.json" || true
            python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))["agents"]
drive = sys.argv[2] == "true"
sys.exit(0 if sum(1 for x in a if x["live"] and x.get("drives", False) == drive) >= 2 else 1)' \
                "$dir/agents.json" "$AGENT_DRIVE" 2>/dev/null && break
            sleep 1
        done
    fi

    cat >"$dir/playbook.yml" <<EOF
name: scale-$cfg-$DEVICES
targets:
  groups: [lab]
image:
  ios: $IMAGE
transfer:
  protocol: tftp
  server: 127.0.0.1
EOF
    if [[ "$TFTP_BLOCKSIZE" != 0 ]]; then
        echo "  tftp_blocksize: $TFTP_BLOCKSIZE" >>"$dir/playbook.yml"
    fi
    cat >>"$dir/playbook.yml" <<EOF
strategy:
  canary: 1
  waves: ["100%"]
  concurrency: $CONCURRENCY
  timeouts: {poll: $POLL}
EOF

    python3 "$ROOT/bench/scale_probe.py" --out "$dir/probe.json" "${procs[@]}" "${trees[@]}" \
        "${sqlite_args[@]}" >"$dir/probe.out" 2>"$dir/probe.err" &
    local probe_pid=$!
    PIDS+=("$probe_pid")
    wait_for_line "$dir/probe.out" "ready" "$probe_pid" 30
    if [[ "$cfg" == B ]]; then
        pg_counters "$db_url" "$dir/pg-before"
        if [[ "$PG_STATEMENTS" == 1 ]]; then
            psql "$db_url" -qAtc "SELECT pg_stat_statements_reset()" >/dev/null
        fi
    fi

    say "$cfg: rollout of $DEVICES devices, concurrency $CONCURRENCY"
    local rid start end state=unknown
    start=$(now)
    rid=$(api POST "$server_a/api/v1/rollouts" -H 'content-type: application/yaml' \
        --data-binary @"$dir/playbook.yml" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])') ||
        die "the rollout was not accepted"
    fact rollout "$rid"
    targets=(--target "a GET /rollouts/ID=$server_a/api/v1/rollouts/$rid" --target "a GET /devices=$server_a/api/v1/devices")
    if [[ -n "$server_b" ]]; then
        targets+=(--target "b GET /rollouts/ID=$server_b/api/v1/rollouts/$rid" --target "b GET /devices=$server_b/api/v1/devices")
    fi
    if [[ -n "$NGINX_PORT" ]]; then
        # The same bytes from nginx: a first copy now, then node a's latest every 2 s.
        api GET "$server_a/api/v1/rollouts/$rid" >"$WORK/www/rollout-$cfg.json"
        targets+=(--target "nginx, the same bytes=http://127.0.0.1:$NGINX_PORT/rollout-$cfg.json"
            --mirror "a GET /rollouts/ID=$WORK/www/rollout-$cfg.json")
    fi
    local perf_pid=""
    if [[ "$PERF" != 0 ]] && command -v perf >/dev/null; then
        # System-wide, and serve a's samples picked out at the report: `perf record -p PID`
        # (perf 6.1) spins at a whole core once threads of PID come and go (each TFTP transfer
        # is a thread), and took one of a two-core machine's cores from the runs before.
        perf record -e cpu-clock -F 99 -a -o "$dir/perf.data" >/dev/null 2>"$dir/perf.err" &
        perf_pid=$!
        PIDS+=("$perf_pid")
    fi
    python3 "$ROOT/bench/scale_poller.py" --out "$dir/poll.json" --token "$TOKEN" \
        --clients "$POLL_CLIENTS" --rate "$POLL_RATE" "${targets[@]}" 2>"$dir/poll.err" &
    local poller_pid=$!
    PIDS+=("$poller_pid")

    local deadline=$((SECONDS + SCALE_TIMEOUT)) listing
    while ((SECONDS < deadline)); do
        sleep 1
        # The list is small; the rollout is its first (newest) entry.
        listing=$(api GET "$server_a/api/v1/rollouts" 2>/dev/null || true)
        state=$(grep -o '"state":"[a-z_]*"' <<<"$listing" | head -1 | cut -d'"' -f4)
        case "$state" in
        completed | completed_with_failures | halted | aborted) break ;;
        esac
    done
    end=$(now)
    fact state "${state:-unknown}"
    fact submit_to_end_s "$(minus "$end" "$start")"
    kill -TERM "$poller_pid" "$probe_pid"
    wait "$poller_pid" "$probe_pid" || true
    if [[ -n "$perf_pid" ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" || true
    fi
    case "$state" in
    completed | completed_with_failures | halted | aborted) ;;
    *)
        say "$cfg: the rollout did not end within ${SCALE_TIMEOUT}s ($state); aborting it"
        api POST "$server_a/api/v1/rollouts/$rid/abort" >/dev/null || true
        fact timed_out 1
        ;;
    esac

    api GET "$server_a/api/v1/rollouts/$rid" -o "$dir/detail.json"
    api GET "$server_a/api/v1/rollouts/$rid/report?format=json" -o "$dir/report.json"
    curl -fsS --max-time 60 "http://$lab_admin/api/devices" -o "$dir/lab-devices.json"
    api GET "$server_a/metrics" -o "$dir/metrics-a.txt" || true
    if [[ "$cfg" == B ]]; then
        api GET "$server_b/metrics" -o "$dir/metrics-b.txt" || true
        api GET "$server_a/api/v1/agents" -o "$dir/agents.json" || true
        # Backends send their counters to the statistics at most every second, and an idle one
        # within 10 s: wait for the last ones before reading xact_commit.
        sleep 11
        pg_counters "$db_url" "$dir/pg-after"
        if [[ "$PG_SLOW_MS" != 0 ]]; then
            grep -E 'duration: |still waiting' "$dir/pg/pg/postgres.log" >"$dir/pg-slow.txt" || true
            say "B: $(wc -l <"$dir/pg-slow.txt") statements took ${PG_SLOW_MS} ms or more (B/pg-slow.txt)"
        fi
        if [[ "$PG_STATEMENTS" == 1 ]]; then
            pg_statements "$db_url" >"$dir/pg-statements.txt"
            say "B: PostgreSQL's statements by time (B/pg-statements.txt):"
            head -25 "$dir/pg-statements.txt" >&2
        fi
    fi

    say "$cfg: stopping"
    stop_pids "${cfg_pids[@]}"
    if [[ -s "$dir/perf.data" ]]; then
        perf report -i "$dir/perf.data" --pid "$serve_a_pid" --percentage relative --no-children \
            --sort dso,sym --stdio --percent-limit 0 >"$dir/perf.txt" 2>/dev/null || true
        perf script -i "$dir/perf.data" --pid "$serve_a_pid" -F tid 2>/dev/null | wc -l \
            >"$dir/perf.samples" || true
    fi
    if [[ "$cfg" == B ]]; then
        "$ROOT/scripts/postgres" down "$dir/pg" >/dev/null 2>&1 || true
    fi
}

# Each configuration starts with nothing of another's left to write to disk: A's lab writes
# about 2 GB of flash files. The kernel writes them back while A runs (28-48 MiB were left
# dirty after A in the runs of 2026-12-08), but what is left is not B's to pay for.
settle() {
    local dirty t0
    dirty=$(awk '/^Dirty:/ { print $2 }' /proc/meminfo)
    t0=$(now)
    sync
    say "flushed $((dirty / 1024)) MiB of dirty pages to disk in $(minus "$(now)" "$t0") s"
}

say "work directory $WORK; fleetup $("$BIN" --version)"
for cfg in "${CONFIGS[@]}"; do
    settle
    run_config "$cfg"
done

python3 "$ROOT/bench/scale_stats.py" --devices "$DEVICES" --concurrency "$CONCURRENCY" \
    --image-mb "$IMAGE_MB" --boot-time "$BOOT_TIME" --lab-rate "$LAB_RATE" --poll "$POLL" \
    --tftp-blocksize "$TFTP_BLOCKSIZE" --nofile "$(ulimit -n)" --lab-nice "$LAB_NICE" \
    "${CONFIGS[@]/#/$WORK/}"
