#!/usr/bin/env python3
"""Build the seed corpus under fuzz/corpus/<target>/ from real inputs.

- fuzz/captures/tftp/: every datagram of real transfers between tftp-hpa, atftp and curl and
  fleetup's TFTP server, in order (NNNNN-c.bin from the client, NNNNN-s.bin from the server),
  recorded through a UDP relay;
- fuzz/captures/ftp/: what curl and lftp sent on the control connection to fleetup's FTP
  server (user fleetup, password fuzz-Pa55word, as the ftp_session target expects);
- fuzz/captures/http/: the request heads curl and wget sent for downloads, resumes, ranges and
  HEAD (the token is replaced by TOKEN, the one the http_request target treats as live);
- playbooks/, inventory/ and the examples of docs/.

Run from the repository root: python3 fuzz/make-seeds.py
"""

import hashlib
import json
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPTURES = os.path.join(ROOT, "fuzz", "captures")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, items):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    seen = set()
    for data in items:
        h = hashlib.sha1(data).hexdigest()[:16]
        if h in seen:
            continue
        seen.add(h)
        with open(os.path.join(d, h), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seen)} seeds")


def read(path):
    with open(path, "rb") as f:
        return f.read()


# --- TFTP ---------------------------------------------------------------------------------
datagrams = []
for name in sorted(os.listdir(os.path.join(CAPTURES, "tftp"))):
    datagrams.append((name.split("-")[1][0], read(os.path.join(CAPTURES, "tftp", name))))

# Split into flows: a flow starts with a request from the client.
flows = []
for side, d in datagrams:
    if side == "c" and d[:2] in (b"\x00\x01", b"\x00\x02"):
        flows.append([])
    flows[-1].append((side, d))

# The packets themselves; DATA blocks cut short so the corpus stays small.
write("tftp_packet", [d if d[:2] != b"\x00\x03" else d[:64] for _, d in datagrams])

# Limits for the session target: max_blksize 8+x%2048, max_windowsize, max_window_bytes,
# timeout, retries, max_stall.
LIMITS = struct.pack(">HBHBBB", 1460, 7, 8192, 9, 4, 29)
IMAGE_LEN = 3000  # the size of the image the captures downloaded


def raw(d):
    return bytes([2]) + struct.pack(">H", len(d)) + d


sessions = []
for flow in flows:
    request = flow[0][1]
    head = LIMITS + bytes([len(request)]) + request
    if request[:2] == b"\x00\x01":
        # The server's side: the client's answers, with a timeout now and then.
        events = b""
        for i, (side, d) in enumerate(flow[1:]):
            if side == "c":
                events += raw(d)
                if i % 5 == 4:
                    events += b"\x00"
        sessions.append(bytes([0]) + head + struct.pack(">H", IMAGE_LEN) + events)
        # The client's side: the server's datagrams (blksize and windowsize as asked).
        opts = dict(re.findall(rb"(blksize|windowsize|tsize)\x00(\d+)\x00", request))
        blk = int(opts.get(b"blksize", b"0"))
        win = int(opts.get(b"windowsize", b"0"))
        events = b"".join(raw(d) for side, d in flow[1:] if side == "s")
        sessions.append(
            bytes([2]) + head + struct.pack(">H", 0) + struct.pack(">HBB", blk, win, b"tsize" in opts) + events
        )
    else:
        # An upload: the real WRQ, then two blocks, then the store step.
        events = raw(struct.pack(">HH", 3, 1) + bytes(512)) + raw(struct.pack(">HH", 3, 2) + bytes(100))
        sessions.append(bytes([1]) + head + struct.pack(">H", 4096) + events + b"\x07\x01")
        sessions.append(bytes([1]) + head + struct.pack(">H", 4096) + events + b"\x07\x00")
write("tftp_session", sessions)

