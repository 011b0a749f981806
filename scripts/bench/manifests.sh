#!/usr/bin/env bash
# Parse-and-validate benchmark: 10,000 entries in 100 manifest files, release build.
# Prints the time per run and peak memory. Usage: scripts/bench/manifests.sh [barge-bench options]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(scripts/build-release.sh barge-bench 2>/dev/null) || { scripts/build-release.sh barge-bench; exit 1; }
exec "$bin/barge-bench" manifests "$@"
