#!/usr/bin/env bash
# Throughput of fleetup's FTP server against vsftpd (and libunftp, the embedding candidate) on
# loopback: one SIZE_MB file fetched by curl, median of RUNS single downloads, then CLIENTS
# concurrent downloads. Prints a table with ratios to vsftpd.
#
#   bench/ftp.sh [SIZE_MB=256] [RUNS=5] [CLIENTS=20]
#   env: SKIP_LIBUNFTP=1 leaves libunftp out; CONC_ROUNDS=3 rounds of the concurrent test
#
# Needs: vsftpd (apt-get install vsftpd), curl, python3, cargo; run as root (vsftpd).
set -euo pipefail

SIZE_MB=${1:-256}
RUNS=${2:-5}
CLIENTS=${3:-20}
CONC_ROUNDS=${CONC_ROUNDS:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/fleetup-ftp-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

VSFTPD=${VSFTPD:-$(command -v vsftpd || echo /usr/sbin/vsftpd)}
[ -x "$VSFTPD" ] || { echo "vsftpd not found: apt-get install vsftpd" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "building fleetup's FTP server (release)..." >&2
cargo build -q --release --manifest-path "$REPO/bench/ftp-server/Cargo.toml" --target-dir "$REPO/target"
FLEETUP_BIN="$REPO/target/release/fleetup-ftp-bench"
if [ -z "${SKIP_LIBUNFTP:-}" ]; then
    echo "building the libunftp prototype (release)..." >&2
    cargo build -q --release --manifest-path "$REPO/bench/ftp-libunftp/Cargo.toml" --target-dir "$REPO/target/bench-libunftp"
    UNFTP_BIN="$REPO/target/bench-libunftp/release/unftp-proto"
fi

mkdir -p "$WORK/root" "$WORK/empty" "$WORK/out"
chmod 755 "$WORK/root"
echo "writing a ${SIZE_MB} MB test image..." >&2
head -c "${SIZE_MB}M" /dev/urandom > "$WORK/root/image.bin"
WANT=$(md5sum < "$WORK/root/image.bin" | cut -d' ' -f1)

# name -> URL of the image
declare -A URL
ORDER=()

P=$(free_port)
sed -e "s#@ADDR@#127.0.0.1#" -e "s#@PORT@#$P#" -e "s#@ROOT@#$WORK/root#" \
    -e "s#@PASV_MIN@#46000#" -e "s#@PASV_MAX@#46999#" -e "s#@EMPTY@#$WORK/empty#" \
    "$REPO/bench/vsftpd.conf" > "$WORK/vsftpd.conf"
"$VSFTPD" "$WORK/vsftpd.conf" & PIDS+=($!)
URL[vsftpd]="ftp://anonymous:x@127.0.0.1:$P/image.bin"; ORDER+=(vsftpd)

P=$(free_port)
"$FLEETUP_BIN" "$WORK/root" "127.0.0.1:$P" bench bench-pw 47000-47999 > "$WORK/fleetup.log" & PIDS+=($!)
URL[fleetup]="ftp://bench:bench-pw@127.0.0.1:$P/image.bin"; ORDER+=(fleetup)

if [ -n "${UNFTP_BIN:-}" ]; then
    P=$(free_port)
    "$UNFTP_BIN" big "$WORK/root" "127.0.0.1:$P" > /dev/null 2>&1 & PIDS+=($!)
    URL[libunftp-1MiB]="ftp://anonymous:x@127.0.0.1:$P/image.bin"; ORDER+=(libunftp-1MiB)
    P=$(free_port)
    "$UNFTP_BIN" fs "$WORK/root" "127.0.0.1:$P" > /dev/null 2>&1 & PIDS+=($!)
    URL[libunftp-sbe-fs]="ftp://anonymous:x@127.0.0.1:$P/image.bin"; ORDER+=(libunftp-sbe-fs)
fi

# Servers bind in their own time: retry until each answers (a script, not a test).
for name in "${ORDER[@]}"; do
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 5 "${URL[$name]%image.bin}" && break
        sleep 0.1
    done
    got=$(curl -sS "${URL[$name]}" | md5sum | cut -d' ' -f1)
    [ "$got" = "$WANT" ] || { echo "$name served a different file ($got != $WANT)" >&2; exit 1; }
done

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Rounds go through the servers in turn, so that load from elsewhere on the machine falls on
# all of them alike; each figure is the median over the rounds.
declare -A STIMES CTIMES SINGLE BEST CONC
for _ in $(seq "$RUNS"); do
    for name in "${ORDER[@]}"; do
        STIMES[$name]+="$(curl -sS -o /dev/null -w '%{time_total}' "${URL[$name]}") "
    done
done
for _ in $(seq "$CONC_ROUNDS"); do
    for name in "${ORDER[@]}"; do
        start=$(date +%s.%N)
        cpids=()
        for i in $(seq "$CLIENTS"); do
            curl -sS -o /dev/null "${URL[$name]}" & cpids+=($!)
        done
        for p in "${cpids[@]}"; do wait "$p"; done
        end=$(date +%s.%N)
        CTIMES[$name]+="$(echo "$end - $start" | bc -l) "
    done
done
for name in "${ORDER[@]}"; do
    SINGLE[$name]=$(printf '%s\n' ${STIMES[$name]} | median)
    BEST[$name]=$(printf '%s\n' ${STIMES[$name]} | sort -g | head -1)
    CONC[$name]=$(printf '%s\n' ${CTIMES[$name]} | median)
done

printf '\n%s MB file, loopback, curl to /dev/null; single: median of %s; %s concurrent clients: median of %s rounds; load average before: %s\n\n' \
    "$SIZE_MB" "$RUNS" "$CLIENTS" "$CONC_ROUNDS" "$LOAD"
printf '| server | single, median (s) | MB/s | vs vsftpd | single, best (s) | vs vsftpd | %s concurrent (s) | aggregate MB/s | vs vsftpd |\n' "$CLIENTS"
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for name in "${ORDER[@]}"; do
    awk -v n="$name" -v s="${SINGLE[$name]}" -v b="${BEST[$name]}" -v c="${CONC[$name]}" \
        -v vs="${SINGLE[vsftpd]}" -v vb="${BEST[vsftpd]}" -v vc="${CONC[vsftpd]}" \
        -v mb="$SIZE_MB" -v k="$CLIENTS" 'BEGIN {
        printf "| %s | %.3f | %.0f | %.2fx | %.3f | %.2fx | %.3f | %.0f | %.2fx |\n",
            n, s, mb/s, vs/s, b, vb/b, c, k*mb/c, vc/c }'
done
