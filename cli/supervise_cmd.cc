// `kiln supervise`: the supervisor process a daemon starts for itself (daemon/supervision.h).
// Not meant to be run by hand: the daemon passes what it needs, the database URL in
// KILN_DATABASE_URL.
#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "daemon/supervision.h"

namespace kiln::cli {

int Supervise(const SuperviseOptions& o) {
  const char* url = std::getenv("KILN_DATABASE_URL");
  if (url == nullptr || *url == '\0' || o.data_dir.empty() || o.daemon.empty() || o.lease_ms <= 0) {
    std::cerr << "kiln supervise: started by kiln serve only (it needs --data-dir, --daemon, "
                 "--lease-ms and KILN_DATABASE_URL)\n";
    return 2;
  }
  daemon::SupervisionOptions options;
  options.data_dir = std::filesystem::absolute(o.data_dir).lexically_normal();
  options.daemon = o.daemon;
  options.database_url = url;
  options.lease = Duration(o.lease_ms);
  options.embedded = o.embedded;
  options.pg_bin_dir = o.pg_bin_dir;
  // The URL is not passed on: tasks get their environment from the daemon.
  ::unsetenv("KILN_DATABASE_URL");
  return daemon::RunSupervisor(options, o.ready_fd);
}

}  // namespace kiln::cli
