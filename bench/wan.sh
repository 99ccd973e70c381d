#!/usr/bin/env bash
# fleetup's image servers against their established peers across a shaped WAN link.
#
# Two network namespaces, a server side (10.77.0.1) and a client side (10.77.0.2), are joined
# by one link shaped the same way in each direction:
#   profile A: 10 ms each way (20 ms round trip), 0.1 % loss, 100 Mbit/s
#   profile B: 40 ms each way (80 ms round trip), 0.5 % loss,  20 Mbit/s
# The link is a veth pair with `tc qdisc ... netem delay D loss L rate R limit 10000` on both
# ends when the kernel has sch_netem; otherwise (LINK=tun, or LINK=auto on a kernel without
# it) two TUN devices joined by bench/wan_link.rs, which does the same in user space.
#
# In the server namespace run `fleetup serve` (TFTP, FTP, and, when the binary has them, the
# HTTP and SCP/SFTP image servers through the image-bench-server example, which holds a fixed
# grant) beside tftpd-hpa, vsftpd, nginx and OpenSSH's sshd with sftp-server. From the client
# namespace curl, atftp, lftp, wget, scp and sftp download the same files; each row runs once
# per server with 1 client, then with CLIENTS concurrent clients.
#
# Per row and server: wall time, throughput as % of the link rate (payload bytes only), the
# server's CPU seconds (from a cpuacct cgroup the server is started in, so every process it
# forks counts, waited for or not; without cgroups, utime+stime+cutime+cstime summed over its
# process tree by bench/proctree.py) and its peak RSS (the highest sum of VmRSS over its
# processes, sampled every 100 ms by bench/proctree.py, never below the sum of their VmHWM,
# which is reset at the row's start).
#
#   bench/wan.sh                    # profiles A and B, default sizes (prints an estimate)
#   PROFILES=A SIZE=64 bench/wan.sh
#
# env: PROFILES ("A B"), CLIENTS (50), SIZE (MB, single-client TCP rows; default A 256, B 64),
#   CONC_SIZE (MB per client in the concurrent rows; A 4, B 1), TFTP_SIZE (KB, lock-step TFTP
#   rows; A 256, B 64), TFTP_WIN_SIZE (KB, windowsize rows; A 2048, B 512); a suffix _A or
#   _B sets one profile only (SIZE_B=32). ONLY="tftp ftp http scp" (protocols to run),
#   SIDES="fleetup peer" (SIDES=peer: the peers alone, a baseline of the link),
#   CC (TCP congestion control in both namespaces; default: the kernel's), LINK (auto|netem|tun),
#   RUN_TIMEOUT (s per client, 900), FLEETUP_BIN (a fleetup built elsewhere), KEEP=1,
#   REPEAT (rounds per row, 1): each round runs both servers, which one goes first alternating,
#   on a loss sequence of its own (the same for both); the table shows the median round and
#   the range. The TCP rows move by about ±2 % between runs, so one round cannot tell a 1 %
#   difference from chance.
# Run as root. Installs what is missing with apt-get (nginx-light, openssh-server, vsftpd,
# atftp, lftp, sshpass, curl, wget); tftpd-hpa is only unpacked (it conflicts with atftpd).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
[ "$(id -u)" = 0 ] || die "run as root (network namespaces, tc, sshd)"

PROFILES=${PROFILES:-A B}
CLIENTS=${CLIENTS:-50}
ONLY=${ONLY:-tftp ftp http scp}
SIDES=${SIDES:-fleetup peer}
LINK=${LINK:-auto}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
REPEAT=${REPEAT:-1}
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a whole number of rounds, at least 1"
PEERS_DIR=${PEERS_DIR:-/tmp/fleetup-bench-peers}
SRV=10.77.0.1
CLI=10.77.0.2
NS_S=fleetup-wan-s-$$
NS_C=fleetup-wan-c-$$
FTP_USER=bench
FTP_PASS=bench-wan-pw

# ---------------------------------------------------------------- tools
need() { # COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] && return 0
    echo "== installing $2" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >&2 ||
        die "could not install $2"
}
need ip iproute2
need curl curl
need wget wget
need atftp atftp
need lftp lftp
need sshpass sshpass
need scp openssh-client
need /usr/sbin/vsftpd vsftpd
need /usr/sbin/nginx nginx-light
need /usr/sbin/sshd openssh-server
need /usr/lib/openssh/sftp-server openssh-sftp-server
TFTPD_HPA="$PEERS_DIR/tftpd-hpa/usr/sbin/in.tftpd"
if [ ! -x "$TFTPD_HPA" ]; then
    mkdir -p "$PEERS_DIR"
    (cd "$PEERS_DIR" && apt-get download tftpd-hpa && dpkg -x tftpd-hpa_*.deb tftpd-hpa) >&2
