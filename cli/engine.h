// The scheduling machinery of one kiln process: its event loop, the PostgreSQL state store, the
// local executor and the scheduler, wired together. Shared by `kiln run` and `kiln serve`.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "common/status.h"
#include "config/daemon_config.h"
#include "executor/local_runner.h"
#include "scheduler/scheduler.h"
#include "store/pg_state_store.h"

namespace kiln::cli {

struct Engine {
  // Members are destroyed in reverse order: the scheduler first, then the executor (which stops
  // what still runs), then the store (which commits what is queued), then the loop.
  boost::asio::io_context io;
  std::unique_ptr<store::PgStateStore> store;
  std::unique_ptr<executor::LocalTaskRunner> runner;
  scheduler::SystemClock clock;
  std::unique_ptr<scheduler::Scheduler> scheduler;
};

// Connects the state store to `url` and builds the rest from `config`. Errors name what failed.
Result<std::unique_ptr<Engine>> StartEngine(const config::DaemonConfig& config,
                                            const std::string& url);

}  // namespace kiln::cli
