#!/usr/bin/env bash
# Agent burst benchmark: how long `barge agent` takes to mirror a manifest of many small files from a local nginx,
# beside the engine alone (`barge-bench download`) on the same files in the same run.
#
#   scripts/bench/agent-burst.sh [--files N] [--runs N] [--limits "8/4 16/16 64/16"] [--fresh-fs [--mkfs-options O]]
#       [--compare BIN_DIR]
#
# For each concurrency limit (total/per-host) and each run: an empty output directory and state, `barge agent`
# started on one manifest of N entries (default 2,000 files of 16 KiB), and the time from the start until every file
# is in place and until `barge status` shows every job up to date; every file is then checked with sha256sum.
# Prints the median of the runs (default 3). The output of a run is moved aside, not deleted (see transfer.sh: on
# ext4 without a journal, files created right after as many were deleted are made far more slowly). With
# --fresh-fs (root) each run writes to an ext4 made afresh instead (lib/freshfs.sh). --compare BIN_DIR adds rows for
# another build's barge (an earlier commit's `scripts/build-release.sh` output), taking turns with this one.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib/origin.sh
source scripts/bench/lib/origin.sh
# shellcheck source=lib/freshfs.sh
source scripts/bench/lib/freshfs.sh

files=2000
runs=3
limits="8/4 16/16 64/16"
fresh_fs=false
mkfs_options=""
compare=""
while [ $# -gt 0 ]; do
    case "$1" in
        --files) files=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --limits) limits=$2; shift 2 ;;
        --fresh-fs) fresh_fs=true; shift ;;
        --mkfs-options) mkfs_options=$2; shift 2 ;;
        --compare) compare=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v nginx >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light >/dev/null
bin=$(scripts/build-release.sh barge barge-bench 2>/dev/null) || { scripts/build-release.sh barge barge-bench >/dev/null; exit 1; }

work=$(mktemp -d /var/tmp/barge-burst-XXXXXX)
chmod 755 "$work"
nginx_pid=""
agent_pid=""
waiter_pid=""
cleanup() {
    [ -n "$waiter_pid" ] && kill "$waiter_pid" 2>/dev/null || true
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
    freshfs_cleanup "$work/out"
    rm -rf --one-file-system "$work" || true
    sync
}
trap cleanup EXIT

mkdir -p "$work/root" "$work/aside" "$work/out"
if $fresh_fs; then freshfs_setup "$work" $(( files / 16 + 512 )); fi
for i in $(seq 1 "$files"); do head -c 16384 /dev/urandom > "$work/root/$i.bin"; done
(cd "$work/root" && sha256sum ./*.bin | sort -k2) > "$work/expected.sha256"
start_origin "$work" 1.bin
nginx_pid=$origin_pid
port=$origin_port

mkdir -p "$work/manifests.d"
{
    echo "version: 1"
    echo "download:"
    for i in $(seq 1 "$files"); do printf '  - url: http://127.0.0.1:%s/%s.bin\n    dest: %s/out/%s.bin\n' "$port" "$i" "$work" "$i"; done
} > "$work/manifests.d/10-burst.yaml"
: > "$work/engine.list"
for i in $(seq 1 "$files"); do printf 'http://127.0.0.1:%s/%s.bin\t%s/out/%s.bin\n' "$port" "$i" "$work" "$i" >> "$work/engine.list"; done

now() { date +%s%N; }
moved=0
fresh_output() {
    rm -rf "$work/state"
    if $fresh_fs; then
        freshfs_make "$work/out" "$mkfs_options"
    else
        if [ -d "$work/out" ]; then moved=$((moved + 1)); mv "$work/out" "$work/aside/$moved"; fi
        mkdir -p "$work/out"
    fi
    sync
    sleep 1
}
verify() { (cd "$work/out" && sha256sum ./*.bin | sort -k2) | cmp -s - "$work/expected.sha256"; }
median() { sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)] / 1e9}'; }

echo "mirroring $files files of 16 KiB, $runs runs per row (median)…" >&2
printf '\n%-34s %12s %14s\n' "$files × 16 KiB files" "all placed" "all up to date"
engine_times=()
for _ in $(seq 1 "$runs"); do
    fresh_output
    began=$(now)
    "$bin/barge-bench" download "$work/engine.list" --parallel 16
    engine_times+=($(( $(now) - began )))
    verify || { echo "the engine's files differ from the origin's" >&2; exit 1; }
done
printf '%-34s %12s %14s\n' "engine alone, 16 connections" "$(printf '%s\n' "${engine_times[@]}" | median) s" "-"

for limit in $limits; do
    total=${limit%/*}
    per_host=${limit#*/}
    cat > "$work/barge.yaml" <<EOF
manifests: $work/manifests.d
state-dir: $work/state
control-socket: $work/barge.sock
allowed-roots: [$work/out]
concurrency: {total: $total, per-host: $per_host}
EOF
    builds=("$bin")
    [ -n "$compare" ] && builds+=("$compare")
    declare -A placed_times=() done_times=()
    for _ in $(seq 1 "$runs"); do
        for build in "${builds[@]}"; do  # the builds take turns, so drift in the machine's speed hits both alike
            fresh_output
            # The last file's arrival, seen through inotify (a find every 10 ms would take CPU from the agent).
            "$bin/barge-bench" wait-files "$work/out" "$files" .bin > "$work/placed" &
            waiter_pid=$!
            began=$(now)
            "$build/barge" agent --config "$work/barge.yaml" 2>"$work/agent.log" &
            agent_pid=$!
            wait "$waiter_pid"
            waiter_pid=""
            placed_times[$build]+="$(( $(cat "$work/placed") - began )) "
            until [ "$("$build/barge" status --json --config "$work/barge.yaml" 2>/dev/null | grep -o '"up-to-date"' | wc -l)" -ge "$files" ]; do
                sleep 0.01
            done
            done_times[$build]+="$(( $(now) - began )) "
            kill -TERM "$agent_pid"
            wait "$agent_pid" || true
            agent_pid=""
            verify || { echo "the agent's files differ from the origin's" >&2; exit 1; }
        done
    done
    for build in "${builds[@]}"; do
        label="barge agent, $total in all, $per_host per host"
        [ "$build" != "$bin" ] && label="  the same, $build"
        # shellcheck disable=SC2086 # the times are words
        printf '%-34s %12s %14s\n' "$label" "$(printf '%s\n' ${placed_times[$build]} | median) s" \
            "$(printf '%s\n' ${done_times[$build]} | median) s"
    done
    unset placed_times done_times
done
echo
echo "the agent's times include its start (loading the manifest, creating the jobs in its store)"