fi

echo "== building (release)" >&2
examples=(--example wan-link)
grep -q '^name = "image-bench-server"' "$ROOT/Cargo.toml" && examples+=(--example image-bench-server)
if [ -z "${FLEETUP_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet --bin fleetup "${examples[@]}")
else
    (cd "$ROOT" && cargo build --release --quiet "${examples[@]}")
fi
BIN=${FLEETUP_BIN:-$ROOT/target/release/fleetup}
WAN_LINK=$ROOT/target/release/examples/wan-link
IMAGE_SERVER=$ROOT/target/release/examples/image-bench-server
[ -x "$IMAGE_SERVER" ] || IMAGE_SERVER=""

# Which of fleetup's servers exist in this build: a row whose server is missing prints
# "n/a — not built" (the HTTP and SCP servers arrive with their own branches).
declare -A HAVE=([tftp]=1 [ftp]=1)
if [ -n "$IMAGE_SERVER" ]; then
    "$IMAGE_SERVER" --help 2>&1 | grep -q -- --http && HAVE[http]=1
    "$IMAGE_SERVER" --help 2>&1 | grep -q -- --scp && HAVE[scp]=1
fi

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d /tmp/fleetup-wan.XXXXXX)
chmod 755 "$WORK"
PIDS=()
LINK_PID=""
# CPU time per server from a cpuacct cgroup of its own (cgroup v1 or v2), which counts every
# process the server forks, also those it never waits for (tftpd-hpa ignores SIGCHLD, so its
# children's time reaches no parent's cutime); bench/proctree.py's sum over /proc otherwise.
CG_ROOT=""
for d in /sys/fs/cgroup/cpuacct /sys/fs/cgroup/cpu,cpuacct /sys/fs/cgroup; do
    if [ -f "$d/cpuacct.usage" ] || [ -f "$d/cgroup.controllers" ]; then
        if mkdir "$d/fleetup-wan-$$" 2>/dev/null; then CG_ROOT=$d/fleetup-wan-$$; break; fi
    fi
done
declare -A CGROUP_OF=()
stop_all() {
    local pid alive
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # A server that does not stop within 10 s (one stuck in a session) is killed.
    for _ in $(seq 100); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "== $pid did not stop on SIGTERM within 10 s: killed" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    # nginx and vsftpd children of a killed master, sshd sessions: anything left in the
    # namespace goes with it.
    for ns in "$NS_S" "$NS_C"; do
        if ip netns pids "$ns" >/dev/null 2>&1; then
            for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null || true; done
        fi
    done
    if [ -n "$LINK_PID" ]; then
        kill -TERM "$LINK_PID" 2>/dev/null || true
        wait "$LINK_PID" 2>/dev/null || true
        LINK_PID=""
    fi
    ip netns del "$NS_S" 2>/dev/null || true
    ip netns del "$NS_C" 2>/dev/null || true
    local g
    for g in "${CGROUP_OF[@]}"; do rmdir "$g" 2>/dev/null || true; done
    CGROUP_OF=()
}
cleanup() {
    stop_all
    [ -n "$CG_ROOT" ] && rmdir "$CG_ROOT" 2>/dev/null
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- profiles
profile() { # NAME: sets DELAY_MS LOSS RATE SIZE_MB CONC_MB TFTP_KB TFTP_WIN_KB
    local p=$1 v
    case "$p" in
        A) DELAY_MS=10 LOSS=0.1 RATE=100 SIZE_MB=256 CONC_MB=4 TFTP_KB=256 TFTP_WIN_KB=2048 ;;
        B) DELAY_MS=40 LOSS=0.5 RATE=20 SIZE_MB=64 CONC_MB=1 TFTP_KB=64 TFTP_WIN_KB=512 ;;
        *) die "unknown profile $p (A or B)" ;;
    esac
    for v in SIZE CONC_SIZE TFTP_SIZE TFTP_WIN_SIZE; do
        local per="${v}_$p" val=""
        [ -n "${!v:-}" ] && val=${!v}
        [ -n "${!per:-}" ] && val=${!per}
        [ -z "$val" ] && continue
        case $v in
            SIZE) SIZE_MB=$val ;; CONC_SIZE) CONC_MB=$val ;;
            TFTP_SIZE) TFTP_KB=$val ;; TFTP_WIN_SIZE) TFTP_WIN_KB=$val ;;
        esac
    done
}

