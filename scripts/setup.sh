#!/usr/bin/env bash
# Installs the Debian packages kiln needs to build, test and run, when any is missing, and (as
# root) creates the unprivileged user 'kiln-task' that `kiln serve` runs tasks as.
#   scripts/setup.sh           what building and running kiln needs
#   scripts/setup.sh --tests   also what its tests need: Chromium, Node.js and the npm packages
#                              of tests/browser (playwright-core, pinned by its lock file)
set -euo pipefail

task_user() {
  if [[ $(id -u) -eq 0 ]] && ! id kiln-task >/dev/null 2>&1; then
    echo "kiln setup: creating the user kiln-task, who runs the tasks of kiln serve" >&2
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin kiln-task
  fi
}

packages=(
  build-essential cmake ninja-build ccache pkg-config clang-format
  libboost-dev libboost-graph-dev libpqxx-dev libpq-dev libcpp-httplib-dev libtomlplusplus-dev
  clang libspdlog-dev nlohmann-json3-dev catch2 libcli11-dev libhowardhinnant-date-dev libssl-dev libcsv-dev
  tzdata postgresql python3 python3-sklearn python3-numpy curl wrk libgraphviz-dev
  python3-torch python3-faiss
)
tests=0
if [[ ${1:-} == --tests ]]; then
  tests=1
  # iproute2: the worker test that puts a worker on a host of its own (ip netns, veth).
  packages+=(chromium iproute2)
  # Node.js: the machine's own when it has one (Debian's npm conflicts with other builds of it).
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || packages+=(npm)
fi

# The browser tests' npm packages, exactly as tests/browser/package-lock.json pins them.
browser_packages() {
  ((tests)) || return 0
  local dir
  dir=$(cd "$(dirname "$0")/../tests/browser" && pwd)
  # node_modules/.kiln-lock is the lock file it was installed from.
  if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.kiln-lock" 2>/dev/null; then
    echo "kiln setup: installing the npm packages of tests/browser" >&2
    # A download that stalls is cut off and tried again: npm alone can wait on one for ever.
    local try
    for try in 1 2 3; do
      if timeout 300 npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error \
        --fetch-timeout=60000 --fetch-retries=4 >/dev/null; then
        break
      fi
      ((try < 3)) || { echo "kiln setup: npm ci failed 3 times" >&2; return 1; }
      echo "kiln setup: npm ci failed or stalled (try $try of 3); trying again" >&2
    done
    cp "$dir/package-lock.json" "$dir/node_modules/.kiln-lock"
  fi
}

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  task_user
  browser_packages
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "kiln setup: missing packages: ${missing[*]}" >&2
  echo "kiln setup: run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "kiln setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
task_user
browser_packages
