#!/usr/bin/env bash
# Release build of the given products, the way barge is shipped: optimised, with the Swift runtime and Foundation
# linked statically (the binary needs no Swift toolchain on the machine it runs on, and starts in about 9 ms
# instead of 22: no dynamic symbol lookups in the Swift libraries), linked by lld. Prints the binaries' directory.
#
#   scripts/build-release.sh PRODUCT... > bin-dir
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(-c release --static-swift-stdlib -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld)
for product in "$@"; do
    swift build "${flags[@]}" --product "$product" >&2
done
swift build "${flags[@]}" --show-bin-path
