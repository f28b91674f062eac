// `kiln serve`: the daemon, from loading the pipelines folder to the last commit after a stop.
#pragma once

#include <functional>
#include <string>

#include "config/daemon_config.h"

namespace kiln::daemon {

// How `kiln serve` read its configuration, to read it again the same way (the same kiln.toml,
// flags and environment) when asked to reload: SIGHUP, `kiln reload`, POST /api/v1/reload.
struct ConfigSource {
  std::string file;  // the kiln.toml, as named on the command line; "" for the defaults
  std::function<config::DaemonConfigResult()> read;  // null: nothing to read again
};

// Serves `config` until SIGINT or SIGTERM; prints what it does (the address, the sign-in URL, the
// schedules' first checks) on stdout and errors on stderr. Returns the process exit code. On
// SIGHUP it reads `source` and its pipelines folder again; what a reload changes is in
// docs/configuration.md ("Reloading kiln.toml").
int Serve(const config::DaemonConfig& config, ConfigSource source = {});

}  // namespace kiln::daemon
