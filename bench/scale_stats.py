#!/usr/bin/env python3
"""The table of bench/scale.sh: one column per configuration (its work directory: facts,
probe.json, poll.json, report.json, lab-devices.json, pg-before/pg-after), the targets of
issue #19 as PASS/FAIL rows, and where the time goes."""

import argparse
import json
import math
import os
import re
import statistics
from datetime import datetime

TARGET_CPU_MS = 20.0
TARGET_P99_MS = 50.0
NEW_VERSION = "15.2(7)E8"
# Threads of fleetup's file servers: each TFTP transfer runs on a thread of this name.
FILE_SERVER_THREADS = ("tftp-transfer",)

p = argparse.ArgumentParser()
p.add_argument("--devices", type=int, required=True)
p.add_argument("--concurrency", type=int, required=True)
p.add_argument("--image-mb", type=float, required=True)
p.add_argument("--boot-time", type=float, required=True)
p.add_argument("--lab-rate", type=float, required=True)
p.add_argument("--poll", type=float, required=True)
p.add_argument("--tftp-blocksize", type=int, required=True)
p.add_argument("--nofile", default="?")
p.add_argument("--lab-nice", default="0")
p.add_argument("dirs", nargs="+")
a = p.parse_args()


def ts(s):
    m = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-].*)$", s)
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + tz).timestamp()


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def pg_counters(path):
    try:
        commit, rollback, xmax = open(path).read().split()
        return int(commit), int(rollback), int(xmax)
    except (OSError, ValueError):
        return None


# Buckets of serve's CPU samples (perf), by the first pattern its symbol or object matches.
PERF_BUCKETS = [
    ("kernel (syscalls, network stack, scheduler)", r"^\[kernel|\[k\]"),
    ("SQLite", r"sqlite3|libsqlite"),
    ("PostgreSQL client (sqlx-postgres)", r"sqlx_postgres"),
    ("sqlx", r"sqlx"),
    ("regular expressions (building and matching)", r"regex"),
    ("crypto (SSH ciphers, MACs, key exchange; hashes)", r"aes|chacha|poly1305|curve25519|x25519|ed25519|ghash|gcm|sha2|sha256|sha512|hmac|ring::|aws_lc|digest|Sha|ctr::|cipher|keccak|md5|Md5"),
    ("russh (SSH sessions)", r"russh"),
    ("JSON (serde_json)", r"serde_json|serde::"),
    ("HTTP (hyper, axum)", r"hyper|axum|h2::|http::"),
    ("memory (malloc, free, memcpy)", r"malloc|free|memcpy|memmove|memset|realloc|calloc|_int_|cfree|alloc::"),
    ("tokio runtime", r"tokio"),
    ("hashing (hash maps)", r"hash_one|sip::|foldhash|hashbrown"),
    ("TFTP", r"tftp"),
]


def perf_profile(path):
    """([(percent, object, symbol)], samples) of a `perf report --sort dso,sym --stdio` listing."""
    out, samples = [], 0
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return out, samples
    for line in lines:
        m = re.match(r"^# Samples: (\d+)", line)
        if m:
            samples = int(m.group(1))
        m = re.match(r"^\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)(?:\s+-\s+-)?\s*$", line)
        if m:
            sym = m.group(4)
            if m.group(3) == "k":
                sym = "[k] " + sym
            out.append((float(m.group(1)), m.group(2), sym))
    return out, samples


def buckets(profile):
    sums = {}
    for pct, obj, sym in profile:
        text = f"{obj} {sym}"
        name = next((b for b, rx in PERF_BUCKETS if re.search(rx, text)), "other")
        sums[name] = sums.get(name, 0) + pct
    return sorted(sums.items(), key=lambda kv: -kv[1])


def pg_rows_read(before, after):
    """Rows read per table between two pg_stat_user_tables snapshots, most first."""
    def read_table(path):
        try:
            return {k: int(v) for k, v in (l.split() for l in open(path) if l.strip())}
        except (OSError, ValueError):
            return {}
    b, e = read_table(before), read_table(after)
    return sorted(((t, e[t] - b.get(t, 0)) for t in e), key=lambda kv: -kv[1])


# The route of nginx serving the same bytes as GET /rollouts/ID (bench/scale_poller.py --mirror).
FLOOR_ROUTE = "nginx, the same bytes"


