// The scheduling machinery of one kiln process: its event loop, the PostgreSQL state store, the
// local executor and the scheduler, wired together. Shared by `kiln run` and `kiln serve`.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "config/daemon_config.h"
#include "daemon/runtime.h"
#include "daemon/wait_probe.h"
#include "executor/local_runner.h"
#include "scheduler/scheduler.h"
#include "store/pg_state_store.h"

namespace kiln::daemon {

struct Engine {
  // Members are destroyed in reverse order: the scheduler first, then the runner (a local one
  // stops what still runs; a supervised one just disconnects), then the store (which commits
  // what is queued), then the loop.
  boost::asio::io_context io;
  std::unique_ptr<store::PgStateStore> store;
  std::unique_ptr<scheduler::TaskRunner> runner;
  scheduler::SystemClock clock;
  WaitProber prober;  // looks for wait tasks; its answers are posted to `io`
  std::unique_ptr<scheduler::Scheduler> scheduler;
};

// The database (configured or embedded) and the engine on it. The engine is declared last, so
// it is destroyed first: its store commits what is queued while the database still runs.
struct Runtime {
  DatabaseHandle database;
  // Read from the registry at start; the daemon keeps it up to date as it registers, promotes
  // and rolls back.
  std::shared_ptr<ChampionCache> champions = std::make_shared<ChampionCache>();
  std::unique_ptr<Engine> engine;
};

// Makes the engine's task runner on its loop, given the database URL.
using RunnerFactory = std::function<Result<std::unique_ptr<scheduler::TaskRunner>>(
    boost::asio::io_context& io, const std::string& url)>;

// Told the database's URL once it is open and migrated, before the engine opens its own
// connections: what needs only the database (a lease) may start then, on a thread of its own.
using DatabaseReady = std::function<void(const std::string& url)>;

// Opens (or starts) and migrates the database, then builds the engine from `config` for the
// process called `name` (DaemonName, ForegroundName), whose attempts are recorded as supervised
// by `supervisor` and run by what `make_runner` makes, as `task_users` (TaskUser). Errors name
// what failed, with any password redacted; a task user that is the embedded PostgreSQL's, or
// that cannot reach the run folders, is one.
Result<std::unique_ptr<Runtime>> StartRuntime(const config::DaemonConfig& config,
                                              const std::string& name,
                                              const std::string& supervisor,
                                              const TaskUsers& task_users,
                                              const RunnerFactory& make_runner,
                                              const DatabaseReady& on_database = nullptr);

}  // namespace kiln::daemon
