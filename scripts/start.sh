#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and starts `kiln serve` with the examples on the
# embedded PostgreSQL (data in .kiln/). Stop it with Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
BUILD_DIR="$root/build" "$root/scripts/build.sh" -DKILN_TESTS=OFF
cd "$root"
# As root, kiln's embedded PostgreSQL runs as an unprivileged user, who must be able to reach the
# data folder; a clone in a private folder (under /root, say) keeps its data in /var/lib instead.
data="$root/.kiln"
if [[ $(id -u) -eq 0 ]]; then
  pg_user=postgres
  id kiln >/dev/null 2>&1 && pg_user=kiln
  if ! setpriv --reuid="$pg_user" --regid="$pg_user" --clear-groups test -x "$root" 2>/dev/null; then
    data=/var/lib/kiln
    mkdir -p "$data"
    chmod 0711 "$data"
    echo "kiln: $root is private to root; keeping data in $data" >&2
  fi
fi
# Tasks run as the unprivileged user kiln-task, who must be able to read the examples; from a
# private clone they are served from a copy in the data folder.
pipelines="$root/examples"
if [[ $(id -u) -eq 0 ]] && id kiln-task >/dev/null 2>&1 &&
  ! setpriv --reuid=kiln-task --regid=kiln-task --clear-groups test -r "$pipelines/heartbeat/pipeline.toml" 2>/dev/null; then
  [[ "$data" == "$root/.kiln" ]] && data=/var/lib/kiln && mkdir -p "$data" && chmod 0711 "$data"
  rm -rf "$data/examples"
  cp -r "$pipelines" "$data/examples"
  chmod -R go+rX "$data/examples"
  pipelines="$data/examples"
  echo "kiln: $root is private to root; serving a copy of the examples from $pipelines" >&2
fi
# The examples' pools: examples/pytorch-train holds a slot of "gpu".
config="$data/kiln.toml"
if [[ ! -e "$config" ]]; then
  mkdir -p "$data"
  printf '# Written by scripts/start.sh for the examples (docs/configuration.md).\n[pools]\ngpu = 1\n' >"$config"
fi
exec "$root/build/cli/kiln" serve --config "$config" --pipelines "$pipelines" --data-dir "$data" "$@"
