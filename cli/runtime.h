// Shared plumbing of the subcommands that need a database: the daemon config, the embedded
// PostgreSQL or a configured server, the environment tasks start from.
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

namespace kiln::cli {

// Reads --config (or the defaults) and applies KILN_DATABASE_URL. Errors are printed.
std::optional<config::DaemonConfig> LoadConfig(const std::string& config_path);

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

// The scheduler's options from the daemon config (pools, limits, folders, base env).
scheduler::SchedulerOptions MakeSchedulerOptions(const config::DaemonConfig& config);

// "host:pid", recorded as the lease owner of attempts.
std::string LeaseOwner();

// The row set of a new run, from a loaded pipeline and its resolved params.
store::NewRun MakeNewRun(const dag::Pipeline& pipeline, const dag::ParamList& params,
                         const std::string& trigger, Instant now);

// Prints diagnostics to stderr, one per line.
void PrintDiagnostics(const std::vector<dag::Diagnostic>& diagnostics);

}  // namespace kiln::cli
