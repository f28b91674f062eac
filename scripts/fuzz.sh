#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan, UBSan) and runs each for a while.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 600 s, every target)
# Every target first replays fuzz/regressions/<target>/ (inputs that once failed), then fuzzes
# from its seeds (fuzz/corpus/<target>/, plus the examples' pipelines) and from what earlier runs
# found (build-fuzz/corpus/<target>/, kept between runs). A failing input is saved under
# build-fuzz/findings/<target>/; the script exits 1 and says how to replay it. Turn each into a
# regression input and a unit test before fixing it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-600}
shift || true
all=(pipeline config schedule template values request data)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")

"$root/scripts/setup.sh"
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
names=()
for t in "${targets[@]}"; do names+=("fuzz_$t"); done
CXX=clang++ BUILD_DIR="$build" TARGETS="${names[*]}" \
  "$root/scripts/build.sh" -DKILN_FUZZ=ON -DKILN_TESTS=OFF

status=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  findings="$build/findings/$t"
  mkdir -p "$corpus" "$findings"
  seeds=("$root/fuzz/corpus/$t")
  if [[ $t == pipeline ]]; then
    mkdir -p "$build/seeds/pipeline"
    find "$root/examples" -name '*.toml' -exec cp {} "$build/seeds/pipeline/" \;
    seeds+=("$build/seeds/pipeline")
  fi
  regressions="$root/fuzz/regressions/$t"
  if [[ -d $regressions ]] && compgen -G "$regressions/*" >/dev/null; then
    if ! "$build/fuzz/fuzz_$t" -runs=0 "$regressions"/* >"$findings/regressions.log" 2>&1; then
      echo "fuzz $t: a regression input fails again (see $findings/regressions.log)" >&2
      status=1
      continue
    fi
  fi
  log="$findings/last-run.log"
  if "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="$findings/" "$corpus" "${seeds[@]}" >"$log" 2>&1; then
    runs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' || echo "?")
    echo "fuzz $t: ${runs} inputs in ${seconds} s, nothing found"
  else
    status=1
    echo "fuzz $t: FAILED; the last lines of $log:" >&2
    tail -n 30 "$log" >&2
    for f in "$findings"/crash-* "$findings"/leak-* "$findings"/timeout-* "$findings"/oom-*; do
      [[ -e $f ]] && echo "fuzz $t: replay with: $build/fuzz/fuzz_$t $f" >&2
    done
  fi
done
exit $status
