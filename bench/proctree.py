#!/usr/bin/env python3
"""CPU time and memory of a server's whole process tree, for bench/wan.sh.

  proctree.py cpu PID           CPU seconds of PID and every descendant, live or reaped
  proctree.py reset PID         reset VmHWM (peak RSS) of every process in the tree
  proctree.py sample PID FILE   until killed, every 0.1 s: write to FILE the peak, in MiB, of
                                the tree's summed VmRSS (never below the sum of the live
                                processes' VmHWM)

CPU: the sum over the tree of utime + stime + cutime + cstime from /proc/PID/stat. A process's
own fields cover all its threads; cutime/cstime hold the children it has reaped (and theirs),
so a forking server's finished per-connection children still count, and a live child is
counted once, by itself. Works for single-process servers (fleetup, nginx's workers are live
children) and forking ones (vsftpd, sshd, tftpd-hpa) alike.
"""

import os
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state): utime is field 14, cstime field 17.
        total += sum(int(fields[i]) for i in range(11, 15))
    return total / TICK


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset(pid):
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def sample(pid, path):
    peak = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    def write(kb):
        with open(path + ".tmp", "w") as f:
            f.write(f"{kb / 1024:.1f}\n")
        os.replace(path + ".tmp", path)

    write(0)
    while not stop:
        procs = tree(pid)
        rss = sum(status_kb(p, "VmRSS:") for p in procs)
        hwm = sum(status_kb(p, "VmHWM:") for p in procs)
        if max(rss, hwm) > peak:
            peak = max(rss, hwm)
            write(peak)
        time.sleep(0.1)


def main():
    cmd, pid = sys.argv[1], int(sys.argv[2])
    if cmd == "cpu":
        print(f"{cpu(pid):.2f}")
    elif cmd == "reset":
        reset(pid)
    elif cmd == "sample":
        sample(pid, sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
