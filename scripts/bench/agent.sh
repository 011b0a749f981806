#!/usr/bin/env bash
# Agent benchmark: reconcile time and memory with many mirrored (up-to-date) entries, and the CPU an idle agent
# uses when nothing is due.
#
#   scripts/bench/agent.sh [--idle-seconds N] [--sizes "10000 100000"] [--desktop]
#
# For each size: barge-bench writes manifests and a store as a long-running agent leaves them; `barge agent`
# starts on it; the figures come from its status (the last reconcile's time, plan and apply) and /proc (peak and
# current RSS); then the agent sits idle for N seconds (default 60) and its CPU time over that span is read from
# /proc/PID/stat, and the system calls it made (strace attached to every thread: an agent that sleeps in
# epoll_wait/futex without a timeout makes none).
# The pure reconciler alone is timed by `barge-bench reconcile` on the same sizes.
# --desktop: the agent also serves metrics over TCP (metrics-listen) and watches NetworkManager and ModemManager:
# stand-ins (scripts/servers/desktop-bus.py, one device and one modem) on a dbus-daemon of the benchmark's own.
set -euo pipefail
cd "$(dirname "$0")/../.."
idle=60
sizes="10000 100000"
desktop=0
while [ $# -gt 0 ]; do
    case "$1" in
        --idle-seconds) idle=$2; shift 2 ;;
        --sizes) sizes=$2; shift 2 ;;
        --desktop) desktop=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v strace >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends strace >/dev/null
bin=$(scripts/build-release.sh barge barge-bench 2>/dev/null) || { scripts/build-release.sh barge barge-bench >/dev/null; exit 1; }
ticks=$(getconf CLK_TCK)
if [ "$desktop" = 1 ]; then
    bus=$(mktemp -d /tmp/barge-bench-bus-XXXXXX)
    cat > "$bus/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=$bus/socket</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*" eavesdrop="true"/>
<allow eavesdrop="true"/></policy></busconfig>
CONF
    dbus-daemon --config-file="$bus/bus.conf" --nofork --nopidfile 2>/dev/null &
    daemon=$!
    /usr/bin/python3 scripts/servers/desktop-bus.py --address "unix:path=$bus/socket" --ready "$bus/ready" &
    services=$!
    trap 'kill $services $daemon 2>/dev/null; rm -rf "$bus"' EXIT
    for _ in $(seq 300); do [ -e "$bus/ready" ] && break; sleep 0.05; done
    [ -e "$bus/ready" ] || { echo "the stand-in NetworkManager and ModemManager did not start" >&2; exit 1; }
    send() { dbus-send --bus="unix:path=$bus/socket" --print-reply --dest=org.barge.TestDesktop /control "$@" >/dev/null; }
    send org.barge.TestDesktop.AddDevice string:eth0 string:eth0 uint32:4
    send org.barge.TestDesktop.AddModem string:wwan0 uint32:1
    export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$bus/socket"
else
    export DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/barge-bench-no-bus
fi

for size in $sizes; do
    "$bin/barge-bench" reconcile --entries "$size"
done
printf '\n%-8s %9s %11s %10s %10s %15s %8s %28s\n' entries "start" "reconcile" "peak RSS" "RSS" "idle CPU" "syscalls" "RSS after status --json"
for size in $sizes; do
    work=$(mktemp -d /tmp/barge-agent-bench-XXXXXX)
    "$bin/barge-bench" agent-state "$work" --entries "$size" >/dev/null
    if [ "$desktop" = 1 ]; then
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        printf 'metrics-listen: %s\n' "$port" >> "$work/barge.yaml"
    fi
    began=$(date +%s.%N)
    "$bin/barge" agent --config "$work/barge.yaml" 2>"$work/agent.log" &
    pid=$!
    until curl -sf --unix-socket "$work/barge.sock" http://barge/v1/agent >"$work/agent.json" 2>/dev/null; do sleep 0.05; done
    ready=$(date +%s.%N)
    reconcile=$(python3 -c "import json; print('%.1f ms' % (json.load(open('$work/agent.json'))['lastReconcileSeconds'] * 1000))")
    hwm=$(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' /proc/$pid/status)
    rss=$(awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' /proc/$pid/status)
    cpu0=$(awk '{print $14 + $15}' /proc/$pid/stat)
    timeout -s INT "$idle" strace -f -qq -c -p "$pid" -o "$work/strace.txt" 2>/dev/null || true
    cpu1=$(awk '{print $14 + $15}' /proc/$pid/stat)
    calls=$(awk '$NF == "total" {print $(NF-2)}' "$work/strace.txt")
    # The full status (every job, as `barge status --json` asks for it) and the memory after it.
    "$bin/barge" status --json --config "$work/barge.yaml" >"$work/status.json"
    jobs=$(python3 -c "import json; d=json.load(open('$work/status.json')); print(sum(1 for j in d['jobs'] if j['state'] == 'up-to-date'))")
    [ "$jobs" = "$size" ] || { echo "expected $size up-to-date jobs, found $jobs" >&2; kill $pid; exit 1; }
    after=$(awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' /proc/$pid/status)
    status_size=$(du -k "$work/status.json" | cut -f1)
    if [ "$desktop" = 1 ]; then
        grep -Eq '^barge_jobs\{state="up-to-date"\} '"$size"'(\.0)?$' <(curl -sf "http://127.0.0.1:$port/metrics") \
            || { echo "the metrics listener did not count $size up-to-date jobs" >&2; exit 1; }
        grep -q "NetworkManager Metered=guess-no" <("$bin/barge" net --config "$work/barge.yaml") \
            || { echo "the agent did not take NetworkManager's verdict" >&2; exit 1; }
    fi
    kill -TERM $pid
    wait $pid || true
    idle_cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$ticks" -v s="$idle" 'BEGIN {printf "%.2f s / %d s", (b - a) / t, s}')
    printf '%-8s %9s %11s %10s %10s %15s %8s %28s\n' "$size" "$(awk -v a="$began" -v b="$ready" 'BEGIN {printf "%.2f s", b - a}')" \
        "$reconcile" "$hwm" "$rss" "$idle_cpu" "${calls:-0}" "$after ($((status_size / 1024)) MiB of JSON)"
    rm -rf "$work"
done
echo
echo "targets: reconcile 10k ≤ 100 ms, 100k ≤ 1 s and ≤ 64 MiB RSS; idle CPU near zero, no periodic wake-ups"
