#!/usr/bin/env bash
# Benchmark fleetup's TFTP server against tftpd-hpa and atftpd on loopback.
#
# The same file (256 MB by default) is downloaded from each server by curl (blksize 512, 1468,
# 8192) and atftp (blksize 1468 and 8192, windowsize 16); each cell is the median of RUNS runs.
# Then CONCURRENT curl clients download it at once: total time and peak RSS of the server
# (summed over its processes, since tftpd-hpa forks one per transfer).
#
# Peers: tftpd-hpa and atftpd conflict as Debian packages, so tftpd-hpa is only unpacked
# (apt-get download + dpkg -x into PEERS_DIR); atftpd is installed (apt-get install atftpd).
# A run slower than RUN_TIMEOUT seconds is cut off and shown as ">N"; the remaining runs of
# that cell are skipped.
#
# Usage: bench/tftp.sh   (env: SIZE_MB=256 RUNS=5 RUN_TIMEOUT=120 CONCURRENT=50 CONCURRENT_BLKSIZE=8192)
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${SIZE_MB:-256}
RUNS=${RUNS:-5}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
CONCURRENT=${CONCURRENT:-50}
CONCURRENT_BLKSIZE=${CONCURRENT_BLKSIZE:-8192}
PEERS_DIR=${PEERS_DIR:-/tmp/fleetup-bench-peers}

for tool in curl atftp md5sum ss python3; do
  command -v "$tool" >/dev/null || { echo "bench/tftp.sh: $tool is missing" >&2; exit 1; }
done

tftpd_hpa="$PEERS_DIR/tftpd-hpa/usr/sbin/in.tftpd"
if [ ! -x "$tftpd_hpa" ]; then
  mkdir -p "$PEERS_DIR"
  (cd "$PEERS_DIR" && apt-get download tftpd-hpa && dpkg -x tftpd-hpa_*.deb tftpd-hpa)
fi
atftpd=$(command -v atftpd || true)
[ -n "$atftpd" ] || atftpd=/usr/sbin/atftpd
[ -x "$atftpd" ] || { echo "bench/tftp.sh: atftpd is missing (apt-get install atftpd)" >&2; exit 1; }

cargo build --release --example tftp-bench-server
fleetup_bin="$PWD/target/release/examples/tftp-bench-server"

work=$(mktemp -d /tmp/fleetup-tftp-bench.XXXXXX)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The peers drop privileges to nobody: the tree must be world-readable.
mkdir -p "$work/root"
chmod 755 "$work" "$work/root"
head -c "${SIZE_MB}M" /dev/urandom >"$work/root/image.bin"
chmod 644 "$work/root/image.bin"
want=$(md5sum <"$work/root/image.bin" | cut -d' ' -f1)
cat "$work/root/image.bin" >/dev/null # warm the page cache for every server alike

free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_server() {
  port=$(free_port)
  case "$1" in
    fleetup) "$fleetup_bin" "127.0.0.1:$port" "$work/root" >/dev/null & ;;
    tftpd-hpa) "$tftpd_hpa" -L -a "127.0.0.1:$port" -s -u root "$work/root" & ;;
    atftpd) "$atftpd" --daemon --no-fork --no-multicast --maxthread 500 --logfile /dev/null \
              --bind-address 127.0.0.1 --port "$port" "$work/root" & ;;
  esac
  server_pid=$!
  for _ in $(seq 100); do
    ss -lun | grep -q "127.0.0.1:$port " && return 0
    sleep 0.05
  done
  echo "bench/tftp.sh: $1 did not start" >&2
  exit 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# Client command for a row, as arguments after the row name.
client_cmd() { # row out
  local url="tftp://127.0.0.1:$port/image.bin"
  case "$1" in
    curl-512) echo curl -sS --fail --tftp-blksize 512 -o "$2" "$url" ;;
    curl-1468) echo curl -sS --fail --tftp-blksize 1468 -o "$2" "$url" ;;
    curl-8192) echo curl -sS --fail --tftp-blksize 8192 -o "$2" "$url" ;;
    atftp-1468-w16) echo atftp --option \"blksize 1468\" --option \"windowsize 16\" -g -r image.bin -l "$2" 127.0.0.1 "$port" ;;
    atftp-8192-w16) echo atftp --option \"blksize 8192\" --option \"windowsize 16\" -g -r image.bin -l "$2" 127.0.0.1 "$port" ;;
  esac
}

