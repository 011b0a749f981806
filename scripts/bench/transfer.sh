#!/usr/bin/env bash
# Transfer benchmark: the same files from the same local nginx with barge, curl, wget and aria2c, in one run.
#
#   scripts/bench/transfer.sh [--runs N] [--small-runs N] [--large-mib N] [--small N] [--fresh-fs [--mkfs-options O]]
#
# Data: one large file (default 1 GiB) and many 16 KiB files (default 2,000), served by an nginx started here on
# 127.0.0.1. Every result is verified with sha256sum after each run (not timed). Prints the median of N runs (the
# small files: of --small-runs, default 9, since one run lasts a quarter of a second and varies by ±30 % here):
# wall time, throughput, CPU time (user+sys) and peak RSS (GNU time), side by side. The tools take turns: each
# round runs every one once. barge is the release build as shipped (scripts/build-release.sh).
#
# --fresh-fs (root): the results go to an ext4 file system made afresh before every run (mkfs.ext4 with
# --mkfs-options, default none: a journal, as Debian makes it; "-O ^has_journal" is like this VM's root), on a loop
# device with direct I/O, so syncs still reach the disk. On the machine's own file system the speed of creating files
# drifts with its history (recently freed inodes, crowded directories) by more than most changes being measured; a
# fresh one spreads far less. It measures creating files on an empty file system, the quickest case.
#
# Durability differs: barge fsyncs every file and renames it into place (the small files with grouped syncs);
# curl, wget and aria2c do not sync at all, so "curl + sync" is shown as the honest durable comparison.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib/origin.sh
source scripts/bench/lib/origin.sh
# shellcheck source=lib/freshfs.sh
source scripts/bench/lib/freshfs.sh

runs=3
small_runs=9
large_mib=1024
small=2000
fresh_fs=false
mkfs_options=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --small-runs) small_runs=$2; shift 2 ;;
        --large-mib) large_mib=$2; shift 2 ;;
        --small) small=$2; shift 2 ;;
        --fresh-fs) fresh_fs=true; shift ;;
        --mkfs-options) mkfs_options=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

need=()
for tool in nginx:nginx-light curl:curl wget:wget aria2c:aria2 /usr/bin/time:time sha256sum:coreutils; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
fi

bin=$(scripts/build-release.sh barge barge-bench 2>/dev/null) || { scripts/build-release.sh barge barge-bench >/dev/null; exit 1; }

work=$(mktemp -d /var/tmp/barge-bench-XXXXXX)
chmod 755 "$work"
nginx_pid=""
cleanup() {
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
    freshfs_cleanup "$work/out"
    rm -rf --one-file-system "$work" || true
    sync  # the freed inodes' table blocks written: new files skip them for a minute, not six (see reset_out)
}
trap cleanup EXIT

