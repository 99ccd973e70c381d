#!/usr/bin/env python3
"""Dashboard-like pollers for bench/scale.sh: until SIGTERM, each of N clients per target asks
for the target's URL at a fixed rate on a keep-alive connection of its own, and the latencies
are written to FILE (JSON) at the end.

  scale_poller.py --out FILE --token T [--clients 2] [--rate 1] --target NAME=URL ...
                  [--mirror NAME=PATH]

--mirror keeps a copy of target NAME's latest answer at PATH (written whole, then renamed in
place, at most every MIRROR_EVERY seconds), for nginx to serve as a target of its own: the same
bytes, with no work behind them, under the same load (bench/scale.sh's floor). A request's
latency ends when its body is read, before that copy is written.

As bench/poller.rs (which bench/poll.sh builds with cargo): open loop, client i of a target
starts at i/N of the first period and keeps its own schedule; latency counts from the moment
a request was due, so a request that waited for the previous answer counts its wait; a client
more than a period behind skips the requests it missed. A Python client adds well under a
millisecond per request on loopback; the percentiles are an upper bound of the server's.
"""

import argparse
import http.client
import json
import os
import signal
import threading
import time
import urllib.parse

MIRROR_EVERY = 2.0


def server_timing(headers):
    """fleetup's `Server-Timing` metrics of one answer: {name: ms}, every header merged."""
    out = {}
    for k, v in headers:
        if k.lower() != "server-timing":
            continue
        for metric in v.split(","):
            name, _, params = metric.strip().partition(";")
            for param in params.split(";"):
                key, _, value = param.strip().partition("=")
                if key == "dur":
                    try:
                        out[name] = round(float(value), 2)
                    except ValueError:
                        pass
    return out


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), -(-len(sorted_values) * p // 100)))
    return sorted_values[int(rank) - 1]


class Client(threading.Thread):
    def __init__(self, url, token, period, offset, stop, mirror=None):
        super().__init__(daemon=True)
        self.mirror, self.mirrored_at = mirror, None
        self.url = urllib.parse.urlsplit(url)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.period, self.offset, self.stop = period, offset, stop
        self.samples = []  # (due, latency s, bytes, Server-Timing, head s)
        self.head_at = None
        self.done_at = None
        self.failures = 0
        self.first_failure = None
        self.conn = None

    def get(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=30)
        path = self.url.path + (f"?{self.url.query}" if self.url.query else "")
        self.conn.request("GET", path, headers=self.headers)
        r = self.conn.getresponse()
        self.head_at = time.monotonic()
        body = r.read()
        # The answer is in: the copy for --mirror below is this harness's own work, and its
        # write of megabytes must not count in the server's latency.
        self.done_at = time.monotonic()
        if r.status != 200:
            raise OSError(f"HTTP {r.status}: {body[:200]!r}")
        if self.mirror and (self.mirrored_at is None or time.monotonic() - self.mirrored_at >= MIRROR_EVERY):
            self.mirrored_at = time.monotonic()
            with open(self.mirror + ".tmp", "wb") as f:
                f.write(body)
            os.replace(self.mirror + ".tmp", self.mirror)
        return len(body), server_timing(r.getheaders())

    def run(self):
        due = time.monotonic() + self.offset
        while not self.stop.is_set():
            wait = due - time.monotonic()
            if wait > 0 and self.stop.wait(wait):
                break
            try:
                n, timing = self.get()
                self.samples.append((due, self.done_at - due, n, timing, self.head_at - due))
            except (OSError, http.client.HTTPException) as e:
                self.failures += 1
                self.first_failure = self.first_failure or str(e)
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
            due += self.period
            now = time.monotonic()
            while due + self.period < now:
                due += self.period


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--target", action="append", required=True)
    p.add_argument("--mirror", action="append", default=[])
    a = p.parse_args()
    mirrors = dict(m.partition("=")[::2] for m in a.mirror)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    period = 1.0 / a.rate
    targets = {}
    for j, t in enumerate(a.target):
        name, _, url = t.partition("=")
        # Spread every client of every target evenly over the period.
        targets[name] = [
            Client(url, a.token, period, 0.05 + period * (i + j / len(a.target)) / a.clients, stop,
                   mirrors.get(name) if i == 0 else None)
            for i in range(a.clients)
        ]
    start = time.monotonic()
    for clients in targets.values():
        for c in clients:
            c.start()
    stop.wait()
    for clients in targets.values():
        for c in clients:
            c.join(timeout=35)
    out = {"seconds": round(time.monotonic() - start, 3), "clients": a.clients, "rate_per_client": a.rate, "routes": {}}
    for name, clients in targets.items():
        samples = [s for c in clients for s in c.samples]
        lat = sorted(s[1] * 1000 for s in samples)
        ms = lambda v: None if v is None else round(v, 2)
        slowest = sorted(samples, key=lambda s: -s[1])[:5]
        out["routes"][name] = {
            "url": clients[0].url.geturl(),
            "requests": len(samples),
            "failures": sum(c.failures for c in clients),
            "first_failure": next((c.first_failure for c in clients if c.first_failure), None),
            "mean_bytes": sum(s[2] for s in samples) // len(samples) if samples else 0,
            "max_bytes": max((s[2] for s in samples), default=0),
            "p50_ms": ms(percentile(lat, 50)),
            "p90_ms": ms(percentile(lat, 90)),
            "p99_ms": ms(percentile(lat, 99)),
            "max_ms": ms(lat[-1] if lat else None),
            # When the slowest requests were due, seconds after the pollers started.
            "slowest_at_s": [round(s[0] - start, 1) for s in slowest],
            # fleetup's own account of those answers (Server-Timing, ms): `app` is the time in
            # its router; the rest of the latency was spent outside it (queues, scheduler).
            "slowest_server_timing": [s[3] for s in slowest],
            # When their answer's head had come (ms after it was due); the rest is the body's
            # bytes reaching this client.
            "slowest_head_ms": [ms(s[4] * 1000) for s in slowest],
            "p50_head_ms": ms(percentile(sorted(s[4] * 1000 for s in samples), 50)),
            "p50_app_ms": ms(percentile(sorted(s[3].get("app", 0) for s in samples), 50)),
            "p99_app_ms": ms(percentile(sorted(s[3].get("app", 0) for s in samples), 99)),
        }
    with open(a.out + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