def collect(d):
    facts = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(d, "facts")) if "=" in l)
    probe = load(os.path.join(d, "probe.json"), {})
    poll = load(os.path.join(d, "poll.json"), {})
    report = load(os.path.join(d, "report.json"), {})
    lab = load(os.path.join(d, "lab-devices.json"), [])
    lab = lab["devices"] if isinstance(lab, dict) else lab
    n = a.devices
    r = {"name": facts["config"], "facts": facts, "probe": probe, "poll": poll}
    devices = report.get("devices", [])
    r["succeeded"] = sum(1 for x in devices if x.get("result") == "succeeded")
    r["on_target"] = sum(1 for x in lab if x.get("version") == NEW_VERSION)
    r["state"] = facts.get("state", "?")
    if report.get("started_at") and report.get("finished_at"):
        r["wall"] = ts(report["finished_at"]) - ts(report["started_at"])
    else:
        r["wall"] = float(facts.get("submit_to_end_s", "nan"))
    steps = {}
    for x in devices:
        for s in x.get("steps", []):
            if s.get("seconds") is not None:
                steps.setdefault(s["step"], []).append(s["seconds"])
    r["steps"] = steps
    r["job_secs"] = [x["seconds"] for x in devices if x.get("seconds") is not None]
    starts = [ts(x["started_at"]) for x in devices if x.get("started_at")]
    r["first_job_after"] = min(starts) - ts(report["started_at"]) if starts and report.get("started_at") else None
    # Device jobs running at once over the rollout (a sweep over the jobs' start and end), and
    # how long none ran at all between the first start and the last end.
    spans = [(ts(x["started_at"]), ts(x["finished_at"])) for x in devices if x.get("started_at") and x.get("finished_at")]
    r["running_mean"] = r["running_max"] = r["idle_s"] = None
    if spans:
        marks = sorted([(s0, 1) for s0, _ in spans] + [(s1, -1) for _, s1 in spans])
        running = peak = 0
        busy = idle = 0.0
        for (t, step), (t_next, _) in zip(marks, marks[1:] + [marks[-1]]):
            running += step
            peak = max(peak, running)
            if running:
                busy += (t_next - t) * running
            else:
                idle += t_next - t
        span = marks[-1][0] - marks[0][0]
        r["running_mean"], r["running_max"], r["idle_s"] = busy / span if span else None, peak, idle

    procs = probe.get("procs", {})
    r["procs"] = procs
    r["cpu_all"] = sum(v["cpu_s"] or 0 for v in procs.values())
    r["cpu_files"] = sum(v["threads"].get(t, 0) for v in procs.values() for t in FILE_SERVER_THREADS)
    r["cpu_orch"] = r["cpu_all"] - r["cpu_files"]
    trees = probe.get("trees", {})
    r["lab"] = trees.get("lab", {})
    r["postgres"] = trees.get("postgres")

    if facts.get("database") == "sqlite":
        r["db_writes"] = probe.get("sqlite_commits")
        r["db_all"] = None
        r["db_error"] = probe.get("sqlite_error")
    else:
        before, after = pg_counters(os.path.join(d, "pg-before")), pg_counters(os.path.join(d, "pg-after"))
        r["rows_read"] = pg_rows_read(os.path.join(d, "pg-before.tables"), os.path.join(d, "pg-after.tables"))
        if before and after:
            r["db_writes"] = after[2] - before[2]
            r["db_all"] = (after[0] + after[1]) - (before[0] + before[1])
        else:
            r["db_writes"] = r["db_all"] = None
        r["db_error"] = None
    # Calls of the agents' jobs answered by the serve nodes, by op (their /metrics at the end).
    calls, requests = {}, None
    for node in ("a", "b"):
        try:
            text = open(os.path.join(d, f"metrics-{node}.txt")).read()
        except OSError:
            continue
        for m in re.finditer(r'^fleetup_agent_job_calls_total\{op="([a-z_]+)"\} (\d+)$', text, re.M):
            calls[m.group(1)] = calls.get(m.group(1), 0) + int(m.group(2))
        for m in re.finditer(r'^fleetup_agent_job_requests_total (\d+)$', text, re.M):
            requests = (requests or 0) + int(m.group(1))
    r["job_calls"] = sorted(((op, c) for op, c in calls.items() if c), key=lambda x: -x[1])
    r["job_requests"] = requests
    routes = poll.get("routes", {})
    r["routes"] = routes
    r["perf"], r["perf_samples"] = perf_profile(os.path.join(d, "perf.txt"))
    # `perf report` rounds the sample count (19K); scale.sh counts serve a's samples exactly.
    try:
        r["perf_samples"] = int(open(os.path.join(d, "perf.samples")).read().strip())
    except (OSError, ValueError):
        pass

    def worst(suffix, key):
        vals = [v[key] for k, v in routes.items() if k.endswith(suffix) and v.get(key) is not None]
        return max(vals) if vals else None

    r["p99_rollout"] = worst("GET /rollouts/ID", "p99_ms")
    r["p50_rollout"] = worst("GET /rollouts/ID", "p50_ms")
    r["p99_devices"] = worst("GET /devices", "p99_ms")
    r["p50_devices"] = worst("GET /devices", "p50_ms")
    r["bytes_rollout"] = worst("GET /rollouts/ID", "max_bytes")
    r["bytes_devices"] = worst("GET /devices", "max_bytes")
    # nginx serving a copy of node a's latest rollout answer (bench/scale.sh's NGINX_FLOOR).
    floor = routes.get(FLOOR_ROUTE, {})
    r["p99_floor"], r["p50_floor"] = floor.get("p99_ms"), floor.get("p50_ms")
    r["poll_failures"] = sum(v.get("failures", 0) for v in routes.values())
    r["poll_requests"] = sum(v.get("requests", 0) for v in routes.values())
    return r


