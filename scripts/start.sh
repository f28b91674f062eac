#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and starts `kiln serve` with the examples on the
# embedded PostgreSQL (data in .kiln/). Stop it with Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
BUILD_DIR="$root/build" "$root/scripts/build.sh" -DKILN_TESTS=OFF
cd "$root"
exec "$root/build/cli/kiln" serve --pipelines examples "$@"
