#!/usr/bin/env bash
# Throttle benchmark: how closely a rate cap holds, and how soon a bandwidth-timetable boundary takes effect.
#
#   scripts/bench/throttle.sh [--rate-kib 2048] [--seconds 10]
#
# A local nginx (127.0.0.1, lib/origin.sh) serves a 4 GiB sparse file. Each case downloads it for a warm-up of 3 s
# and then --seconds (default 10), measuring the bytes the downloader took in over that span against the cap (Barge:
# its status, the bytes its transfers accepted; the others: their files' sizes, aria2c without its disk cache):
#   - one transfer capped at --rate-kib KiB/s: Barge (`max-rate` in its manifest entry), curl --limit-rate,
#     wget --limit-rate, aria2c --max-download-limit, side by side;
#   - eight transfers under one global cap of --rate-kib KiB/s: Barge (a `bandwidth` row), aria2c
#     (--max-overall-download-limit, -j 8);
#   - a timetable boundary: Barge under a row of --rate-kib KiB/s until the next minute starts, then a row of a
#     quarter of it; the time from the minute's start until the rate over the last 250 ms falls below the midpoint.
# The agent runs with its own config in a scratch directory; nothing but loopback is used.
#
# BARGE_BIN=DIR uses DIR/barge instead of the release build (e.g. BARGE_BIN=.build/debug).
set -euo pipefail
cd "$(dirname "$0")/../.."
rate_kib=2048
seconds=10
while [ $# -gt 0 ]; do
    case "$1" in
        --rate-kib) rate_kib=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
. scripts/bench/lib/setup.sh
bench_need nginx:nginx-light curl:curl wget:wget aria2c:aria2
bench_barge_bin barge

