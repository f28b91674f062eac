#!/usr/bin/env bash
# Configures and builds kiln into BUILD_DIR (default build/) with Ninja and ccache.
#   scripts/build.sh [extra cmake args...]
# BUILD_TYPE (default RelWithDebInfo) and TARGETS (default: everything) narrow what is built.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
targets=()
for t in ${TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
