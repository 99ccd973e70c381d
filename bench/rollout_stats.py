#!/usr/bin/env python3
"""Figures of one bench/rollout.sh run: reads the `fleetup run --json` output, the rollout's
report (GET /api/v1/rollouts/ID/report), the database (read-only) and serve's pwrite64 trace; prints a table."""

import argparse
import json
import re
import sqlite3
import statistics
import sys

p = argparse.ArgumentParser()
p.add_argument("--run", required=True)
p.add_argument("--run-rc", type=int, required=True)
p.add_argument("--report", required=True)
p.add_argument("--db", required=True)
p.add_argument("--lab", required=True)
p.add_argument("--pwrite-trace", required=True)
p.add_argument("--from-epoch", type=float, required=True)
p.add_argument("--to-epoch", type=float, required=True)
p.add_argument("--wall", type=float, required=True)
p.add_argument("--boot-time", type=float, required=True)
p.add_argument("--devices", type=int, required=True)
p.add_argument("--concurrency", type=int, required=True)
p.add_argument("--image-mb", type=int, required=True)
p.add_argument("--serve-cpu", type=float, required=True)
p.add_argument("--serve-cpu-total", type=float, required=True)
p.add_argument("--lab-cpu", type=float, required=True)
p.add_argument("--serve-rss-mib", type=float, required=True)
p.add_argument("--while-reloading", default="silent")
a = p.parse_args()

lines = [json.loads(l) for l in open(a.run) if l.strip()]
if not lines:
    sys.exit("bench: `fleetup run --json` printed nothing")
last = lines[-1]
rid = last["rollout"]

report = json.load(open(a.report))
devices = report["devices"]
n = len(devices)

lab = json.load(open(a.lab))
lab_devices = lab["devices"] if isinstance(lab, dict) else lab
on_target = sum(1 for d in lab_devices if d.get("version") == "15.2(7)E8")
reloads = sum(int(d.get("reload_count", 0)) for d in lab_devices)


def ts(s):
    # RFC 3339 with nanoseconds; keep microseconds for datetime.
    from datetime import datetime

    m = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-].*)$", s)
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + tz).timestamp()


step_secs = {}
for d in devices:
    for s in d["steps"]:
        if s.get("seconds") is not None:
            step_secs.setdefault(s["step"], []).append(s["seconds"])
job_secs = [d["seconds"] for d in devices if d.get("seconds") is not None]
copy_total = sum(step_secs.get("copy", []))
boot_total = a.boot_time * reloads
simulated = copy_total + boot_total
job_total = sum(job_secs)

# The canary runs alone; the rest share `concurrency` slots. Ideal wall time if orchestration
# cost nothing: the canary's simulated delays, then the others' spread over the slots.
canary = min(devices, key=lambda d: (d["wave"], d.get("started_at") or ""))
canary_copy = sum(s["seconds"] or 0 for s in canary["steps"] if s["step"] == "copy")
ideal = canary_copy + a.boot_time + (simulated - canary_copy - a.boot_time) / a.concurrency
rollout_span = ts(report["finished_at"]) - ts(report["started_at"])

con = sqlite3.connect(f"file:{a.db}?mode=ro", uri=True)
events = con.execute(
    "SELECT count(*) FROM rollout_events WHERE rollout_id = ?", (rid,)
).fetchone()[0]
dev_events = con.execute(
    "SELECT count(*) FROM rollout_events WHERE rollout_id = ? AND device IS NOT NULL", (rid,)
).fetchone()[0]
step_events = con.execute(
    "SELECT count(*) FROM rollout_events WHERE rollout_id = ? AND kind IN ('step_started', 'step_done')",
    (rid,),
).fetchone()[0]
con.close()

# WAL commits: SQLite writes each WAL frame as a 24-byte header then the page; the header's
# bytes 4..8 are the database size after the commit for a commit frame, zero otherwise.
commits = frames = main_writes = None
try:
    trace = open(a.pwrite_trace).read().splitlines()
    commits = frames = main_writes = 0
    # strace -xx escapes the file name as well as the data.
    call = re.compile(r'pwrite64\(\d+<((?:\\x[0-9a-f]{2})*)>, "((?:\\x[0-9a-f]{2})*)"\.*, (\d+), ')

    def unhex(t):
        return bytes(int(h, 16) for h in t.split("\\x")[1:])

    for l in trace:
        # Only the writes made while `fleetup run` ran (strace -ttt: epoch seconds after the pid).
        at = l.split(None, 2)
        if len(at) < 3 or not a.from_epoch <= float(at[1]) <= a.to_epoch:
            continue
        m = call.search(l)
        if not m:
            continue
        path = unhex(m.group(1)).decode(errors="replace")
        if path.endswith("fleetup.db-wal") and m.group(3) == "24":
            b = unhex(m.group(2))
            frames += 1
            if len(b) >= 8 and int.from_bytes(b[4:8], "big") != 0:
                commits += 1
        elif path.endswith("fleetup.db"):
            main_writes += 1
