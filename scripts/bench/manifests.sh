#!/usr/bin/env bash
# Parse-and-validate benchmark: 10,000 entries in 100 manifest files, release build.
# Prints the time per run and peak memory. Usage: scripts/bench/manifests.sh [barge-bench options]
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product barge-bench >/dev/null || { swift build -c release --product barge-bench; exit 1; }
exec "$(swift build -c release --show-bin-path)/barge-bench" manifests "$@"
