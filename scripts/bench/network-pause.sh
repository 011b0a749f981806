#!/usr/bin/env bash
# Network-pause benchmark: how fast the agent pauses a transfer when the route to its origin moves to a metered
# uplink, and resumes it when the route moves back.
#
#   scripts/bench/network-pause.sh [--flips N] [--rate 4mbit]
#
# (--rate in tc's units; the 256 MiB must outlast the run: at 4mbit they take about 9 minutes, the run 20 s.)
# Needs root. Two network namespaces made here (deleted on every exit, with every process started): a client,
# where `barge agent` runs, and an origin, where nginx serves a 256 MiB sparse file on 10.99.0.1:8080. Two veth
# pairs join them: wired0/wired1 (10.77.0.0/24) and wwan0/wwan1 (10.78.0.0/24); a config rule calls `wwan*`
# metered. The origin→client direction is slowed by tc (tbf, --rate, default 4mbit) so the download of the
# `network: unmetered` entry lasts the whole run. Once it transfers, the client's default route is moved to wwan0
# N times (default 50): the pause latency runs from just before `ip route replace` to the first status (GET
# /v1/status on the control socket, polled back to back) that shows the job `suspended`; then the route moves
# back to wired0 and the resume latency runs to the first status that shows it `transferring` again. The span
# holds the `ip` command's own run time and one status request, so it is an upper bound on event→pause. On five
# of the flips the bytes are followed for 1.5 s of the pause: the job's counter, what the agent read from its
# socket (ss: received less queued; 0 when the transfer really stopped) and what the client's wired0 received
# (the peer sends on until the socket's receive buffer is full: the pause keeps the connection).
# Traffic goes only between the two namespaces.
#
# BARGE_BIN=DIR uses DIR/barge instead of the release build (e.g. BARGE_BIN=.build/debug).
set -euo pipefail
cd "$(dirname "$0")/../.."
flips=50
rate=4mbit
while [ $# -gt 0 ]; do
    case "$1" in
        --flips) flips=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
. scripts/bench/lib/setup.sh
bench_barge_bin barge

work=$(mktemp -d /tmp/barge-network-pause-bench-XXXXXX)
. scripts/bench/lib/netns.sh
# The namespaces and the links: the client's default route goes by the wired link at first.
netns_setup "$work" "$rate" wired:77 wwan:78

# The origin: a sparse file that outlasts the run.
mkdir -p "$work/root" "$work/out" "$work/manifests.d"
truncate -s 256M "$work/root/big.bin"
chmod 644 "$work/root/big.bin"
netns_nginx "$work"

# The agent in the client's namespace, with one entry that may use only unmetered networks.
cat > "$work/barge.yaml" <<YAML
manifests: $work/manifests.d
state-dir: $work/state
control-socket: $work/barge.sock
allowed-roots: [$work/out]
networks:
  - {match: {interface: "wwan*"}, cost: metered}
YAML
cat > "$work/manifests.d/10-bench.yaml" <<YAML
version: 1
download:
  - url: http://10.99.0.1:8080/big.bin
    dest: $work/out/big.bin
    network: unmetered
YAML
"$bin/barge" check --config "$work/barge.yaml" >"$work/check.txt" || { cat "$work/check.txt" >&2; exit 1; }
netns_spawn ip netns exec "$client" "$bin/barge" agent --config "$work/barge.yaml" 2>"$work/agent.log"

# The measurement (in the background, so that a signal ends the run at once).
python3 - "$work/barge.sock" "$client" "$flips" "$rate" <<'PY' &
import http.client, json, math, re, socket, statistics, subprocess, sys, time

sock_path, client, flips, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=5):
        super().__init__("barge", timeout=timeout)
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)

poll_times = []

