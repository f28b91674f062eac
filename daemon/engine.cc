#include "daemon/engine.h"

#include <boost/asio/post.hpp>

#include "config/items.h"
#include "daemon/as_user.h"

namespace kiln::daemon {

namespace {

Result<std::unique_ptr<Engine>> StartEngine(const config::DaemonConfig& config,
                                            const std::string& url, const std::string& name,
                                            const std::string& supervisor,
                                            const TaskUsers& task_users,
                                            const RunnerFactory& make_runner,
                                            std::shared_ptr<const ChampionCache> champions) {
  auto engine = std::make_unique<Engine>();
  boost::asio::io_context& io = engine->io;
  // The runner first: the supervisor welcomes this daemon only once it has answered which
  // starts of the daemon before were recorded, and that question waits for the committer lock
  // of the daemon before, which the store below takes again for this one.
  auto runner = make_runner(io, url);
  if (!runner.ok()) return runner.status();
  engine->runner = std::move(runner).value();
  engine->store = std::make_unique<store::PgStateStore>(
      url, name, [&io](std::function<void()> f) { boost::asio::post(io, std::move(f)); });
  // Starts go to the supervisor while they commit (docs/design.md): its question at a
  // disconnect waits for this connection to be gone from the server too.
  engine->store->HoldCommitterLock(supervisor);
  if (Status s = engine->store->Open(); !s.ok()) return s;
  scheduler::SchedulerOptions options = MakeSchedulerOptions(config, supervisor, champions);
  options.task_user = task_users.user;
  options.task_uids = task_users.uids;
  options.probe = [prober = &engine->prober](const scheduler::WaitProbe& probe,
                                             std::function<void(scheduler::WaitAnswer)> done) {
    prober->Probe(probe, std::move(done));
  };
  options.read_items = [prober = &engine->prober](
                           const std::filesystem::path& file, const Identity& user,
                           std::function<void(Result<std::vector<dag::Value>>)> done) {
    prober->Run([file, user, done = std::move(done)] {
      Result<std::vector<dag::Value>> items =
          Status::Error("for_each file '" + file.string() +
                        "' cannot be read: this daemon cannot take the "
                        "rights of user " +
                        std::to_string(user.uid) + ", the run's tasks'");
      AsUser(user, [&] { items = config::ReadItems(file); });
      done(std::move(items));
    });
  };
  engine->scheduler = std::make_unique<scheduler::Scheduler>(io, *engine->store, *engine->runner,
                                                             engine->clock, std::move(options));
  return engine;
}

}  // namespace

Result<std::unique_ptr<Runtime>> StartRuntime(const config::DaemonConfig& config,
                                              const std::string& name,
                                              const std::string& supervisor,
                                              const TaskUsers& task_users,
                                              const RunnerFactory& make_runner,
                                              const DatabaseReady& on_database) {
  auto runtime = std::make_unique<Runtime>();
  auto database = OpenDatabase(config);
  if (!database.ok()) return database.status();
  runtime->database = std::move(database).value();
  if (on_database) on_database(runtime->database.url);
  if (task_users.user.switch_user) {
    const Identity& task_user = task_users.user;
    if (runtime->database.embedded && runtime->database.embedded->uid() == task_user.uid) {
      return Status::Error("executor.run_as: tasks cannot run as '" + task_user.name +
                           "', the user the embedded PostgreSQL runs as (they could read and "
                           "change its files); choose another user");
    }
    const auto runs_dir = MakeSchedulerOptions(config, supervisor).runs_dir;
    if (Status s = PrepareRunsFolder(runs_dir, task_users); !s.ok()) return s;
  }
  if (Status s = PrepareCacheFolder(MakeSchedulerOptions(config, supervisor).cache_dir, task_users);
      !s.ok()) {
    return s;
  }
  if (Status s = runtime->champions->Load(*runtime->database.db); !s.ok()) return s;
  auto engine = StartEngine(config, runtime->database.url, name, supervisor, task_users,
                            make_runner, runtime->champions);
  if (!engine.ok()) return engine.status();
  runtime->engine = std::move(engine).value();
  return runtime;
}

}  // namespace kiln::daemon