# Rows: protocol, client, file size key (big | conc | tftp | tftpwin), clients.
rows() {
    local p
    for p in $ONLY; do
        case $p in
            tftp) printf '%s\n' "tftp curl-512 tftp 1" "tftp curl-1468 tftp 1" \
                "tftp curl-8192 tftp 1" "tftp atftp-1468-w16 tftpwin 1" \
                "tftp atftp-8192-w16 tftpwin 1" "tftp curl-8192 conc $CLIENTS" ;;
            ftp) printf '%s\n' "ftp curl big 1" "ftp lftp big 1" "ftp curl conc $CLIENTS" ;;
            http) printf '%s\n' "http curl big 1" "http wget big 1" "http curl conc $CLIENTS" ;;
            scp) printf '%s\n' "scp scp big 1" "scp sftp big 1" "scp scp conc $CLIENTS" ;;
        esac
    done
}

size_bytes() { # KEY
    case $1 in
        big) echo $((SIZE_MB * 1024 * 1024)) ;;
        conc) echo $((CONC_MB * 1024 * 1024)) ;;
        tftp) echo $((TFTP_KB * 1024)) ;;
        tftpwin) echo $((TFTP_WIN_KB * 1024)) ;;
        check) echo $((32 * 1024)) ;;
    esac
}
file_name() { echo "image-$(size_bytes "$1").bin"; }

