// Shared plumbing of the processes that need a database (`kiln serve`, `kiln run`): the embedded
// PostgreSQL or a configured server, the environment tasks start from, the rows of a new run.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "config/daemon_config.h"
#include "dag/graph.h"
#include "dag/params.h"
#include "scheduler/scheduler.h"
#include "store/database.h"
#include "store/embedded.h"

namespace kiln::daemon {

// The database kiln uses: the configured URL, or a private cluster under the data folder.
struct DatabaseHandle {
  std::unique_ptr<store::EmbeddedPostgres> embedded;  // set when kiln started the cluster
  std::string url;
  std::unique_ptr<store::Database> db;  // migrated
};
Result<DatabaseHandle> OpenDatabase(const config::DaemonConfig& config);

// The environment tasks start from: PATH, HOME, LANG, LC_ALL, TZ, USER, LOGNAME, TMPDIR of this
// process when set (PATH defaults to the standard system path). Nothing else is passed on.
std::vector<std::pair<std::string, std::string>> BaseTaskEnv();

// The scheduler's options from the daemon config (pools, limits, folders, base env); attempts
// are recorded as supervised by `supervisor`.
scheduler::SchedulerOptions MakeSchedulerOptions(const config::DaemonConfig& config,
                                                 const std::string& supervisor);

// Who a kiln process is to the others on its database (runs.lease_owner, events' actor, lease
// rows). A daemon: "host:/absolute/data/dir", the same after a restart and different for every
// daemon of a host. Its supervisor: that + "/supervisor". A `kiln run`: that + ":run:<pid>".
std::string DaemonName(const std::filesystem::path& data_dir);
std::string SupervisorName(const std::string& daemon);
std::string ForegroundName(const std::filesystem::path& data_dir);

// The row set of a new run, from a loaded pipeline and its resolved params.
store::NewRun MakeNewRun(const dag::Pipeline& pipeline, const dag::ParamList& params,
                         const std::string& trigger, Instant now);

}  // namespace kiln::daemon
