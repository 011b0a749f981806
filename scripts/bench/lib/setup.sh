# Sourced by the benchmarks: what they need before they start.
#
#   bench_need TOOL:PACKAGE...   installs the packages of the tools not on PATH (as root; else says what is missing)
#   bench_barge_bin PRODUCT...   sets $bin to the directory holding the products: $BARGE_BIN when set (e.g.
#                                BARGE_BIN=.build/debug), else the release build (built now when stale)

bench_need() {
    local need=() tool
    for tool in "$@"; do
        command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
    done
    [ ${#need[@]} -gt 0 ] || return 0
    [ "$(id -u)" = 0 ] || { echo "missing packages: ${need[*]}" >&2; exit 2; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
}

bench_barge_bin() {
    if [ -n "${BARGE_BIN:-}" ]; then
        bin=$(cd "$BARGE_BIN" && pwd)
    else
        bin=$(scripts/build-release.sh "$@" 2>/dev/null) || { scripts/build-release.sh "$@" >/dev/null; exit 1; }
    fi
    [ -x "$bin/barge" ] || { echo "no barge in $bin" >&2; exit 1; }
}