# A rough duration: TCP rows at 90 % of the link, lock-step TFTP one round trip per block and
# 5 s per lost packet (curl asks for `timeout 5`), windowed TFTP one window per round trip
# (tftpd-hpa has no windowsize: lock-step); concurrent clients at the link rate at best.
estimate() {
    local total=0 proto client key n
    while read -r proto client key n; do
        total=$(awk -v t="$total" -v b="$(size_bytes "$key")" -v n="$n" -v r="$RATE" -v d="$DELAY_MS" \
            -v l="$LOSS" -v c="$client" -v pr="$proto" '
        function tcp(b) { return b * 8 / (r * 1e6 * 0.9) + 1 }
        function lock(b, bs) { return (b / bs) * (2 * d / 1000 + 2 * l / 100 * 5) }
        function max(a, b) { return a > b ? a : b }
        BEGIN {
            bs = 512; if (c ~ /1468/) bs = 1468; if (c ~ /8192/) bs = 8192
            if (pr != "tftp") { print t + 2 * max(tcp(b * n), tcp(b)); exit }
            peer = max(lock(b, bs), tcp(b * n))
            ours = (c ~ /w16/) ? b / (bs * 16) * 2 * d / 1000 + tcp(b) : peer
            print t + peer + ours }')
    done < <(rows)
    total=$((${total%.*} * REPEAT))
    printf '%.0f' "$total"
}

# ---------------------------------------------------------------- the link
link_up() {
    ip netns add "$NS_S"
    ip netns add "$NS_C"
    ip -n "$NS_S" link set lo up
    ip -n "$NS_C" link set lo up
    local mode=$LINK
    if [ "$mode" != tun ]; then
        ip link add "wan-s$$" type veth peer name "wan-c$$"
        ip link set "wan-s$$" netns "$NS_S" name wan0
        ip link set "wan-c$$" netns "$NS_C" name wan0
        local shaped=1 ns
        for ns in "$NS_S" "$NS_C"; do
            # netem drops or delays a whole GSO burst as one packet: segment before it.
            ip netns exec "$ns" ethtool -K wan0 tso off gso off gro off >/dev/null 2>&1 || true
            tc -n "$ns" qdisc add dev wan0 root netem delay "${DELAY_MS}ms" loss "${LOSS}%" \
                rate "${RATE}mbit" limit 10000 2>"$WORK/tc.err" || shaped=0
        done
        if [ "$shaped" = 0 ]; then
            [ "$mode" = netem ] && die "tc netem failed: $(cat "$WORK/tc.err")"
            echo "== no netem in this kernel ($(head -1 "$WORK/tc.err")): user-space link" >&2
            ip -n "$NS_S" link del wan0 2>/dev/null || true
            mode=tun
        else
            LINK_KIND="veth + tc netem"
        fi
    fi
    if [ "$mode" = tun ]; then
        "$WAN_LINK" "wls$$" "wlc$$" "$DELAY_MS" "$LOSS" "$RATE" 10000 >"$WORK/link.out" 2>"$WORK/link.err" &
        LINK_PID=$!
        wait_for_line "$WORK/link.out" ready "$LINK_PID" 10
        ip link set "wls$$" netns "$NS_S" name wan0
        ip link set "wlc$$" netns "$NS_C" name wan0
        LINK_KIND="TUN + bench/wan_link.rs (no sch_netem in this kernel)"
    fi
    ip -n "$NS_S" addr add "$SRV/24" dev wan0
    ip -n "$NS_C" addr add "$CLI/24" dev wan0
    ip -n "$NS_S" link set wan0 up
    ip -n "$NS_C" link set wan0 up
    for ns in "$NS_S" "$NS_C"; do
        # Room for the bandwidth-delay product (250 KB at 100 Mbit/s x 20 ms) many times over.
        ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_rmem="4096 131072 33554432" \
            net.ipv4.tcp_wmem="4096 16384 33554432" >/dev/null
        ip netns exec "$ns" sysctl -q -w net.core.rmem_max=33554432 net.core.wmem_max=33554432 \
            >/dev/null 2>&1 || true
        [ -n "${CC:-}" ] && ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_congestion_control="$CC" >/dev/null
    done
    CC_USED=$(ip netns exec "$NS_S" sysctl -n net.ipv4.tcp_congestion_control)
}

# The round trip as TCP sees it: curl's connect time to a closed port is one SYN/RST exchange.
measure_rtt() {
    local i best=999
    for i in 1 2 3 4 5; do
        t=$(ip netns exec "$NS_C" python3 -c '
import socket, time, sys
s = socket.socket(); t = time.monotonic()
try: s.connect((sys.argv[1], 9))
except OSError: pass
print(f"{(time.monotonic() - t) * 1000:.1f}")' "$SRV")
        best=$(awk -v a="$best" -v b="$t" 'BEGIN { print (b < a) ? b : a }')
    done
    echo "$best"
}

# ---------------------------------------------------------------- servers
# Start `ip netns exec NS_S CMD...` in the background, in a cgroup of its own when there is
# one (joined before the exec, so every process it forks is inside); sets SERVER_PID.
N_SERVERS=0
spawn_server() { # LOG CMD...
    local log=$1 g=""
    shift
    N_SERVERS=$((N_SERVERS + 1))
    if [ -n "$CG_ROOT" ]; then
        g=$CG_ROOT/s$N_SERVERS
        mkdir "$g"
    fi
    sh -c '[ -z "$0" ] || echo $$ >"$0/cgroup.procs"; exec "$@"' "$g" ip netns exec "$NS_S" "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    [ -n "$g" ] && CGROUP_OF[$SERVER_PID]=$g
    return 0
}

# CPU seconds of a server so far.
cpu_of() { # PID
    local g=${CGROUP_OF[$1]:-}
    if [ -n "$g" ] && [ -f "$g/cpuacct.usage" ]; then
        awk '{printf "%.3f\n", $1 / 1e9}' "$g/cpuacct.usage"
    elif [ -n "$g" ] && [ -f "$g/cpu.stat" ]; then
        awk '$1 == "usage_usec" {printf "%.3f\n", $2 / 1e6}' "$g/cpu.stat"
    else
        python3 "$ROOT/bench/proctree.py" cpu "$1"
    fi
}

start_servers() {
    local files=() key
    for key in big conc tftp tftpwin check; do files+=("$(file_name "$key")"); done

    mkdir -p "$WORK/data/images" "$WORK/www"
    for f in "${files[@]}"; do ln -f "$WORK/img/$f" "$WORK/data/images/$f" 2>/dev/null || cp "$WORK/img/$f" "$WORK/data/images/$f"; done

    # fleetup: TFTP and FTP from `fleetup serve` over its image store. All clients come
    # from one address, so the per-client caps are raised as for a site behind NAT. Its own
    # HTTP and SCP image servers stay off: they serve a device job's grant only, and the
    # example server below holds one for the bench files.
    local off=()
    "$BIN" serve --help | grep -q -- --image-http && off+=(--image-http off --image-https off)
    "$BIN" serve --help | grep -q -- --image-scp && off+=(--image-scp off)
    FLEETUP_LOG=warn spawn_server "$WORK/serve.err" "$BIN" serve --data-dir "$WORK/data" "${off[@]}" \
        --http 127.0.0.1:0 --tftp "$SRV:69" --ftp "$SRV:21" \
        --ftp-user "$FTP_USER" --ftp-password "$FTP_PASS" --ftp-passive-ports 40000-40999 \
        --tftp-max-per-client 1000 --ftp-max-per-client 1000
    FLEETUP_PID=$SERVER_PID
    wait_for_line "$WORK/serve.err" "dashboard and API:" "$FLEETUP_PID" 60

    # fleetup: HTTP and SCP/SFTP image servers with one grant for every bench file.
    IMAGE_PID=""
    if [ -n "$IMAGE_SERVER" ] && { [ -n "${HAVE[http]:-}" ] || [ -n "${HAVE[scp]:-}" ]; }; then
        local args=()
        [ -n "${HAVE[http]:-}" ] && args+=(--http "$SRV:80")
        [ -n "${HAVE[scp]:-}" ] && args+=(--scp "$SRV:22")
        spawn_server "$WORK/image.out" "$IMAGE_SERVER" "${args[@]}" "$WORK/data/images" "${files[@]}"
        IMAGE_PID=$SERVER_PID
        wait_for_line "$WORK/image.out" "^ready" "$IMAGE_PID" 30
        HTTP_TOKEN=$(awk '$1 == "http-token" {print $2}' "$WORK/image.out")
        SCP_USER=$(awk '$1 == "scp-account" {print $2}' "$WORK/image.out")
        SCP_PASS=$(awk '$1 == "scp-account" {print $3}' "$WORK/image.out")
    fi

    # tftpd-hpa, in the foreground (-L), forking one process per transfer.
    spawn_server "$WORK/tftpd.log" "$TFTPD_HPA" -L -a "$SRV:1069" -s -u root "$WORK/img"
    TFTPD_PID=$SERVER_PID

    # vsftpd: anonymous, read-only, passive, sendfile (its default).
    mkdir -p "$WORK/empty"
    sed -e "s#@ADDR@#$SRV#" -e "s#@PORT@#1021#" -e "s#@ROOT@#$WORK/img#" \
        -e "s#@PASV_MIN@#41000#" -e "s#@PASV_MAX@#41999#" -e "s#@EMPTY@#$WORK/empty#" \
        "$ROOT/bench/vsftpd.conf" >"$WORK/vsftpd.conf"
    spawn_server "$WORK/vsftpd.log" /usr/sbin/vsftpd "$WORK/vsftpd.conf"
    VSFTPD_PID=$SERVER_PID

    # nginx as Debian ships it: sendfile, tcp_nopush, one worker per core.
    cat >"$WORK/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    server { listen $SRV:1080; root $WORK/img; }
}
CONF
    spawn_server "$WORK/nginx.log" /usr/sbin/nginx -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon off;'
    NGINX_PID=$SERVER_PID

    # OpenSSH: sshd with the stock sftp-server, root by a key made for this run.
    mkdir -p /run/sshd "$WORK/ssh"
    [ -f "$WORK/ssh/host" ] || ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh/host"
    [ -f "$WORK/ssh/client" ] || ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh/client"
    cp "$WORK/ssh/client.pub" "$WORK/ssh/authorized_keys"
    cat >"$WORK/ssh/sshd_config" <<CONF
ListenAddress $SRV:1022
HostKey $WORK/ssh/host
PidFile none
PermitRootLogin prohibit-password
AuthorizedKeysFile $WORK/ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 200:30:300
MaxSessions 200
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
    spawn_server "$WORK/sshd.log" /usr/sbin/sshd -D -e -f "$WORK/ssh/sshd_config"
    SSHD_PID=$SERVER_PID

    # Readiness: every listener answers from the client side.
    local port
    for port in 21 1021 1080 1022; do
        for _ in $(seq 100); do
            ip netns exec "$NS_C" bash -c "exec 3<>/dev/tcp/$SRV/$port" 2>/dev/null && break
            sleep 0.1
        done
    done
}

# ---------------------------------------------------------------- clients
SSH_OPTS="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
client_cmd() { # SIDE(fleetup|peer) PROTO CLIENT FILE OUT
    local side=$1 proto=$2 client=$3 f=$4 out=$5 port bs
    case "$proto:$side" in
        tftp:fleetup) port=69 ;; tftp:peer) port=1069 ;;
    esac
    case "$proto:$client" in
        tftp:curl-*)
            bs=${client#curl-}
            echo "curl -sS --fail --tftp-blksize $bs -o $out tftp://$SRV:$port/$f" ;;
        tftp:atftp-*)
            bs=${client#atftp-}; bs=${bs%-w16}
            echo "atftp --option 'blksize $bs' --option 'windowsize 16' -g -r $f -l $out $SRV $port" ;;
        ftp:curl | ftp:lftp)
            local url
            if [ "$side" = fleetup ]; then url="ftp://$FTP_USER:$FTP_PASS@$SRV:21"; else url="ftp://anonymous:x@$SRV:1021"; fi
            if [ "$client" = curl ]; then echo "curl -sS --fail -o $out $url/$f"
            else echo "lftp -c 'set cmd:fail-exit yes; open $url; cat $f' > $out"; fi ;;
        http:curl | http:wget)
            local url
            if [ "$side" = fleetup ]; then url="http://$SRV:80/j/$HTTP_TOKEN/$f"; else url="http://$SRV:1080/$f"; fi
            if [ "$client" = curl ]; then echo "curl -sS --fail -o $out $url"
            else echo "wget -q -O $out $url"; fi ;;
        scp:scp | scp:sftp)
            local pre="" who port_opt auth
            if [ "$side" = fleetup ]; then
                pre="sshpass -p $SCP_PASS"; who="$SCP_USER@$SRV"; port_opt=22
                auth="-o BatchMode=no -o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive"
            else
                who="root@$SRV"; port_opt=1022; auth="-o BatchMode=yes -i $WORK/ssh/client"
                f="$WORK/img/$f"
            fi
            if [ "$client" = scp ]; then echo "$pre scp -O -q $SSH_OPTS $auth -P $port_opt $who:$f $out"
            else echo "echo 'get $f $out' | $pre sftp -q $SSH_OPTS $auth -P $port_opt -b - $who >/dev/null"; fi ;;
    esac
}