cols = [collect(d) for d in a.dirs]
n = a.devices
image_bytes = a.image_mb * 1024 * 1024
# The rollout alone against the simulated delays: every device copies at the lab's rate and
# boots; the canary runs alone, then the others in ceil((N-1)/C) rounds of C at once.
t_device = image_bytes / a.lab_rate + a.boot_time
rounds = 1 + math.ceil((n - 1) / a.concurrency)
lower = t_device * rounds


def ms_per_dev(sec):
    return None if sec is None else sec * 1000 / n


def f(v, fmt="{:.1f}", none="–"):
    return none if v is None else fmt.format(v)


def proc_cpu(r, name):
    v = r["procs"].get(name)
    return None if v is None else v["cpu_s"]


def proc_rss(r, name):
    v = r["procs"].get(name)
    return None if v is None else v["vmhwm_kib"] / 1024


rows = [
    ("configuration", lambda r: {"A": "SQLite, 1 node, no agents", "B": "PostgreSQL, 2 nodes, 2 agents"}[r["name"]]),
    ("rollout state", lambda r: r["state"] + (" (timed out)" if r["facts"].get("timed_out") else "")),
    ("devices upgraded / lab devices on the new version", lambda r: f"{r['succeeded']} / {r['on_target']}"),
    ("wall time of the rollout (started → finished), s", lambda r: f(r["wall"])),
    ("lower bound from the simulated copies and boots, s", lambda r: f(lower)),
    ("wall / lower bound", lambda r: f(r["wall"] / lower, "{:.2f}")),
    (f"device jobs running at once: mean / max (concurrency {a.concurrency})", lambda r: f"{f(r['running_mean'], '{:.0f}')} / {f(r['running_max'], '{:.0f}')}"),
    ("time with no device job running (between the first start and the last end), s", lambda r: f(r["idle_s"])),
    ("**orchestration CPU per device** (fleetup processes, file servers apart), ms", lambda r: f(ms_per_dev(r["cpu_orch"]))),
    ("file servers' CPU per device (TFTP transfer threads), ms", lambda r: f(ms_per_dev(r["cpu_files"]))),
    ("all fleetup CPU per device, ms", lambda r: f(ms_per_dev(r["cpu_all"]))),
    ("CPU of serve a / serve b, s", lambda r: f"{f(proc_cpu(r, 'serve-a'))} / {f(proc_cpu(r, 'serve-b'))}"),
    ("CPU of agent site-a / site-b, s", lambda r: f"{f(proc_cpu(r, 'agent-site-a'))} / {f(proc_cpu(r, 'agent-site-b'))}"),
    ("PostgreSQL CPU per device (all its processes), ms", lambda r: f(ms_per_dev(r["postgres"]["cpu_s"])) if r["postgres"] else "–"),
    ("**database write transactions per device**", lambda r: f(None if r["db_writes"] is None else r["db_writes"] / n)),
    ("database transactions per device, read-only ones included", lambda r: f(None if r["db_all"] is None else r["db_all"] / n)),
    ("database write transactions per second", lambda r: f(None if r["db_writes"] is None else r["db_writes"] / r["wall"], "{:.0f}")),
    ("**API p99, GET /api/v1/rollouts/ID**, ms (p50)", lambda r: f"{f(r['p99_rollout'])} ({f(r['p50_rollout'])})"),
    ("**API p99, GET /api/v1/devices**, ms (p50)", lambda r: f"{f(r['p99_devices'])} ({f(r['p50_devices'])})"),
    ("nginx serving the same bytes (node a's latest rollout answer, a copy every 2 s): p99 (p50), ms",
     lambda r: f"{f(r['p99_floor'])} ({f(r['p50_floor'])})" if r["p99_floor"] is not None else "–"),
    ("response size GET /rollouts/ID / GET /devices, KiB", lambda r: f"{f(r['bytes_rollout'] / 1024 if r['bytes_rollout'] else None, '{:.0f}')} / {f(r['bytes_devices'] / 1024 if r['bytes_devices'] else None, '{:.0f}')}"),
    ("API requests (failed)", lambda r: f"{r['poll_requests']} ({r['poll_failures']})"),
    ("peak RSS serve a / serve b, MiB", lambda r: f"{f(proc_rss(r, 'serve-a'))} / {f(proc_rss(r, 'serve-b'))}"),
    ("peak RSS agent site-a / site-b, MiB", lambda r: f"{f(proc_rss(r, 'agent-site-a'))} / {f(proc_rss(r, 'agent-site-b'))}"),
    ("peak RSS PostgreSQL, summed over its processes, MiB", lambda r: f(r["postgres"]["vmhwm_kib_sum"] / 1024) if r["postgres"] else "–"),
    ("lab: startup, s", lambda r: f(float(r["facts"]["lab_startup_s"]))),
    ("lab: RSS per device at rest, KiB", lambda r: f(int(r["facts"]["lab_rest_rss_kib"]) / n)),
    ("lab: CPU per device during the rollout, ms", lambda r: f(ms_per_dev(r["lab"].get("cpu_s")))),
    ("lab: peak RSS, MiB", lambda r: f(r["lab"].get("vmhwm_kib_sum", 0) / 1024)),
    # The lab does the same work in every run: this ratio moves with fleetup, not with how
    # fast the (shared, virtual) machine happens to be during the run.
    ("orchestration CPU ÷ the lab's CPU (the same work every run)", lambda r: f(r["cpu_orch"] / r["lab"]["cpu_s"], "{:.2f}") if r["lab"].get("cpu_s") else "–"),
]