echo "preparing data in $work ($large_mib MiB file, $small × 16 KiB files)…" >&2
mkdir -p "$work/root/small" "$work/out" "$work/aside"
if $fresh_fs; then freshfs_setup "$work" $(( large_mib + small / 16 + 1024 )); fi
head -c $((large_mib * 1024 * 1024)) /dev/urandom > "$work/root/large.bin"
large_sha=$(sha256sum "$work/root/large.bin" | cut -d' ' -f1)
for i in $(seq 1 "$small"); do head -c 16384 /dev/urandom > "$work/root/small/$i.bin"; done
(cd "$work/root/small" && sha256sum ./*.bin | sort -k2) > "$work/small.sha256"

start_origin "$work" small/1.bin
nginx_pid=$origin_pid
port=$origin_port
base="http://127.0.0.1:$port"

# Lists for the many-files runs.
: > "$work/barge.list"; : > "$work/curl.cfg"; : > "$work/urls"; : > "$work/aria2.list"
for i in $(seq 1 "$small"); do
    printf '%s\t%s\n' "$base/small/$i.bin" "$work/out/small/$i.bin" >> "$work/barge.list"
    printf 'url = "%s"\noutput = "%s"\n' "$base/small/$i.bin" "$work/out/small/$i.bin" >> "$work/curl.cfg"
    printf '%s\n' "$base/small/$i.bin" >> "$work/urls"
    printf '%s\n  out=%s.bin\n' "$base/small/$i.bin" "$i" >> "$work/aria2.list"
done

verify_large() { [ "$(sha256sum "$work/out/large.bin" | cut -d' ' -f1)" = "$large_sha" ]; }
verify_small() { (cd "$work/out/small" && sha256sum ./*.bin | sort -k2) | cmp -s - "$work/small.sha256"; }
# Each run starts from an empty output directory with nothing left to write back. The small files of the run
# before are moved aside, not deleted: ext4 without a journal (this machine's root) skips inodes freed in the last
# 60 s (6 min while their table block is dirty), so 2,000 files created right after 2,000 were deleted scan past
# all of them for every new file, which made every tool 2-3x slower and measured the file system, not the tool.
# Caches are not dropped: that timed reading the tools' own binaries and the source data from disk.
runs_done=0
reset_out() {
    if $fresh_fs; then
        freshfs_make "$work/out" "$mkfs_options"
        mkdir -p "$work/out/small"
        sync
        sleep 1
        return
    fi
    rm -f "$work/out/large.bin"
    if [ -d "$work/out/small" ]; then
        runs_done=$((runs_done + 1))
        mv "$work/out/small" "$work/aside/$runs_done"
    fi
    mkdir -p "$work/out/small"
    sync
    sleep 1  # the disk settles (write-back, discards of the file deleted above) before the next tool starts
}

# The measurements: a name, the content kind (large or small) and a command line (eval'd). They run in turns, one
# run of each per round, so a drift of the machine over the benchmark (page cache, the host) weighs on all alike.
large_bytes=$((large_mib * 1024 * 1024))
small_bytes=$((small * 16384))
names=(); kinds=(); commands=()
add() { names+=("$1"); kinds+=("$2"); commands+=("$3"); }
add "barge get (sha256, fsync)" large "'$bin/barge' get --sha256 $large_sha '$base/large.bin' '$work/out/large.bin'"
add "curl" large "curl -s -o '$work/out/large.bin' '$base/large.bin'"
add "curl + sync" large "sh -c \"curl -s -o '$work/out/large.bin' '$base/large.bin' && sync\""
add "wget" large "wget -q -O '$work/out/large.bin' '$base/large.bin'"
add "aria2c" large "aria2c -q --allow-overwrite=true --file-allocation=none -d '$work/out' -o large.bin '$base/large.bin'"
add "barge (16 parallel, fsync)" small "'$bin/barge-bench' download '$work/barge.list' --parallel 16"
add "curl --parallel 16" small "curl -s --parallel --parallel-max 16 -K '$work/curl.cfg'"
add "curl --parallel 16 + sync" small "sh -c \"curl -s --parallel --parallel-max 16 -K '$work/curl.cfg' && sync\""
add "wget -i" small "wget -q -i '$work/urls' -P '$work/out/small'"
add "aria2c -j 16" small "aria2c -q -j 16 --file-allocation=none -d '$work/out/small' -i '$work/aria2.list'"

rounds=$(( runs > small_runs ? runs : small_runs ))
echo "running (a warm-up round, then $runs rounds of the large file and $small_runs of the small files; median)…" >&2
# Round 0 warms up and is not counted: the first runs after the data was made are slower for every tool (fresh
# memory for the page cache; on this VM up to twice as slow), more so for the tools that write more.
# Each round runs the tools in its own order (shuffled, seeded by the round number, so a run can be repeated): no
# tool always runs right after the same other. (Rotating the list each round did not do that: it keeps the
# neighbours, and the small-file barge run always came right after a 1 GiB file was written and removed.)
for round in $(seq 0 "$rounds"); do
    order=$(seq 0 $((${#names[@]} - 1)) | awk -v seed="$round" 'BEGIN { srand(seed + 1) } { print rand(), $1 }' | sort -n | cut -d' ' -f2)
    for i in $order; do
        if [ "${kinds[$i]}" = large ]; then [ "$round" -le "$runs" ] || continue; else [ "$round" -le "$small_runs" ] || continue; fi
        reset_out
        # Wall time from the clock in nanoseconds (GNU time rounds it to 10 ms); CPU and peak RSS from GNU time.
        start=$(date +%s%N)
        eval "/usr/bin/time -f '%U %S %M' -o '$work/time' ${commands[$i]}" >/dev/null 2>"$work/stderr" || {
            echo "${names[$i]} failed: $(tail -3 "$work/stderr")" >&2; exit 1; }
        wall=$(awk -v s="$start" -v e="$(date +%s%N)" 'BEGIN { printf "%.4f", (e - s) / 1e9 }')
        if [ "${kinds[$i]}" = large ]; then verify_large; else verify_small; fi || {
            echo "${names[$i]}: wrong content" >&2; exit 1; }
        [ "$round" -gt 0 ] && echo "$wall $(cat "$work/time")" >> "$work/samples.$i"
        printf '  round %d  %-28s %s s\n' "$round" "${names[$i]}" "$wall" >&2
    done
done

rows=()
for i in "${!names[@]}"; do
    count=$(wc -l < "$work/samples.$i")
    read -r wall user sys rss < <(sort -n "$work/samples.$i" | sed -n "$(( (count + 1) / 2 ))p")
    bytes=$([ "${kinds[$i]}" = large ] && echo $large_bytes || echo $small_bytes)
    rows+=("$(awk -v n="${names[$i]}" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v b="$bytes" \
        'BEGIN { printf "%-28s %8.3f s %10.1f MB/s %8.2f s %8.1f MiB", n, w, (w > 0 ? b / w / 1e6 : 0), u + s, r / 1024 }')")
done

# Pacing accuracy: the large file under a cap that makes it last about ten seconds.
cap_mib=$(( large_mib / 10 > 0 ? large_mib / 10 : 1 ))
reset_out
/usr/bin/time -f "%e" -o "$work/time" "$bin/barge" get --max-rate "${cap_mib}MiB/s" "$base/large.bin" "$work/out/large.bin" >/dev/null 2>&1
verify_large
paced=$(cat "$work/time")
pacing=$(awk -v b="$large_bytes" -v w="$paced" -v c="$cap_mib" \
    'BEGIN { r = b / w / 1048576; printf "barge get --max-rate %dMiB/s: %.2f s, %.2f MiB/s achieved (%+.1f %% of the cap)", c, w, r, (r / c - 1) * 100 }')

printf '\n%-28s %10s %15s %10s %12s\n' "${large_mib} MiB file" "wall" "throughput" "CPU" "peak RSS"
for row in "${rows[@]:0:5}"; do echo "$row"; done
printf '\n%-28s %10s %15s %10s %12s\n' "$small × 16 KiB files" "wall" "throughput" "CPU" "peak RSS"
for row in "${rows[@]:5}"; do echo "$row"; done
printf '\npacing: %s\n' "$pacing"
