#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds with warnings as errors, runs every test
# (unit, integration against a throwaway PostgreSQL, end to end through the binary), then the unit
# tests again under AddressSanitizer and UndefinedBehaviorSanitizer, and every fuzz target for a
# few seconds (scripts/fuzz.sh; FUZZ_SECONDS per target, default 12).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" --tests

BUILD_DIR="$root/build-ci" "$root/scripts/build.sh" -DKILN_WERROR=ON -DKILN_TESTS=ON
BUILD_DIR="$root/build-asan" BUILD_TYPE=Debug \
  TARGETS="kiln_common_tests kiln_dag_tests kiln_config_tests kiln_scheduler_tests kiln_executor_tests kiln_web_tests kiln_daemon_tests kiln_plugins_tests" \
  "$root/scripts/build.sh" -DKILN_WERROR=ON -DKILN_TESTS=ON -DKILN_SANITIZE=ON

status=0
asan=ok fuzz=ok all=ok
echo "== unit tests under ASan/UBSan"
(cd "$root/build-asan" && ctest -j "$(nproc)" --output-on-failure \
  -R '^(common|dag|config|scheduler|executor|web|daemon|plugins)/') || { status=1; asan=FAILED; }
echo "== fuzz targets, ${FUZZ_SECONDS:-12} s each"
"$root/scripts/fuzz.sh" "${FUZZ_SECONDS:-12}" || { status=1; fuzz=FAILED; }
echo "== all tests"
(cd "$root/build-ci" && ctest -j "$(nproc)" --output-on-failure) || { status=1; all=FAILED; }
# Last, so that the end of a long log says which part failed (each part's own output is above).
echo "== summary: unit tests under ASan/UBSan $asan, fuzz targets $fuzz, all tests $all"
exit $status