# Run N copies of CMD in the client namespace at once; prints the number that failed.
run_clients() { # N CMD
    ip netns exec "$NS_C" bash -c '
        n=$1 cmd=$2 t=$3 failed=0 pids=()
        for _ in $(seq "$n"); do timeout "$t" bash -c "$cmd" >/dev/null 2>>"$4" & pids+=($!); done
        for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
        echo "$failed"' _ "$1" "$2" "$RUN_TIMEOUT" "$WORK/clients.err"
}

# One measurement: prints "seconds cpu_seconds peak_rss_mib failed".
measure() { # SERVER_PID N CMD
    local pid=$1 n=$2 cmd=$3 c0 c1 t0 t1 failed sampler
    python3 "$ROOT/bench/proctree.py" reset "$pid"
    python3 "$ROOT/bench/proctree.py" sample "$pid" "$WORK/peak" &
    sampler=$!
    c0=$(cpu_of "$pid")
    # The user-space link starts its loss sequence again: both servers meet the same losses.
    [ -n "$LINK_PID" ] && kill -USR1 "$LINK_PID"
    t0=$(date +%s.%N)
    failed=$(run_clients "$n" "$cmd")
    t1=$(date +%s.%N)
    # Forking servers reap their children a moment after the last byte.
    sleep 0.3
    c1=$(cpu_of "$pid")
    kill -TERM "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    awk -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v r="$(cat "$WORK/peak")" -v f="$failed" \
        'BEGIN { printf "%.2f %.2f %s %d\n", t1 - t0, c1 - c0, r, f }'
}

