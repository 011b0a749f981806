#!/usr/bin/env bash
# Fuzzes Barge's parsers with libFuzzer and AddressSanitizer (the toolchain's own: swiftc -sanitize=fuzzer,address,
# and clang's for the libyaml that Yams embeds). Each target runs for SECONDS from a seed corpus (the example
# manifests, the loader's fixtures, the sample configs, and the inputs committed under Tests/Fuzz/TARGET), its new
# inputs kept in .build-fuzz/corpus/TARGET between runs. A violated property or a crash stops the run: libFuzzer
# prints it and writes the input to .build-fuzz/crashes/; the script exits 1. Add the input to Tests/Fuzz/TARGET
# once fixed: the test suite replays that directory.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]      targets: manifest, config, units (default: all, 60 s each)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
targets=()
while (($#)); do
    case "$1" in
        --seconds)
            [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --seconds needs a number" >&2; exit 2; }
            seconds="$2"
            shift 2
            ;;
        -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        manifest | config | units) targets+=("$1"); shift ;;
        *) echo "fuzz.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
((${#targets[@]})) || targets=(manifest config units)

build=.build-fuzz
swift build -c release --build-path "$build" --product barge-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DBARGE_FUZZ \
    -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld \
    -Xcc -fsanitize=fuzzer-no-link,address >&2
binary="$(swift build -c release --build-path "$build" --show-bin-path)/barge-fuzz"

seeds() {
    case "$1" in
        manifest) echo examples/manifests.d Tests/BargeLoaderTests/Fixtures/good Tests/BargeLoaderTests/Fixtures/bad \
            Tests/BargeLoaderTests/Fixtures/dup-across ;;
        config) echo etc/barge Tests/BargeLoaderTests/Fixtures/barge-test.yaml ;;
        units) echo ;;
    esac
}

mkdir -p "$build/crashes"
failed=0
for target in "${targets[@]}"; do
    corpus="$build/corpus/$target"
    mkdir -p "$corpus"
    # Seeds copied in (libFuzzer reads directories), never over an input already there.
    for seed in $(seeds "$target") "Tests/Fuzz/$target"; do
        if [[ -d "$seed" ]]; then
            cp -n "$seed"/* "$corpus"/ 2> /dev/null || true
        elif [[ -f "$seed" ]]; then
            cp -n "$seed" "$corpus/" 2> /dev/null || true
        fi
    done
    echo "== $target: $seconds s from $(find "$corpus" -type f | wc -l) inputs" >&2
    # Swift's own crash handler off: libFuzzer and AddressSanitizer report the crash and keep the input.
    if ! SWIFT_BACKTRACE=enable=no BARGE_FUZZ_TARGET="$target" "$binary" "$corpus" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/crashes/$target-" 2> "$build/$target.log"; then
        tail -40 "$build/$target.log" >&2
        echo "== $target: FAILED (input in $build/crashes/)" >&2
        failed=1
        continue
    fi
    grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|cov: " "$build/$target.log" \
        | tail -4 >&2 || true
    echo "== $target: held for $seconds s" >&2
done
exit "$failed"
