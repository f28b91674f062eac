#include "daemon/engine.h"

#include <boost/asio/post.hpp>

namespace kiln::daemon {

namespace {

Result<std::unique_ptr<Engine>> StartEngine(const config::DaemonConfig& config,
                                            const std::string& url, const std::string& name) {
  auto engine = std::make_unique<Engine>();
  boost::asio::io_context& io = engine->io;
  engine->store = std::make_unique<store::PgStateStore>(
      url, name, [&io](std::function<void()> f) { boost::asio::post(io, std::move(f)); });
  if (Status s = engine->store->Open(); !s.ok()) return s;
  engine->runner =
      std::make_unique<executor::LocalTaskRunner>(io, config.log_cap_bytes, config.kill_grace);
  engine->scheduler = std::make_unique<scheduler::Scheduler>(
      io, *engine->store, *engine->runner, engine->clock, MakeSchedulerOptions(config, name));
  return engine;
}

}  // namespace

Result<std::unique_ptr<Runtime>> StartRuntime(const config::DaemonConfig& config,
                                              const std::string& name) {
  auto runtime = std::make_unique<Runtime>();
  auto database = OpenDatabase(config);
  if (!database.ok()) return database.status();
  runtime->database = std::move(database).value();
  auto engine = StartEngine(config, runtime->database.url, name);
  if (!engine.ok()) return engine.status();
  runtime->engine = std::move(engine).value();
  return runtime;
}

}  // namespace kiln::daemon