print()
print(
    f"{n} devices at 2 sites, concurrency {a.concurrency}, {a.image_mb:g} MiB image over TFTP "
    f"(blksize {a.tftp_blocksize or 'device default'}), lab copy rate {a.lab_rate / 1048576:g} MiB/s per device, "
    f"boot {a.boot_time:g} s, poll {a.poll:g} s; lower bound = {rounds} rounds × "
    f"({image_bytes / a.lab_rate:.2f} s copy + {a.boot_time:g} s boot); ulimit -n {a.nofile}; lab at nice {a.lab_nice}"
)
print()
print("| metric | " + " | ".join(r["name"] for r in cols) + " |")
print("|---|" + "---:|" * len(cols))
for label, fn in rows:
    print(f"| {label} | " + " | ".join(str(fn(r)) for r in cols) + " |")

print()
print("Targets (issue #19):")
print()
for r in cols:
    cpu = ms_per_dev(r["cpu_orch"])
    ok = cpu is not None and cpu < TARGET_CPU_MS
    print(f"  {'PASS' if ok else 'FAIL'}  {r['name']}: orchestration CPU under {TARGET_CPU_MS:g} ms per device ({f(cpu)} ms)")
    p99 = [v for v in (r["p99_rollout"], r["p99_devices"]) if v is not None]
    ok = bool(p99) and max(p99) < TARGET_P99_MS and r["poll_failures"] == 0
    print(
        f"  {'PASS' if ok else 'FAIL'}  {r['name']}: API p99 under {TARGET_P99_MS:g} ms during the rollout "
        f"(GET /rollouts/ID {f(r['p99_rollout'])} ms, GET /devices {f(r['p99_devices'])} ms"
        + (f", {r['poll_failures']} failed" if r["poll_failures"] else "")
        + ")"
    )