server_pid() { # SIDE PROTO
    case "$1:$2" in
        fleetup:tftp | fleetup:ftp) echo "$FLEETUP_PID" ;;
        fleetup:http | fleetup:scp) echo "$IMAGE_PID" ;;
        peer:tftp) echo "$TFTPD_PID" ;; peer:ftp) echo "$VSFTPD_PID" ;;
        peer:http) echo "$NGINX_PID" ;; peer:scp) echo "$SSHD_PID" ;;
    esac
}
peer_name() {
    case $1 in tftp) echo tftpd-hpa ;; ftp) echo vsftpd ;; http) echo nginx ;; scp) echo OpenSSH ;; esac
}

# Byte-exact check of one server with a row's client (on a small file), once per client.
verify() { # SIDE PROTO CLIENT
    local side=$1 f want got
    f=$(file_name check)
    want=$(md5sum <"$WORK/img/$f" | cut -d' ' -f1)
    rm -f "$WORK/check.bin"
    ip netns exec "$NS_C" timeout "$RUN_TIMEOUT" bash -c "$(client_cmd "$side" "$2" "$3" "$f" "$WORK/check.bin")" \
        2>>"$WORK/clients.err" || { echo "   $side $2 $3: download failed: $(tail -3 "$WORK/clients.err")" >&2; return 1; }
    got=$(md5sum <"$WORK/check.bin" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "   $side $2 $3: different bytes" >&2; return 1; }
}

