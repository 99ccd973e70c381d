#!/usr/bin/env python3
"""CPU by thread name, peak memory and SQLite commits of bench/scale.sh's processes over one
window (from its start until SIGTERM or SIGINT).

  scale_probe.py --out FILE [--proc NAME=PID]... [--tree NAME=PID]... [--sqlite-bin BIN]

Prints `ready` on stdout once the baseline is taken; on SIGTERM writes FILE (JSON) and exits.

--proc NAME=PID: one process (a fleetup serve node or agent). Its CPU over the window is the
  delta of utime + stime + cutime + cstime in /proc/PID/stat (every thread, live or gone, and
  reaped children). The same CPU split by thread name: live threads from
  /proc/PID/task/TID/schedstat (run time in ns) at both ends of the window; threads that ended
  inside it (fleetup's TFTP server runs each transfer on a thread of its own, named
  `tftp-transfer`, that ends with it) from the kernel's taskstats exit records (netlink,
  TASKSTATS_CMD_ATTR_REGISTER_CPUMASK), which carry the thread's name, its process (ac_tgid)
  and its whole run time. What neither source explains (records lost to a full socket buffer)
  is `unattributed_s`. Peak RSS: VmHWM of /proc/PID/status at the end.
--tree NAME=PID: a process and all its descendants (the lab, PostgreSQL's postmaster and its
  backends): summed CPU as above, and the summed VmHWM and VmRSS at the end (PostgreSQL's
  shared buffers count once per backend there).
--sqlite-bin BIN: count SQLite write transactions (commits that wrote WAL frames) of every
  process running BIN with a uprobe on `sqlite3WalDefaultHook`: SQLite calls that hook once
  after each such commit (it is the WAL auto-checkpoint hook, installed on every connection
  by default). perf_event_open with the uprobe PMU, counting only, one event per CPU; no
  tracefs, no strace, about a microsecond per hit.
"""

import argparse
import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- /proc readers


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def stat_fields(path):
    s = read(path)
    if s is None:
        return None
    # fields[0] is field 3 (state); the command name may hold spaces and parentheses.
    return s[s.rindex(")") + 2 :].split()


def proc_cpu_s(pid):
    """utime + stime + cutime + cstime of a process, seconds."""
    f = stat_fields(f"/proc/{pid}/stat")
    return None if f is None else sum(int(f[i]) for i in range(11, 15)) / TICK