rows=(curl-512 curl-1468 curl-8192 atftp-1468-w16 atftp-8192-w16)
servers=(fleetup tftpd-hpa atftpd)
declare -A result

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for s in "${servers[@]}"; do
  start_server "$s"
  # One verified download per server before timing (the timed runs write to /dev/null).
  eval "$(client_cmd curl-1468 "$work/check.bin")"
  got=$(md5sum <"$work/check.bin" | cut -d' ' -f1)
  rm -f "$work/check.bin"
  [ "$got" = "$want" ] || { echo "bench/tftp.sh: $s served different bytes" >&2; exit 1; }
  for row in "${rows[@]}"; do
    times=()
    for _ in $(seq "$RUNS"); do
      t0=$(date +%s.%N)
      if timeout "$RUN_TIMEOUT" bash -c "$(client_cmd "$row" /dev/null)" >/dev/null 2>&1; then
        t1=$(date +%s.%N)
        times+=("$(awk "BEGIN {print $t1 - $t0}")")
      else
        times=(">$RUN_TIMEOUT")
        break
      fi
    done
    if [[ "${times[0]}" == ">"* ]]; then
      result[$s,$row]="${times[0]}"
    else
      result[$s,$row]=$(printf '%s\n' "${times[@]}" | median)
    fi
    printf '%-10s %-16s %s s\n' "$s" "$row" "${result[$s,$row]}" >&2
  done

  # Concurrent clients: total time and peak RSS of the server's processes.
  peak_file="$work/peak"
  echo 0 >"$peak_file"
  (
    peak=0
    while kill -0 "$server_pid" 2>/dev/null; do
      pids="$server_pid $(pgrep -P "$server_pid" | tr '\n' ' ' || true)"
      rss=0
      for p in $pids; do
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        rss=$((rss + ${r:-0}))
      done
      if [ "$rss" -gt "$peak" ]; then peak=$rss; echo "$peak" >"$peak_file"; fi
      sleep 0.05
    done
  ) &
  sampler=$!
  t0=$(date +%s.%N)
  pids=()
  for _ in $(seq "$CONCURRENT"); do
    curl -sS --fail --tftp-blksize "$CONCURRENT_BLKSIZE" -o /dev/null "tftp://127.0.0.1:$port/image.bin" &
    pids+=($!)
  done
  failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
  t1=$(date +%s.%N)
  result[$s,concurrent]=$(awk "BEGIN {print $t1 - $t0}")
  result[$s,failed]=$failed
  sleep 0.2
  stop_server
  wait "$sampler" 2>/dev/null || true
  result[$s,rss]=$(awk "BEGIN {printf \"%.1f\", $(cat "$peak_file") / 1024}")
  printf '%-10s %d x curl    %.2f s, peak RSS %s MiB, %d failed\n' "$s" "$CONCURRENT" \
    "${result[$s,concurrent]}" "${result[$s,rss]}" "$failed" >&2
done

ratio() { # fleetup peer
  if [[ "$1" == ">"* || "$2" == ">"* ]]; then echo "-"; else printf '%.2f' "$(awk "BEGIN {print $1 / $2}")"; fi
}
fmt() { if [[ "$1" == ">"* ]]; then echo "$1"; else printf '%.2f' "$1"; fi; }

echo
echo "${SIZE_MB} MB file on loopback, median of $RUNS runs, seconds (lower is better);"
echo "ratio = fleetup time / peer time (below 1: fleetup faster)."
echo
echo "| client | fleetup | tftpd-hpa | atftpd | fleetup/tftpd-hpa | fleetup/atftpd |"
echo "|---|---:|---:|---:|---:|---:|"
for row in "${rows[@]}"; do
  f=${result[fleetup,$row]} h=${result[tftpd-hpa,$row]} a=${result[atftpd,$row]}
  echo "| $row | $(fmt "$f") | $(fmt "$h") | $(fmt "$a") | $(ratio "$f" "$h") | $(ratio "$f" "$a") |"
done
f=${result[fleetup,concurrent]} h=${result[tftpd-hpa,concurrent]} a=${result[atftpd,concurrent]}
echo "| $CONCURRENT x curl-$CONCURRENT_BLKSIZE concurrent, total | $(fmt "$f") | $(fmt "$h") | $(fmt "$a") | $(ratio "$f" "$h") | $(ratio "$f" "$a") |"
echo "| same, peak server RSS (MiB) | ${result[fleetup,rss]} | ${result[tftpd-hpa,rss]} | ${result[atftpd,rss]} | | |"
echo "| same, failed downloads | ${result[fleetup,failed]} | ${result[tftpd-hpa,failed]} | ${result[atftpd,failed]} | | |"
