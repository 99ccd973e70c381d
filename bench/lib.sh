# Shell helpers shared by bench/rollout.sh and bench/poll.sh (sourced, not run).

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# A free loopback port of the given kind (tcp, the default, or udp); bound then released, so a
# tiny race is possible with other processes picking ports at the same moment.
free_port() {
    python3 - "${1:-tcp}" <<'PY'
import socket, sys
kind = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}

# Wait (bounded) until FILE contains PATTERN while process PID lives.
wait_for_line() {
    local file=$1 pattern=$2 pid=$3 secs=$4
    for _ in $(seq $((secs * 10))); do
        grep -q -- "$pattern" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || die "process $pid exited; see $file: $(tail -5 "$file")"
        sleep 0.1
    done
    die "no '$pattern' in $file after ${secs}s"
}
