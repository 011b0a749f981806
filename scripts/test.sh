#!/usr/bin/env bash
# The whole test suite, from a fresh clone: system packages, a build that must print no warnings,
# the format lint, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== build (warnings in our code fail the run)"
swift build --build-tests 2>&1 | tee "$log"
if grep -E "(^|/)(Sources|Tests|Package\.swift).*warning:|^warning: 'barge'" "$log" | grep -v "/.build/" ; then
    echo "the build printed warnings in Barge's own code (above)" >&2
    exit 1
fi

echo "== format lint"
swift format lint --strict -r Sources Tests Package.swift

echo "== tests"
swift test