# ---------------------------------------------------------------- main
RESULTS=$WORK/results.tsv
: >"$RESULTS"
TOTAL_EST=0
for P in $PROFILES; do
    profile "$P"
    TOTAL_EST=$((TOTAL_EST + $(estimate)))
done
echo "== estimated duration: about $((TOTAL_EST / 60)) min (profiles: $PROFILES; fleetup servers built: ${!HAVE[*]})" >&2
STARTED=$(date +%s)

mkdir -p "$WORK/img"
HEADERS=()
for P in $PROFILES; do
    profile "$P"
    echo "== profile $P: ${DELAY_MS} ms each way, ${LOSS} % loss, ${RATE} Mbit/s" >&2
    for key in big conc tftp tftpwin check; do
        f="$WORK/img/$(file_name "$key")"
        [ -f "$f" ] || head -c "$(size_bytes "$key")" /dev/urandom >"$f"
        chmod 644 "$f"
        cat "$f" >/dev/null # page cache, the same for every server
    done
    link_up
    RTT=$(measure_rtt)
    start_servers
    HEADERS+=("$P|${DELAY_MS}|${LOSS}|${RATE}|${RTT}|${CC_USED}|${LINK_KIND}|${SIZE_MB}|${CONC_MB}|${TFTP_KB}|${TFTP_WIN_KB}")
    echo "== link: $LINK_KIND, measured round trip ${RTT} ms, congestion control $CC_USED" >&2

    declare -A VERIFIED=()
    while read -r proto client key n; do
        f=$(file_name "$key")
        declare -A RUNS=([fleetup]="" [peer]="")
        for round in $(seq "$REPEAT"); do
            # A new loss sequence per round, the same for both servers of the round; which
            # server goes first alternates, so a drift of the machine favours neither.
            [ "$round" -gt 1 ] && [ -n "$LINK_PID" ] && kill -USR2 "$LINK_PID"
            order="fleetup peer"
            [ $((round % 2)) = 0 ] && order="peer fleetup"
            for side in $order; do
                if [[ " $SIDES " != *" $side "* ]]; then
                    m=skip
                elif [ "$side" = fleetup ] && [ -z "${HAVE[$proto]:-}" ]; then
                    m=n/a
                elif [ -z "${VERIFIED[$side $proto $client]:-}" ] && ! verify "$side" "$proto" "$client"; then
                    m=check-failed
                else
                    VERIFIED[$side $proto $client]=1
                    cmd=$(client_cmd "$side" "$proto" "$client" "$f" /dev/null)
                    m=$(measure "$(server_pid "$side" "$proto")" "$n" "$cmd")
                fi
                echo "   $proto $client x$n $side (round $round): $m" >&2
                RUNS[$side]+="${RUNS[$side]:+;}$m"
            done
        done
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$P" "$proto" "$client" "$key" "$n" \
            "${RUNS[fleetup]}" "${RUNS[peer]}" >>"$RESULTS"
    done < <(rows)
    cp "$WORK/link.err" "$WORK/link-$P.err" 2>/dev/null || true
    stop_all
done
ELAPSED=$(($(date +%s) - STARTED))

# ---------------------------------------------------------------- table
python3 - "$RESULTS" "$CLIENTS" "$ELAPSED" "$REPEAT" "${HEADERS[@]}" <<'PY'
import statistics
import sys
res, clients, elapsed, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
headers = sys.argv[5:]
prof = {}
for h in headers:
    p, d, l, r, rtt, cc, link, big, conc, tk, twk = h.split("|")
    prof[p] = dict(delay=float(d), loss=l, rate=float(r), rtt=rtt, cc=cc, link=link,
                   big=int(big) * 2**20, conc=int(conc) * 2**20, tftp=int(tk) * 1024,
                   tftpwin=int(twk) * 1024)
peer = {"tftp": "tftpd-hpa", "ftp": "vsftpd", "http": "nginx", "scp": "OpenSSH"}
proto_name = {"tftp": "TFTP", "ftp": "FTP", "http": "HTTP", "scp": "SCP/SFTP"}
def size(b):
    return f"{b / 2**20:g} MB" if b >= 2**20 else f"{b / 1024:g} KB"