def status():
    began = time.monotonic()
    connection = UnixConnection(sock_path)
    try:
        connection.request("GET", "/v1/status", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    poll_times.append(time.monotonic() - began)
    return json.loads(body)

def job():
    jobs = status()["jobs"]
    return jobs[0] if jobs else None

def wait_for(predicate, timeout):
    """Polls the status back to back until predicate(job) holds: (the job, when it was seen) or (last job, None)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = job()
        except (OSError, http.client.HTTPException, ValueError):
            time.sleep(0.01)
            continue
        if last is not None and predicate(last):
            return last, time.monotonic()
    return last, None

def route(gateway, device):
    subprocess.run(["ip", "-n", client, "route", "replace", "default", "via", gateway, "dev", device], check=True)

def wire_bytes():
    """Bytes the client's wired0 received (the origin answers by the wired link whatever the client's route)."""
    out = subprocess.run(["ip", "-n", client, "-j", "-s", "link", "show", "wired0"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)[0]["stats64"]["rx"]["bytes"]

def socket_read():
    """Bytes the agent read from its connections to the origin: received by TCP, less those still queued."""
    out = subprocess.run(["ip", "netns", "exec", client, "ss", "-tinH", "dst", "10.99.0.1"], check=True,
                         capture_output=True, text=True).stdout
    total = 0
    for queued, received in re.findall(r"^\S+\s+(\d+)\s+\d+\s.*?bytes_received:(\d+)", out, re.S | re.M):
        total += int(received) - int(queued)
    return total

def ms(seconds):
    return seconds * 1000

def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

running = lambda j: j["state"] == "transferring" and j.get("bytes", 0) > 0
first, seen = wait_for(running, 60)
if seen is None:
    sys.exit(f"the job did not start transferring: {first and (first['state'], first['reason'])}")

pauses, resumes, ip_times, missed, reasons, byte_checks = [], [], [], [], set(), []
check_every = max(1, flips // 5)
for flip in range(1, flips + 1):
    # A moment between flips: each move is an event of its own, and the transfer has bytes moving again.
    time.sleep(0.2)
    t0 = time.monotonic()
    route("10.78.0.1", "wwan0")
    ip_times.append(time.monotonic() - t0)
    paused, t1 = wait_for(lambda j: j["state"] == "suspended", 10)
    if t1 is None:
        missed.append(f"flip {flip}: no pause within 10 s (last: {paused and (paused['state'], paused['reason'])})")
        if paused and paused["state"] in ("up-to-date", "complete", "error", "invalid", "cancelled"):
            missed.append("the transfer ended: use a lower --rate")
            break
    else:
        pauses.append(t1 - t0)
        reasons.add(paused["reason"])
        if flip % check_every == 0:
            # While paused: the job's counter (it may still take in a late progress report of bytes read before
            # the pause), what the agent read from its socket, what reached the client's kernel.
            read0, wire0, settled = socket_read(), wire_bytes(), 0.0
            previous = paused["bytes"]
            while time.monotonic() - t1 < 1.5:
                time.sleep(0.1)
                later = job()
                if later["bytes"] != previous:
                    previous, settled = later["bytes"], time.monotonic() - t1
            byte_checks.append((flip, later["bytes"] - paused["bytes"], settled, socket_read() - read0,
                                wire_bytes() - wire0, later["state"], later.get("transfer")))
    t0 = time.monotonic()
    route("10.77.0.1", "wired0")
    ip_times.append(time.monotonic() - t0)
    back, t1 = wait_for(lambda j: j["state"] == "transferring", 10)
    if t1 is None:
        missed.append(f"flip {flip}: no resume within 10 s (last: {back and (back['state'], back['reason'])})")
        back, t1 = wait_for(lambda j: j["state"] == "transferring", 60)
        if t1 is None:
            break
    else:
        resumes.append(t1 - t0)

time.sleep(2)
end = job()
print(f"flips: {flips} (route to wwan0 and back; origin→client limited to {rate})")
if pauses:
    print(f"pause latency:  median {ms(statistics.median(pauses)):6.1f} ms   p90 {ms(percentile(pauses, 90)):6.1f} ms"
          f"   max {ms(max(pauses)):6.1f} ms   ({len(pauses)} pauses)")
if resumes:
    print(f"resume latency: median {ms(statistics.median(resumes)):6.1f} ms   p90 {ms(percentile(resumes, 90)):6.1f} ms"
          f"   max {ms(max(resumes)):6.1f} ms   ({len(resumes)} resumes)")
print(f"  each span runs from just before `ip route replace` to the first status showing the new state: an upper"
      f" bound,\n  holding `ip`'s own run time (median {ms(statistics.median(ip_times)):.1f} ms) and one status"
      f" request (median {ms(statistics.median(poll_times)):.1f} ms, {len(poll_times)} polled)")
for reason in sorted(reasons):
    print(f"reason while paused: {reason}")
if byte_checks:
    print("1.5 s after a pause (job counter: its last change, after the pause; read: from the agent's socket;"
          " received: by the client's kernel):")
for flip, job_delta, settled, read_delta, wire_delta, state, transfer in byte_checks:
    print(f"  flip {flip:3} ({state}{', ' + transfer if transfer else ''}): job bytes +{job_delta}"
          f"{f' (at +{ms(settled):.0f} ms)' if job_delta else ''}, read +{read_delta} B, received +{wire_delta} B")
for line in missed:
    print(line)
total = end.get("total")
print(f"at the end (route on wired0): {end['state']}, {end['bytes']} of {total if total is not None else '?'} bytes"
      f" ({end['reason']})")
print("target: pause ≤ 100 ms (event to transfer paused)")
sys.exit(1 if missed or end["state"] != "transferring" else 0)
PY
netns_pids+=($!)
wait $!
