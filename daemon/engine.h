// The scheduling machinery of one kiln process: its event loop, the PostgreSQL state store, the
// local executor and the scheduler, wired together. Shared by `kiln run` and `kiln serve`.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "common/status.h"
#include "config/daemon_config.h"
#include "daemon/runtime.h"
#include "executor/local_runner.h"
#include "scheduler/scheduler.h"
#include "store/pg_state_store.h"

namespace kiln::daemon {

struct Engine {
  // Members are destroyed in reverse order: the scheduler first, then the executor (which stops
  // what still runs), then the store (which commits what is queued), then the loop.
  boost::asio::io_context io;
  std::unique_ptr<store::PgStateStore> store;
  std::unique_ptr<executor::LocalTaskRunner> runner;
  scheduler::SystemClock clock;
  std::unique_ptr<scheduler::Scheduler> scheduler;
};

// The database (configured or embedded) and the engine on it. The engine is declared last, so
// it is destroyed first: its store commits what is queued while the database still runs.
struct Runtime {
  DatabaseHandle database;
  std::unique_ptr<Engine> engine;
};

// Opens (or starts) and migrates the database, then builds the engine from `config` for the
// process called `name` (DaemonName, ForegroundName). Errors name what failed, with any password
// redacted.
Result<std::unique_ptr<Runtime>> StartRuntime(const config::DaemonConfig& config,
                                              const std::string& name);

}  // namespace kiln::daemon