print()
for p, h in prof.items():
    print(f"Profile {p}: {h['delay'] * 2:g} ms round trip ({h['rtt']} ms measured), {h['loss']} % loss "
          f"each way, {h['rate']:g} Mbit/s; TCP congestion control {h['cc']}; link: {h['link']}.")
print(f"Concurrent rows: {clients} clients at once, each downloading its own copy of the "
      f"(smaller) concurrent-row file; time = until the last one finished.")
print("% link = payload bits / time / link rate. CPU = server CPU seconds (every process of the server). "
      "RSS = peak summed RSS, MiB. ratio = fleetup time / peer time (<= 1.00, rounded: fleetup at least as fast).")
if repeat > 1:
    print(f"Each row ran {repeat} rounds, each on a loss sequence of its own (the same for both servers), "
          "which server went first alternating: times are the median round (fastest–slowest), CPU the "
          "median, RSS the highest, failures all rounds' together.")
print()
print("| profile | protocol | client | size | clients | fleetup s | peer | peer s | ratio | fleetup % link | peer % link | fleetup CPU s | peer CPU s | fleetup RSS MiB | peer RSS MiB |")
print("|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
targets = []
for line in open(res):
    f = line.rstrip("\n").split("\t")
    p, proto, client, key, n = f[:5]
    n = int(n)
    h = prof[p]
    b = h[key]
    head = f"| {p} | {proto_name[proto]} | {client} | {size(b)} | {n} |"
    sides = []
    spread = []
    for field in f[5:7]:
        runs = field.split(";")
        marker = next((m for m in runs if m in ("n/a", "skip", "check-failed")), None)
        if marker:
            sides.append(marker)
            spread.append("")
            continue
        runs = [m.split() for m in runs]
        times = [float(m[0]) for m in runs]
        sides.append((statistics.median(times), statistics.median(float(m[1]) for m in runs),
                      f"{max(float(m[2]) for m in runs):.1f}", sum(int(m[3]) for m in runs)))
        spread.append(f" ({min(times):.2f}–{max(times):.2f})" if len(runs) > 1 else "")
    pct = lambda t: 100 * b * n * 8 / t / (h["rate"] * 1e6)
    def cells(m):
        if m == "n/a": return ["n/a — not built", "", "", ""]
        if m == "skip": return ["–", "", "", ""]
        if m == "check-failed": return ["download check failed", "", "", ""]
        t, c, r, failed = m
        return [f"{t:.2f}" + (f" ({failed} failed)" if failed else ""), f"{pct(t):.0f}", f"{c:.2f}", r]
    fs, ps = cells(sides[0]), cells(sides[1])
    fs[0] += spread[0]
    ps[0] += spread[1]
    ours, theirs = sides
    ratio = ours[0] / theirs[0] if isinstance(ours, tuple) and isinstance(theirs, tuple) else None
    rs = f"{ratio:.2f}" if ratio is not None else ""
    print(f"{head} {fs[0]} | {peer[proto]} | {ps[0]} | {rs} | {fs[1]} | {ps[1]} | {fs[2]} | {ps[2]} | {fs[3]} | {ps[3]} |")
    row = f"{p} {proto_name[proto]} {client} x{n}"
    if ours == "skip":
        continue
    if not isinstance(ours, tuple):
        what = "n/a — not built" if ours == "n/a" else "FAIL: fleetup's download check failed"
        targets.append((f"{row}: {what}", None if ours == "n/a" else False))
        continue
    ft, fc, fr, ff = ours
    ok_fail = ff == 0
    if ratio is not None:
        # A peer whose downloads failed is beaten by a fleetup whose downloads did not.
        beat = ok_fail and (round(ratio, 2) <= 1.0 or theirs[3] > 0)
        targets.append((f"{row}: fleetup at least as fast as {peer[proto]} (ratio {ratio:.2f})", beat))
    if proto in ("http", "ftp") and n == 1:
        targets.append((f"{row}: fleetup >= 90 % of the link ({pct(ft):.0f} %)", pct(ft) >= 90 and ok_fail))
    if proto in ("http", "ftp") and n > 1:
        cores = fc / ft
        targets.append((f"{row}: fleetup under 10 % of one core ({100 * cores:.1f} %) and 100 MB RSS ({fr} MiB)",
                        cores < 0.10 and float(fr) < 100 and ok_fail))
print()
print("Targets:")
for what, ok in targets:
    print(f"  {'n/a ' if ok is None else 'PASS' if ok else 'FAIL'}  {what}")
print(f"\n(bench ran {elapsed // 60} min {elapsed % 60} s)")
PY