print()
print("Where the time goes:")
for r in cols:
    print()
    print(f"  {r['name']}:")
    for name, v in r["procs"].items():
        if v["cpu_s"] is None:
            continue
        top = ", ".join(f"{t} {ms_per_dev(s):.1f}" for t, s in list(v["threads"].items())[:5])
        print(
            f"    {name}: {ms_per_dev(v['cpu_s']):.1f} ms/device; by thread name, ms/device: {top}"
            f"; unexplained {ms_per_dev(v['unattributed_s'] or 0):.1f}; {v['thread_exits']} threads ended"
        )
    if r["perf"]:
        serve = r["procs"].get("serve-a", {}).get("cpu_s") or 0
        parts = ", ".join(f"{b} {pct:.0f} %" for b, pct in buckets(r["perf"]) if pct >= 1)
        print(f"    serve a's CPU ({ms_per_dev(serve):.1f} ms/device), {r['perf_samples']} perf samples by kind: {parts}")
        top = "; ".join(f"{pct:.1f} % {sym[:70]}" for pct, _, sym in r["perf"][:8])
        print(f"      top symbols: {top}")
    if r["db_writes"] is not None:
        print(
            f"    database: {r['db_writes']} write transactions ({r['db_writes'] / n:.1f} per device, "
            f"{r['db_writes'] / r['wall']:.0f}/s)"
            + (f"; {r['db_all']} transactions in all ({r['db_all'] / r['wall']:.0f}/s)" if r["db_all"] is not None else "")
        )
    elif r["db_error"]:
        print(f"    database: write transactions not counted ({r['db_error']})")
    if r.get("rows_read"):
        top = ", ".join(f"{t} {rows / n:.0f}" for t, rows in r["rows_read"][:4])
        print(f"    PostgreSQL rows read per device (pg_stat_user_tables), by table: {top}")
    if r["job_calls"]:
        top = ", ".join(f"{op} {c / n:.1f}" for op, c in r["job_calls"])
        calls = f"{r['job_requests'] / n:.1f}" if r["job_requests"] is not None else "?"
        print(f"    agents' job calls per device: {calls}; ops they carried per device (a batch once, and each op in it): {top}")
    for name, v in r["routes"].items():
        print(
            f"    {name}: {v['requests']} requests, {v['mean_bytes'] / 1024:.0f} KiB each, p50 {f(v['p50_ms'])} / "
            f"p90 {f(v['p90_ms'])} / p99 {f(v['p99_ms'])} / max {f(v['max_ms'])} ms; slowest due at "
            f"{v['slowest_at_s']} s" + (f"; {v['failures']} failed: {v['first_failure']}" if v["failures"] else "")
        )
        if v.get("p99_app_ms"):
            # Server-Timing: what fleetup says it spent on each of the slowest answers.
            shown = "; ".join(
                ", ".join(f"{k} {ms:g}" for k, ms in t.items()) or "none" for t in v.get("slowest_server_timing", [])
            )
            print(
                f"      in fleetup's router (Server-Timing app): p50 {f(v['p50_app_ms'])} / p99 {f(v['p99_app_ms'])} ms; "
                f"the slowest answers' own timings, ms: {shown}"
            )
            print(
                f"      the answer's head came after (p50) {f(v.get('p50_head_ms'))} ms; the slowest answers' heads, ms: "
                f"{v.get('slowest_head_ms')}"
            )
    steps = r["steps"]
    if steps:
        order = ["connect", "facts", "file_present", "free_space", "copy", "verify_md5", "set_boot", "save",
                 "reload", "wait_back", "post_check"]
        shown = ", ".join(f"{s} {statistics.mean(steps[s]):.2f}" for s in order if s in steps)
        print(f"    mean step seconds: {shown}")
    if r["job_secs"]:
        copy = statistics.mean(steps.get("copy", [0]))
        print(
            f"    device job: mean {statistics.mean(r['job_secs']):.1f} s, max {max(r['job_secs']):.1f} s "
            f"(simulated: {image_bytes / a.lab_rate:.2f} s copy at the lab's rate + {a.boot_time:g} s boot; "
            f"measured copy step {copy:.2f} s)"
        )
    if r["first_job_after"] is not None:
        print(f"    the first device job (the canary) started {r['first_job_after']:.1f} s after the rollout")
    probe = r["probe"]
    if probe.get("taskstats_error") or probe.get("taskstats_overflows"):
        print(f"    thread exits: {probe.get('taskstats_error') or ''} {probe.get('taskstats_overflows')} buffer overflows")
