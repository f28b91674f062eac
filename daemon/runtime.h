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
#include "common/users.h"
#include "config/daemon_config.h"
#include "daemon/models.h"
#include "dag/graph.h"
#include "dag/params.h"
#include "dag/validate.h"
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

// Who tasks run as: `user`, with a user id of their run's own from `uids` when it holds any
// (common/users.h RunIdentity).
struct TaskUsers {
  Identity user;
  UidRange uids;
};

// When kiln is not root: its own user (executor.run_as, if set, must name it), no run ids.
// As root: executor.run_as; unset, "kiln-task" for a daemon (`kiln serve`) and root for a
// foreground `kiln run` (the caller's own tasks). "root", or a user whose uid is 0, is root.
// Run ids: executor.run_uids; unset, kDefaultRunUids for a daemon that switches user, none
// otherwise. Errors say what to create or set; a range that holds a user or group of the host
// is one.
inline constexpr UidRange kDefaultRunUids{1879048192, 1u << 24};
Result<TaskUsers> TaskUser(const config::DaemonConfig& config, bool daemon);

// <runs_dir> (mode 0711) and its pipeline folders made passable for the tasks of `users`, checked
// by a process with such an identity; an error names the first folder it cannot enter.
Status PrepareRunsFolder(const std::filesystem::path& runs_dir, const TaskUsers& users);
// <data_dir>/cache, the result cache's store: 01733 when tasks run as other users (they write
// and read it by hash, never list it), else 0700.
Status PrepareCacheFolder(const std::filesystem::path& cache_dir, const TaskUsers& users);

// The scheduler's options from the daemon config (pools, limits, folders, base env); attempts
// are recorded as supervised by `supervisor`.
// Gates start with their model's champion from `champions` (none: no champion).
scheduler::SchedulerOptions MakeSchedulerOptions(
    const config::DaemonConfig& config, const std::string& supervisor,
    std::shared_ptr<const ChampionCache> champions = nullptr);

// The secret names kiln.toml declares (what pipelines may refer to as {{ secrets.NAME }}).
dag::SecretNames SecretNamesOf(const config::DaemonConfig& config);

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
