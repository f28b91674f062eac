#!/usr/bin/env bash
# Installs the Debian packages kiln needs to build, test and run, when any is missing, and (as
# root) creates the unprivileged user 'kiln-task' that `kiln serve` runs tasks as.
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
  clang libspdlog-dev nlohmann-json3-dev catch2 libcli11-dev libhowardhinnant-date-dev libssl-dev
  tzdata postgresql python3 python3-sklearn python3-numpy curl wrk
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  task_user
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
