#!/usr/bin/env bash
# Yield benchmark: a background download beside the user's own, on a shaped link.
#
#   scripts/bench/yield.sh [--rate 50mbit] [--foreground-mib 64]
#
# Needs root. Two network namespaces made here (lib/netns.sh): a client and an origin, where nginx serves a 4 GiB
# sparse file (the background download) and a --foreground-mib file (the user's download), joined by one veth
# pair whose origin→client direction tc shapes to --rate (tbf, default 50mbit). First curl fetches the foreground
# file alone (its solo rate). Then, for each background downloader — Barge (a `priority: low` entry, the agent
# yielding), and for comparison a plain curl, wget and aria2c (those installed) — the background download runs
# alone for 10 s (its share of the link over the last 5 s), then curl fetches the foreground file beside it (its
# rate, against the solo one; the background's rate meanwhile), then the background runs on alone for 15 s (its
# rate in the last 5 s: whether it climbed back). Rates are the client's received bytes on the link, per second,
# sampled every 0.25 s; for Barge its own bytes come from its status. While the foreground runs, Barge's status
# line (reason and limit) is printed. Traffic goes only between the two namespaces.
#
# BARGE_BIN=DIR uses DIR/barge instead of the release build (e.g. BARGE_BIN=.build/debug).
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=50mbit
foreground_mib=64
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate=$2; shift 2 ;;
        --foreground-mib) foreground_mib=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
. scripts/bench/lib/setup.sh
bench_need nginx:nginx-light curl:curl wget:wget aria2c:aria2 tc:iproute2
bench_barge_bin barge

work=$(mktemp -d /tmp/barge-yield-bench-XXXXXX)
. scripts/bench/lib/netns.sh
netns_setup "$work" "$rate" wired:77
mkdir -p "$work/root" "$work/out" "$work/manifests.d"
truncate -s 4G "$work/root/background.bin"
head -c "$((foreground_mib << 20))" /dev/urandom > "$work/root/foreground.bin"
chmod 644 "$work/root/"*.bin
netns_nginx "$work"

cat > "$work/barge.yaml" <<YAML
manifests: $work/manifests.d
state-dir: $work/state
control-socket: $work/barge.sock
allowed-roots: [$work/out]
YAML
"$bin/barge" check --config "$work/barge.yaml" >"$work/check.txt" || { cat "$work/check.txt" >&2; exit 1; }
netns_spawn ip netns exec "$client" "$bin/barge" agent --config "$work/barge.yaml" 2>"$work/agent.log"

python3 - "$work" "$client" "$rate" <<'PY' &
import http.client, json, os, shutil, signal, socket, subprocess, sys, time

work, client, rate = sys.argv[1], sys.argv[2], sys.argv[3]
base = "http://10.77.0.1:8080"
units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
link = next(float(rate[:-len(u)]) * m for u, m in units.items() if rate.endswith(u)) / 8  # bytes per second

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("barge", timeout=5)
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

def barge_job():
    connection = UnixConnection(f"{work}/barge.sock")
    try:
        connection.request("GET", "/v1/status", headers={"Connection": "close"})
        jobs = json.loads(connection.getresponse().read())["jobs"]
    finally:
        connection.close()
    return jobs[0] if jobs else None

def received():
    out = subprocess.run(["ip", "-n", client, "-j", "-s", "link", "show", "wired0"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)[0]["stats64"]["rx"]["bytes"]

def in_client(argv):
    return subprocess.Popen(["ip", "netns", "exec", client] + argv, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

def link_rate(seconds):
    """The client's received bytes per second over the next `seconds`."""
    first, began = received(), time.monotonic()
    time.sleep(seconds)
    return (received() - first) / (time.monotonic() - began)

def foreground():
    """curl fetches the foreground file; its rate (bytes per second, as curl measured it) and the link's rate."""
    began, first = time.monotonic(), received()
    out = subprocess.run(["ip", "netns", "exec", client, "curl", "-sf", "-o", "/dev/null", "-w",
                          "%{speed_download}", base + "/foreground.bin"], check=True, capture_output=True,
                         text=True).stdout
    spent = time.monotonic() - began
    return float(out), (received() - first) / spent, spent

def mbit(rate):
    return f"{rate * 8 / 1e6:5.1f} Mbit/s"

def share(rate):
    return f"{rate / link * 100:3.0f} %"

solo, _, solo_time = foreground()
print(f"link: {rate} (tc tbf, origin→client); foreground: curl, {os.path.getsize(work + '/root/foreground.bin') >> 20}"
      f" MiB, alone {mbit(solo)} ({share(solo)} of the link) in {solo_time:.1f} s")

def run_barge():
    manifest = f"{work}/manifests.d/10-bg.yaml"
    with open(manifest, "w") as f:
        f.write(f"version: 1\ndownload:\n  - url: {base}/background.bin\n    dest: {work}/out/barge.bin\n"
                f"    priority: low\n")
    return manifest  # the agent's watcher takes it

tools = [("barge (low)", None)]
for name, argv in [
    ("curl", ["curl", "-sf", "-o", f"{work}/out/curl.bin", base + "/background.bin"]),
    ("wget", ["wget", "-q", "-O", f"{work}/out/wget.bin", base + "/background.bin"]),
    ("aria2c", ["aria2c", "-q", "--allow-overwrite=true", "--file-allocation=none", "-d", f"{work}/out",
                "-o", "aria2c.bin", base + "/background.bin"]),
]:
    if shutil.which(argv[0]):
        tools.append((name, argv))
    else:
        print(f"({name} is not installed: left out)")

rows, notes = [], []
for name, argv in tools:
    if argv is None:
        manifest = run_barge()
        process = None
    else:
        process = in_client(argv)
    time.sleep(5)
    alone = link_rate(5)
    # The foreground download, while the status is sampled (Barge) in the background.
    seen = []
    if argv is None:
        import threading
        stop = threading.Event()
        def watch():
            while not stop.is_set():
                job = barge_job()
                if job and "yielding" in job.get("reason", ""):
                    seen.append((job["reason"], job.get("limit"), job.get("bytesPerSecond")))
                time.sleep(0.5)
        watcher = threading.Thread(target=watch)
        watcher.start()
    fg, fg_link, fg_time = foreground()
    if argv is None:
        stop.set()
        watcher.join()
    during = max(0.0, fg_link - fg)
    samples = []
    for _ in range(3):
        samples.append(link_rate(5))
    rows.append((name, alone, fg, during, samples))
    if seen:
        reason, limit, own = seen[len(seen) // 2]
        notes.append(f"barge status while curl ran ({len(seen)} of the samples yielding): {reason}; limit {limit}")
    elif argv is None:
        notes.append("barge status while curl ran: never yielding")
    if process is not None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
    else:
        os.remove(manifest)  # the agent drops the job
    time.sleep(2)

print()
print(f"{'background':12} | {'alone':22} | {'foreground curl beside it':31} | {'background meanwhile':20} | "
      f"after it (share of the link, 5 s each)")
for name, alone, fg, during, after in rows:
    print(f"{name:12} | {mbit(alone)} ({share(alone)} link) | {mbit(fg)} ({fg / solo * 100:3.0f} % of solo) | "
          f"{mbit(during):>20} | " + "  ".join(share(r) for r in after))
for note in notes:
    print(note)
print("targets: Barge alone ≥ 80 % of the link; foreground beside it ≥ 85 % of its solo rate; Barge climbs back")
PY
netns_pids+=($!)
wait $!