# --- FTP ----------------------------------------------------------------------------------
ftp_sessions = [read(os.path.join(CAPTURES, "ftp", n)) for n in sorted(os.listdir(os.path.join(CAPTURES, "ftp")))]
lines = [l for s in ftp_sessions for l in s.splitlines(keepends=True)]
lines += [b"\xff\xf4\xff\xf2ABOR\r\n", b"\xff\xf4\xffABOR\r\n", b"PORT 127,0,0,1,4,1\r\n", b"EPRT |2|::1|6446|\r\n"]
write("ftp_command", lines)
write("ftp_session", ftp_sessions)

# --- Image paths: a mode byte (0 file servers, 1 upload field, 2 upload file name, 3 dashboard)
names = set()
for _, d in datagrams:
    if d[:2] in (b"\x00\x01", b"\x00\x02"):
        names.add(d[2:].split(b"\x00")[0])
for l in lines:
    m = re.match(rb"(?i)(RETR|SIZE|MDTM|MLST|CWD|STOR) (.*?)\r?\n", l)
    if m:
        names.add(m.group(2))
names |= {b"/c2960x-universalk9-mz.152-7.E8.bin", b"escape.bin", b".incoming/0123.part", b"..\\x.bin"}
paths = []
for n in sorted(names):
    for mode in range(3):
        paths.append(bytes([mode]) + n)
for p in [b"index.html", b"/", b"app.js", b"../Cargo.toml", b"rollouts/abc", b"%2e%2e/Cargo.toml"]:
    paths.append(b"\x03" + p)
write("image_path", paths)

# --- HTTP request heads ------------------------------------------------------------------
heads = [
    re.sub(rb"/j/[a-z0-9]+/", b"/j/TOKEN/", read(os.path.join(CAPTURES, "http", n)))
    for n in sorted(os.listdir(os.path.join(CAPTURES, "http")))
]
first = heads[0]
for target in [b"/j/TOKEN/../escape.bin", b"/j/TOKEN/%2e%2e%2fx", b"/j/TOKEN/escape.bin",
               b"/j/TOKEN/partial.bin", b"//etc/passwd", b"/j/TOKEN/x%00.bin", b"/j/TOKEN/nxos.9.3.8.bin"]:
    heads.append(first.replace(b"/j/TOKEN/c2960x-universalk9-mz.152-7.E8.bin", target))
for field in [b"Range: bytes=0-1,5-6\r\n", b"Range: bytes=-10\r\n", b"Range: bytes=1500-\r\n",
              b"Range: bytes=5-\r\nIf-Range: \"x\"\r\n", b"Content-Length: 3\r\n"]:
    heads.append(first.replace(b"Accept: */*\r\n", b"Accept: */*\r\n" + field))
heads.append(first.replace(b"GET ", b"DELETE ", 1))
write("http_request", heads)

# --- Playbooks ----------------------------------------------------------------------------
books = [read(os.path.join(ROOT, "playbooks", n)) for n in sorted(os.listdir(os.path.join(ROOT, "playbooks")))]
doc = read(os.path.join(ROOT, "docs", "playbooks.md")).decode()
books += [b.encode() for b in re.findall(r"```yaml\n(.*?)```", doc, re.S)]
# JSON is read as YAML: the first example in JSON form.
books.append(
    json.dumps(
        {
            "name": "json-playbook",
            "targets": {"groups": ["access"]},
            "image": {"ios": "c2960x-universalk9-mz.152-7.E8.bin"},
            "strategy": {"canary": 1, "waves": ["25%", "100%"], "max_failures": 2},
            "schedule": {"windows": ["Mon-Fri 01:00-05:00 Europe/Berlin"]},
        }
    ).encode()
)
write("playbook", books)

# --- Inventories --------------------------------------------------------------------------
inv = [read(os.path.join(ROOT, "inventory", n)) for n in sorted(os.listdir(os.path.join(ROOT, "inventory")))]
api = read(os.path.join(ROOT, "docs", "api.md")).decode()
inv += [m.encode() for m in re.findall(r"-d '(\{.*?\})'", api, re.S)]
inv.append(
    b'{"name":"core-1","host":"10.0.0.1","port":2222,"platform":"nxos","tags":["dc","dc"],'
    b'"username":"admin","password":"cisco","enable_secret_env":"ENABLE"}'
)
write("inventory", inv)
