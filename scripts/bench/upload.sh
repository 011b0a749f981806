#!/usr/bin/env bash
# Upload benchmark: the same files to the same local servers with barge, curl -T and tuspy's tus client, in one run.
#
#   scripts/bench/upload.sh [--runs N] [--small-runs N] [--large-mib N] [--small N]
#
# Data: one large file (default 1 GiB) and many 16 KiB files (default 2,000). Servers, started here on 127.0.0.1:
# nginx with its WebDAV module (PUT) and tuspyserver (tus 1.0, from PyPI, in the venv scripts/install-deps.sh makes).
# Every upload is verified after each run (the server's copies' SHA-256 against the sources'; not timed). Prints the
# median of N runs: wall time, throughput, CPU time (user+sys) and peak RSS (GNU time), side by side. The tools take
# turns: each round runs every one once, in a shuffled order. barge is the release build's engine driven by
# barge-bench (`barge-bench upload LIST`: every file started at once, the engine's limits queue them), as the agent
# drives it.
#
# The tus server is one Python process: with it the server, not the client, sets the pace; the PUT rows show what the
# clients themselves cost.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib/setup.sh
source scripts/bench/lib/setup.sh

runs=3
small_runs=5
large_mib=1024
small=2000
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --small-runs) small_runs=$2; shift 2 ;;
        --large-mib) large_mib=$2; shift 2 ;;
        --small) small=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

bench_need nginx:nginx-light curl:curl /usr/bin/time:time sha256sum:coreutils
bench_barge_bin barge barge-bench
venv="${BARGE_TEST_VENV:-${HOME:-/root}/.cache/barge/test-venv}"
[ -x "$venv/bin/python" ] || bash scripts/install-deps.sh >&2
python="$venv/bin/python"