def status_kib(pid, key):
    s = read(f"/proc/{pid}/status")
    for line in (s or "").splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def threads(pid):
    """{tid: (name, run time in ns)} of a process's live threads."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        name = (read(f"/proc/{pid}/task/{tid}/comm") or "?").strip()
        run = read(f"/proc/{pid}/task/{tid}/schedstat")
        if run is None:
            continue
        out[int(tid)] = (name, int(run.split()[0]))
    return out


def tree(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = stat_fields(f"/proc/{d}/stat")
            if f is not None:
                kids.setdefault(int(f[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_cpu_s(pid):
    # A live child counts by itself; a reaped one in its parent's cutime/cstime.
    return sum(proc_cpu_s(p) or 0.0 for p in tree(pid))


# ---------------------------------------------------------------- taskstats (thread exits)

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
TASKSTATS_CMD_GET = 1
TASKSTATS_CMD_ATTR_REGISTER_CPUMASK = 3
TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK = 4
TASKSTATS_TYPE_PID = 1
TASKSTATS_TYPE_STATS = 3
TASKSTATS_TYPE_AGGR_PID = 4
NLMSG_ERROR = 2
NLM_F_REQUEST = 1

# Offsets in struct taskstats (linux/taskstats.h; every version since 12 has ac_tgid here).
TS_VERSION = 0
TS_CPU_RUN_REAL_TOTAL = 64
TS_COMM = 80
TS_PID = 128
TS_TGID = 368
TS_MIN_VERSION = 12


def attrs(buf):
    """(type, payload) of a run of netlink attributes."""
    i = 0
    while i + 4 <= len(buf):
        ln, ty = struct.unpack_from("HH", buf, i)
        if ln < 4:
            break
        yield ty & 0x3FFF, buf[i + 4 : i + ln]
        i += (ln + 3) & ~3


def attr(ty, payload):
    ln = 4 + len(payload)
    return struct.pack("HH", ln, ty) + payload + b"\0" * (((ln + 3) & ~3) - ln)


def genl_msg(family, cmd, payload, seq):
    body = struct.pack("BBH", cmd, 1, 0) + payload
    return struct.pack("IHHII", 16 + len(body), family, NLM_F_REQUEST, seq, 0) + body


class ThreadExits:
    """Exit records of the watched processes' threads: {tgid: {tid: (name, run ns)}}."""

    def __init__(self, tgids):
        self.tgids = set(tgids)
        self.exits = {t: {} for t in self.tgids}
        self.lost = 0
        self.error = None
        self.stop = False
        self.cpus = (read("/sys/devices/system/cpu/possible") or "0").strip()
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
            self.sock.bind((0, 0))
            self.family = self._family()
            self._send(TASKSTATS_CMD_ATTR_REGISTER_CPUMASK)
            self.sock.settimeout(0.2)
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        except OSError as e:
            self.error = f"taskstats: {e}"
            self.thread = None

    def _family(self):
        self.sock.sendall(
            genl_msg(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, attr(CTRL_ATTR_FAMILY_NAME, b"TASKSTATS\0"), 1)
        )
        data = self.sock.recv(65536)
        ty = struct.unpack_from("H", data, 4)[0]
        if ty == NLMSG_ERROR:
            raise OSError(-struct.unpack_from("i", data, 16)[0], "no TASKSTATS netlink family")
        for a, p in attrs(data[20:]):
            if a == CTRL_ATTR_FAMILY_ID:
                return struct.unpack_from("H", p)[0]
        raise OSError("no TASKSTATS netlink family")

    def _send(self, what):
        self.sock.sendall(genl_msg(self.family, TASKSTATS_CMD_GET, attr(what, self.cpus.encode() + b"\0"), 2))

    def _run(self):
        while not self.stop:
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError as e:
                if e.errno == 105:  # ENOBUFS: records dropped
                    self.lost += 1
                    continue
                self.error = f"taskstats: {e}"
                return
            self._parse(data)

    def _parse(self, data):
        i = 0
        while i + 16 <= len(data):
            ln, ty = struct.unpack_from("IH", data, i)
            if ln < 16:
                return
            if ty == self.family:
                for a, nested in attrs(data[i + 20 : i + ln]):
                    if a != TASKSTATS_TYPE_AGGR_PID:
                        continue
                    for b, p in attrs(nested):
                        if b == TASKSTATS_TYPE_STATS and len(p) >= TS_TGID + 4:
                            self._record(p)
            i += (ln + 3) & ~3

    def _record(self, p):
        version = struct.unpack_from("H", p, TS_VERSION)[0]
        if version < TS_MIN_VERSION:
            self.error = f"taskstats version {version} has no ac_tgid"
            return
        tgid = struct.unpack_from("I", p, TS_TGID)[0]
        if tgid not in self.tgids:
            return
        tid = struct.unpack_from("I", p, TS_PID)[0]
        name = p[TS_COMM : TS_COMM + 32].split(b"\0")[0].decode(errors="replace")
        run = struct.unpack_from("Q", p, TS_CPU_RUN_REAL_TOTAL)[0]
        self.exits[tgid][tid] = (name, run)

    def close(self):
        if self.thread is None:
            return
        time.sleep(0.3)  # records of threads that ended just now
        self.stop = True
        self.thread.join()
        try:
            self._send(TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK)
        except OSError:
            pass
        self.sock.close()


# ------------------------------------------------------------------ uprobe counter (SQLite)

PERF_FLAG_FD_CLOEXEC = 8
SYS_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}


