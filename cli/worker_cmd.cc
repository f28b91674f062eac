// `kiln worker`: runs attempts of some pools on this machine (daemon/worker.h).
#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "cli/config_util.h"
#include "common/time.h"
#include "daemon/worker.h"

namespace kiln::cli {

int Worker(const WorkerCmdOptions& o) {
  auto cfg = LoadConfig(o.config);  // applies KILN_DATABASE_URL
  if (!cfg) return 2;
  daemon::WorkerOptions options;
  options.database_url = o.database.empty() ? cfg->database_url : o.database;
  if (options.database_url.empty()) {
    std::cerr << "kiln worker: say which database: --database URL, KILN_DATABASE_URL or [database] "
                 "url in --config (a worker has no embedded PostgreSQL)\n";
    return 2;
  }
  options.config = std::move(*cfg);
  // Tasks get their environment from the daemon that handed them out, never the worker's.
  ::unsetenv("KILN_DATABASE_URL");
  auto lease = ParseDuration(o.lease);
  if (!lease.ok() || *lease < std::chrono::seconds(3)) {
    std::cerr << "kiln worker: --lease: expected a duration of at least 3s, e.g. \"30s\", got \""
              << o.lease << "\"\n";
    return 2;
  }
  options.pools = o.pools;
  options.slots = o.slots;
  options.name = o.name;
  options.data_dir = o.data_dir;
  options.lease = *lease;
  return daemon::RunWorker(std::move(options));
}

}  // namespace kiln::cli