work=$(mktemp -d /var/tmp/barge-upload-bench-XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf --one-file-system "$work" || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

echo "preparing data in $work ($large_mib MiB file, $small × 16 KiB files)…" >&2
mkdir -p "$work/src/small" "$work/dav/root/dav" "$work/dav/tmp" "$work/tus"
chmod 777 "$work/dav/root/dav"
head -c $((large_mib * 1024 * 1024)) /dev/urandom > "$work/src/large.bin"
large_sha=$(sha256sum "$work/src/large.bin" | cut -d' ' -f1)
for i in $(seq 1 "$small"); do head -c 16384 /dev/urandom > "$work/src/small/$i.bin"; done
(cd "$work/src/small" && sha256sum ./*.bin | cut -d' ' -f1 | sort) > "$work/small.sha256"

dav_port=$(free_port)
cat > "$work/dav/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $work/dav/nginx.pid;
error_log $work/dav/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path $work/dav/tmp;
    proxy_temp_path $work/dav/tmp; fastcgi_temp_path $work/dav/tmp; uwsgi_temp_path $work/dav/tmp; scgi_temp_path $work/dav/tmp;
    server {
        listen 127.0.0.1:$dav_port;
        root $work/dav/root;
        location /dav/ { dav_methods PUT; create_full_put_path on; dav_access user:rw all:r; client_max_body_size 0; }
    }
}
CONF
nginx -p "$work/dav" -c "$work/dav/nginx.conf" -e "$work/dav/error.log" &
pids+=($!)
tus_port=$(free_port)
"$python" scripts/servers/tus-server.py --port "$tus_port" --dir "$work/tus" >/dev/null 2>"$work/tus.log" &
pids+=($!)
wait_port "$dav_port"
wait_port "$tus_port"
dav="http://127.0.0.1:$dav_port/dav"
tus="http://127.0.0.1:$tus_port/files/"

# Lists for barge-bench: SOURCE<TAB>URL.
printf '%s\t%s\n' "$work/src/large.bin" "$dav/large.bin" > "$work/put-large.list"
printf '%s\t%s\n' "$work/src/large.bin" "$tus" > "$work/tus-large.list"
: > "$work/put-small.list"; : > "$work/tus-small.list"
for i in $(seq 1 "$small"); do
    printf '%s\t%s\n' "$work/src/small/$i.bin" "$dav/small/$i.bin" >> "$work/put-small.list"
    printf '%s\t%s\n' "$work/src/small/$i.bin" "$tus" >> "$work/tus-small.list"
done
cat > "$work/tus_upload.py" <<'PY'
import sys
from tusclient import client
url, chunk = sys.argv[1], int(sys.argv[2])
tus = client.TusClient(url)
for path in sys.argv[3:]:
    tus.uploader(path, chunk_size=chunk, metadata={"filename": path.rsplit("/", 1)[-1]}).upload()
PY
ls "$work/src/small/"*.bin > "$work/small.files"

# What the servers hold, checked after each run, then cleared.
verify() {
    local kind=$1 server=$2 sums
    if [ "$server" = put ]; then
        if [ "$kind" = large ]; then sums=$(sha256sum "$work/dav/root/dav/large.bin" | cut -d' ' -f1)
        else sums=$( (cd "$work/dav/root/dav/small" && sha256sum ./*.bin) | cut -d' ' -f1 | sort); fi
    else
        sums=$(find "$work/tus" -maxdepth 1 -type f -regextype egrep -regex '.*/[0-9a-f]{32}' -exec sha256sum {} + | cut -d' ' -f1 | sort)
    fi
    if [ "$kind" = large ]; then [ "$sums" = "$large_sha" ]; else [ "$sums" = "$(cat "$work/small.sha256")" ]; fi
}
reset_servers() {
    rm -rf "$work/dav/root/dav/"* "$work/tus/"*
    rm -rf "$work/tus/.locks"
    sync
}

large_bytes=$((large_mib * 1024 * 1024))
small_bytes=$((small * 16384))
names=(); kinds=(); servers=(); commands=()
add() { names+=("$1"); kinds+=("$2"); servers+=("$3"); commands+=("$4"); }
add "barge (PUT)" large put "'$bin/barge-bench' upload '$work/put-large.list' --protocol put --parallel 1"
add "curl -T (PUT)" large put "curl -sf -T '$work/src/large.bin' '$dav/large.bin'"
add "barge (tus, 16 MiB chunks)" large tus "'$bin/barge-bench' upload '$work/tus-large.list' --protocol tus --parallel 1"
add "tuspy (tus, 16 MiB chunks)" large tus "'$python' '$work/tus_upload.py' '$tus' 16777216 '$work/src/large.bin'"
add "barge (PUT, 16 parallel)" small put "'$bin/barge-bench' upload '$work/put-small.list' --protocol put --parallel 16"
add "curl -T --parallel 16 (PUT)" small put "curl -sf --parallel --parallel-max 16 -T '$work/src/small/[1-$small].bin' '$dav/small/'"
add "curl -T (PUT, one at a time)" small put "curl -sf -T '$work/src/small/[1-$small].bin' '$dav/small/'"
add "barge (tus, 16 parallel)" small tus "'$bin/barge-bench' upload '$work/tus-small.list' --protocol tus --parallel 16"
add "tuspy (tus, one at a time)" small tus "xargs -a '$work/small.files' '$python' '$work/tus_upload.py' '$tus' 16777216"

rounds=$(( runs > small_runs ? runs : small_runs ))
echo "running (a warm-up round, then $runs rounds of the large file and $small_runs of the small files; median)…" >&2
for round in $(seq 0 "$rounds"); do
    order=$(seq 0 $((${#names[@]} - 1)) | awk -v seed="$round" 'BEGIN { srand(seed + 1) } { print rand(), $1 }' | sort -n | cut -d' ' -f2)
    for i in $order; do
        if [ "${kinds[$i]}" = large ]; then [ "$round" -le "$runs" ] || continue; else [ "$round" -le "$small_runs" ] || continue; fi
        reset_servers
        start=$(date +%s%N)
        eval "/usr/bin/time -f '%U %S %M' -o '$work/time' ${commands[$i]}" >/dev/null 2>"$work/stderr" || {
            echo "${names[$i]} failed: $(tail -3 "$work/stderr")" >&2; exit 1; }
        wall=$(awk -v s="$start" -v e="$(date +%s%N)" 'BEGIN { printf "%.4f", (e - s) / 1e9 }')
        verify "${kinds[$i]}" "${servers[$i]}" || { echo "${names[$i]}: the server's copies are wrong" >&2; exit 1; }
        [ "$round" -gt 0 ] && echo "$wall $(cat "$work/time")" >> "$work/samples.$i"
        printf '  round %d  %-30s %s s\n' "$round" "${names[$i]}" "$wall" >&2
    done
done

print_rows() {
    local kind=$1 i count wall user sys rss bytes
    for i in "${!names[@]}"; do
        [ "${kinds[$i]}" = "$kind" ] || continue
        count=$(wc -l < "$work/samples.$i")
        read -r wall user sys rss < <(sort -n "$work/samples.$i" | sed -n "$(( (count + 1) / 2 ))p")
        bytes=$([ "$kind" = large ] && echo $large_bytes || echo $small_bytes)
        awk -v n="${names[$i]}" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v b="$bytes" \
            'BEGIN { printf "%-30s %8.3f s %10.1f MB/s %8.2f s %8.1f MiB\n", n, w, (w > 0 ? b / w / 1e6 : 0), u + s, r / 1024 }'
    done
}
printf '\n%-30s %10s %15s %10s %12s\n' "${large_mib} MiB file" "wall" "throughput" "CPU" "peak RSS"
print_rows large
printf '\n%-30s %10s %15s %10s %12s\n' "$small × 16 KiB files" "wall" "throughput" "CPU" "peak RSS"
print_rows small