def file_offset(binary, symbol):
    """File offset of a symbol's code, for a uprobe."""
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True)
    addr = None
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == symbol:
            addr = int(parts[0], 16)
            break
    if addr is None:
        raise OSError(f"no symbol {symbol} in {binary}")
    with open(binary, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            raise OSError(f"{binary} is not a 64-bit ELF file")
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
        if p_type == 1 and p_vaddr <= addr < p_vaddr + p_filesz:
            return addr - p_vaddr + p_offset
    raise OSError(f"{symbol} of {binary} lies in no loadable segment")


class UprobeCounter:
    def __init__(self, binary, symbol):
        self.fds = []
        self.error = None
        self.path = ctypes.create_string_buffer(os.path.realpath(binary).encode())
        try:
            nr = SYS_PERF_EVENT_OPEN[os.uname().machine]
            pmu = int(read("/sys/bus/event_source/devices/uprobe/type") or "x")
            offset = file_offset(binary, symbol)
            libc = ctypes.CDLL(None, use_errno=True)
            cpus = os.cpu_count() or 1
            for cpu in range(cpus):
                a = ctypes.create_string_buffer(128)
                struct.pack_into("IIQ", a, 0, pmu, 128, 0)  # type, size, config
                struct.pack_into("QQ", a, 56, ctypes.addressof(self.path), offset)  # uprobe_path, probe_offset
                fd = libc.syscall(nr, a, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
                if fd < 0:
                    raise OSError(ctypes.get_errno(), f"perf_event_open(uprobe {symbol}, cpu {cpu})")
                self.fds.append(fd)
        except (OSError, KeyError, ValueError, subprocess.CalledProcessError) as e:
            self.error = f"uprobe: {e}"
            self.close()

    def count(self):
        if not self.fds:
            return None
        return sum(struct.unpack("Q", os.read(fd, 8))[0] for fd in self.fds)

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []


# ----------------------------------------------------------------------------------- main


def named(values):
    out = {}
    for v in values:
        name, _, pid = v.partition("=")
        out[name] = int(pid)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--proc", action="append", default=[])
    p.add_argument("--tree", action="append", default=[])
    p.add_argument("--sqlite-bin")
    a = p.parse_args()
    procs, trees = named(a.proc), named(a.tree)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    exits = ThreadExits(procs.values())
    counter = UprobeCounter(a.sqlite_bin, "sqlite3WalDefaultHook") if a.sqlite_bin else None
    start = time.monotonic()
    base = {
        n: {"cpu": proc_cpu_s(pid), "threads": threads(pid)} for n, pid in procs.items()
    }
    tree_base = {n: tree_cpu_s(pid) for n, pid in trees.items()}
    commits_base = counter.count() if counter else None
    print("ready", flush=True)
    stop.wait()

    end = {n: {"cpu": proc_cpu_s(pid), "threads": threads(pid)} for n, pid in procs.items()}
    commits_end = counter.count() if counter else None
    seconds = time.monotonic() - start
    exits.close()

    out = {"seconds": round(seconds, 3), "procs": {}, "trees": {}}
    for n, pid in procs.items():
        b, e = base[n], end[n]
        by_name = {}
        gone = exits.exits.get(pid, {})
        for tid in set(b["threads"]) | set(e["threads"]) | set(gone):
            if tid in e["threads"]:
                name, ns = e["threads"][tid]
            elif tid in gone:
                name, ns = gone[tid]
            else:
                continue  # ended inside the window, but its record was lost
            ns -= b["threads"].get(tid, (name, 0))[1]
            by_name[name] = by_name.get(name, 0) + ns
        cpu = None if b["cpu"] is None or e["cpu"] is None else e["cpu"] - b["cpu"]
        split = sum(by_name.values()) / 1e9
        out["procs"][n] = {
            "pid": pid,
            "cpu_s": cpu,
            "threads": {k: round(v / 1e9, 3) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])},
            "thread_exits": len(gone),
            "unattributed_s": None if cpu is None else round(cpu - split, 3),
            "vmhwm_kib": status_kib(pid, "VmHWM:"),
            "vmrss_kib": status_kib(pid, "VmRSS:"),
        }
    for n, pid in trees.items():
        members = tree(pid)
        out["trees"][n] = {
            "pid": pid,
            "processes": len(members),
            "cpu_s": round(tree_cpu_s(pid) - tree_base[n], 3),
            "vmhwm_kib_sum": sum(status_kib(m, "VmHWM:") for m in members),
            "vmrss_kib_sum": sum(status_kib(m, "VmRSS:") for m in members),
        }
    out["taskstats_error"] = exits.error
    out["taskstats_overflows"] = exits.lost
    if counter:
        out["sqlite_commits"] = None if commits_base is None else commits_end - commits_base
        out["sqlite_error"] = counter.error
        counter.close()
    self_cpu = os.times()
    out["probe_cpu_s"] = round(self_cpu.user + self_cpu.system, 3)
    with open(a.out + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    sys.exit(main())
