// `kiln worker`: runs attempts of some pools on this machine (daemon/worker.h).
#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "common/time.h"
#include "daemon/worker.h"

namespace kiln::cli {

int Worker(const WorkerCmdOptions& o) {
  daemon::WorkerOptions options;
  options.database_url = o.database;
  if (options.database_url.empty()) {
    const char* url = std::getenv("KILN_DATABASE_URL");
    if (url != nullptr) options.database_url = url;
  }
  if (options.database_url.empty()) {
    std::cerr << "kiln worker: say which database: --database URL or KILN_DATABASE_URL\n";
    return 2;
  }
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
