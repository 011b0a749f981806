#!/usr/bin/env bash
# The main job on the built-in default: build barge and check the example manifests.
# (When the agent exists, this starts it on examples/ against a local origin.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build --product barge
bin="$(swift build --show-bin-path)/barge"
echo "== $bin check examples/manifests.d"
"$bin" check examples/manifests.d
