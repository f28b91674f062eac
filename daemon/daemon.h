// `kiln serve`: the daemon, from loading the pipelines folder to the last commit after a stop.
#pragma once

#include "config/daemon_config.h"

namespace kiln::daemon {

// Serves `config` until SIGINT or SIGTERM; prints what it does (the address, the sign-in URL, the
// schedules' first checks) on stdout and errors on stderr. Returns the process exit code.
int Serve(const config::DaemonConfig& config);

}  // namespace kiln::daemon