except FileNotFoundError:
    pass

rows = [
    ("devices (upgraded / in report / lab on target)", f"{sum(1 for d in devices if d['result'] == 'succeeded')} / {n} / {on_target}"),
    ("final line", json.dumps(last)),
    ("fleetup run exit code", a.run_rc),
    ("image", f"{a.image_mb} MiB over TFTP, loopback"),
    ("concurrency / boot time", f"{a.concurrency} / {a.boot_time} s"),
    ("wall time of `fleetup run` (s)", f"{a.wall:.1f}"),
    ("rollout started -> finished (s)", f"{rollout_span:.1f}"),
    ("sum of transfer times (s)", f"{copy_total:.1f}"),
    ("sum of boot times (s)", f"{boot_total:.1f}"),
    ("sum of simulated delays (s)", f"{simulated:.1f}"),
    ("ideal wall from delays alone (s)", f"{ideal:.1f}"),
    ("sum of device job times (s)", f"{job_total:.1f}"),
    ("overhead per device, job time - delays (s)", f"{(job_total - simulated) / n:.2f}"),
    ("overhead per device, (wall - ideal) * conc / N (s)", f"{(a.wall - ideal) * a.concurrency / n:.2f}"),
    ("job time per device: median / max (s)", f"{statistics.median(job_secs):.2f} / {max(job_secs):.2f}"),
    ("serve peak RSS, VmHWM (MiB)", f"{a.serve_rss_mib:.1f}"),
    ("serve CPU during run / since start (s)", f"{a.serve_cpu:.2f} / {a.serve_cpu_total:.2f}"),
    ("serve CPU per device (ms)", f"{a.serve_cpu / n * 1000:.1f}"),
    ("lab CPU during run (s)", f"{a.lab_cpu:.2f}"),
    ("rollout_events rows (per device)", f"{events} ({events / n:.1f})"),
    ("  of them step_started/step_done (per device)", f"{step_events} ({step_events / n:.1f})"),
]
if commits is not None:
    rows += [
        ("SQLite write transactions, WAL commits (per device)", f"{commits} ({commits / n:.1f})"),
        ("WAL frames written (per device)", f"{frames} ({frames / n:.1f})"),
        ("checkpoint page writes to fleetup.db", main_writes),
    ]

# Reload detection: from a device answering SSH again (the lab's `up_since`) to fleetup
# knowing it (the end of its `wait_back` step: logged in and `show version` read).
up_since = {d["name"]: d.get("up_since") for d in lab_devices}
detect = []
for d in devices:
    back = next((s.get("finished_at") for s in d["steps"] if s["step"] == "wait_back"), None)
    up = up_since.get(d["device"])
    if back and up:
        detect.append(ts(back) - ts(up))
if detect:
    detect.sort()
    p90 = detect[min(len(detect) - 1, int(0.9 * len(detect)))]
    rows.append((
        f"reload detection, device answers -> fleetup knows ({a.while_reloading}): median / p90 / max (s)",
        f"{statistics.median(detect):.2f} / {p90:.2f} / {max(detect):.2f} (n={len(detect)})",
    ))

w = max(len(r[0]) for r in rows)
print()
print(f"{'metric':<{w}}  value")
print(f"{'-' * w}  {'-' * 30}")
for k, v in rows:
    print(f"{k:<{w}}  {v}")
print()
order = ["connect", "facts", "file_present", "free_space", "copy", "verify_md5", "set_boot",
         "save", "reload", "wait_back", "post_check", "cleanup"]
steps = sorted(step_secs, key=lambda s: order.index(s) if s in order else 99)
print(f"{'step':<14} {'n':>5} {'mean s':>8} {'median s':>9} {'max s':>8} {'sum s':>9}")
for s in steps:
    v = step_secs[s]
    print(f"{s:<14} {len(v):>5} {statistics.mean(v):>8.3f} {statistics.median(v):>9.3f} {max(v):>8.3f} {sum(v):>9.1f}")