work=$(mktemp -d /tmp/barge-throttle-bench-XXXXXX)
cleanup() {
    # The agents are the measuring script's children, stopped by it.
    [ -z "${origin_pid:-}" ] || { kill -TERM "$origin_pid" 2>/dev/null; wait "$origin_pid" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT
. scripts/bench/lib/origin.sh
chmod 755 "$work"  # nginx's workers run unprivileged
mkdir -p "$work/root"
truncate -s 4G "$work/root/big.bin"
chmod 644 "$work/root/big.bin"
start_origin "$work" big.bin
base="http://127.0.0.1:$origin_port"
curl -sf -o /dev/null -r 0-0 "$base/big.bin" || { echo "the origin does not serve" >&2; cat "$work/error.log" >&2; exit 1; }

python3 - "$work" "$bin/barge" "$base" "$rate_kib" "$seconds" <<'PY'
import datetime, http.client, json, os, shutil, signal, socket, subprocess, sys, time

work, barge, base, rate_kib, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
cap = rate_kib * 1024

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("barge", timeout=5)
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

def barge_bytes(directory):
    """The bytes Barge's transfers took in (its status: what the write callback accepted, before its own disk
    buffering)."""
    connection = UnixConnection(f"{directory}/barge.sock")
    try:
        connection.request("GET", "/v1/status", headers={"Connection": "close"})
        return sum(job["bytes"] for job in json.loads(connection.getresponse().read())["jobs"])
    finally:
        connection.close()

def file_bytes(directory):
    """The bytes another tool wrote (its files' sizes; aria2c runs without its disk cache)."""
    total = 0
    for root, _, files in os.walk(directory + "/out"):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total

def measure(count, warm_up=3.0):
    """The rate over the span after the warm-up, and over the whole run from the start."""
    start = time.monotonic()
    time.sleep(warm_up)
    first, began = count(), time.monotonic()
    time.sleep(seconds)
    last, now = count(), time.monotonic()
    return (last - first) / (now - began), last / (now - start)

def agent(directory, config_extra, manifest):
    os.makedirs(f"{directory}/manifests.d", exist_ok=True)
    os.makedirs(f"{directory}/out", exist_ok=True)
    with open(f"{directory}/barge.yaml", "w") as f:
        f.write(f"manifests: {directory}/manifests.d\nstate-dir: {directory}/state\n"
                f"control-socket: {directory}/barge.sock\nallowed-roots: [{directory}/out]\n"
                f"concurrency: {{total: 8, per-host: 8}}\n{config_extra}")
    with open(f"{directory}/manifests.d/10-bench.yaml", "w") as f:
        f.write(manifest)
    log = open(f"{directory}/agent.log", "w")
    return subprocess.Popen([barge, "agent", "--config", f"{directory}/barge.yaml"], stdout=log, stderr=log)

def stop(process):
    process.send_signal(signal.SIGTERM)
    process.wait()

def entry(directory, name, extra=""):
    return f"  - url: {base}/big.bin\n    dest: {directory}/out/{name}\n{extra}"

def case(name):
    directory = f"{work}/{name}"
    os.makedirs(f"{directory}/out", exist_ok=True)
    return directory

def error(rates):
    span, whole = rates
    return (f"{span / 1024:8.1f} KiB/s {(span - cap) / cap * 100:+6.1f} %   "
            f"from the start {whole / 1024:8.1f} KiB/s {(whole - cap) / cap * 100:+6.1f} %")

print(f"cap {rate_kib} KiB/s; each rate over {seconds:.0f} s after a 3 s warm-up")
print()
print("one transfer:")
directory = case("barge-one")
process = agent(directory, "", "version: 1\ndownload:\n" + entry(directory, "big.bin", f"    max-rate: {rate_kib}KiB/s\n"))
print(f"  {'barge (max-rate)':28} {error(measure(lambda: barge_bytes(directory)))}")
stop(process)
for label, argv in [
    ("curl --limit-rate", ["curl", "-sf", "--limit-rate", f"{rate_kib}K", "-o", "OUT/big.bin", base + "/big.bin"]),
    ("wget --limit-rate", ["wget", "-q", f"--limit-rate={rate_kib}k", "-O", "OUT/big.bin", base + "/big.bin"]),
    ("aria2c --max-download-limit", ["aria2c", "-q", "--file-allocation=none", "--disk-cache=0", f"--max-download-limit={rate_kib}K",
                                     "-d", "OUT", "-o", "big.bin", base + "/big.bin"]),
]:
    if not shutil.which(argv[0]):
        print(f"  {label:28} (not installed)")
        continue
    directory = case(argv[0])
    process = subprocess.Popen([a.replace("OUT", directory + "/out") for a in argv])
    print(f"  {label:28} {error(measure(lambda: file_bytes(directory)))}")
    process.terminate()
    process.wait()

print()
print("eight transfers, one global cap:")
directory = case("barge-eight")
process = agent(directory, f"bandwidth:\n  - {{at: \"00:00\", limit: {rate_kib}KiB/s}}\n",
                "version: 1\ndownload:\n" + "".join(entry(directory, f"big{i}.bin") for i in range(8)))
print(f"  {'barge (bandwidth row)':28} {error(measure(lambda: barge_bytes(directory)))}")
stop(process)
if shutil.which("aria2c"):
    directory = case("aria2c-eight")
    with open(f"{directory}/list", "w") as f:
        for i in range(8):
            f.write(f"{base}/big.bin\n  out=big{i}.bin\n")
    process = subprocess.Popen(["aria2c", "-q", "-j", "8", "--file-allocation=none", "--disk-cache=0",
                                f"--max-overall-download-limit={rate_kib}K", "-d", directory + "/out",
                                "-i", f"{directory}/list"])
    print(f"  {'aria2c -j 8 (overall limit)':28} {error(measure(lambda: file_bytes(directory)))}")
    process.terminate()
    process.wait()

print()
print("a timetable boundary:")
now = datetime.datetime.now()
if now.second > 45:  # room for the warm-up before the boundary
    time.sleep(61 - now.second)
    now = datetime.datetime.now()
boundary = (now + datetime.timedelta(minutes=1)).replace(second=0, microsecond=0)
after = (boundary + datetime.timedelta(minutes=1)).strftime("%H:%M")
low = cap // 4
rows = (f"bandwidth:\n  - {{at: \"00:00\", limit: {rate_kib}KiB/s}}\n"
        f"  - {{at: \"{boundary.strftime('%H:%M')}\", limit: {rate_kib // 4}KiB/s}}\n"
        f"  - {{at: \"{after}\", limit: {rate_kib}KiB/s}}\n")
directory = case("barge-boundary")
process = agent(directory, rows, "version: 1\ndownload:\n" + entry(directory, "big.bin"))
samples = []
deadline = boundary.timestamp() + 5
while time.time() < deadline:
    try:
        samples.append((time.time(), barge_bytes(directory)))
    except OSError:
        pass  # the agent is starting
    time.sleep(0.05)
stop(process)
def rate_between(start, end):
    inside = [(t, b) for t, b in samples if start <= t <= end]
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) if len(inside) > 1 else float("nan")
before_rate = rate_between(boundary.timestamp() - 3, boundary.timestamp())
after_rate = rate_between(boundary.timestamp() + 2, boundary.timestamp() + 5)
midpoint = (cap + low) / 2
applied = None
for index, (t, b) in enumerate(samples):
    if t < boundary.timestamp():
        continue
    earlier = [(u, c) for u, c in samples[:index] if u >= t - 0.25]
    if earlier and (b - earlier[0][1]) / max(1e-6, t - earlier[0][0]) < midpoint:
        applied = t - boundary.timestamp()
        break
print(f"  before {boundary.strftime('%H:%M')}: {before_rate / 1024:.1f} KiB/s (row {rate_kib} KiB/s); "
      f"after: {after_rate / 1024:.1f} KiB/s (row {rate_kib // 4} KiB/s)")
print(f"  the rate fell below {midpoint / 1024:.0f} KiB/s "
      + (f"{applied:.2f} s after the boundary" if applied is not None else "not within 5 s"))
print("targets: within ±5 % over the span; a boundary applied within 1 s")
PY
