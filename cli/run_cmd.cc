// `kiln run FILE`: one run, through the same store and scheduler as the daemon.
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <future>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "cli/commands.h"
#include "cli/config_util.h"
#include "cli/progress.h"
#include "config/pipeline_loader.h"
#include "daemon/engine.h"
#include "daemon/lease_keeper.h"
#include "daemon/runtime.h"
#include "executor/guard.h"
#include "plugins/registry.h"

namespace kiln::cli {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

// -p values, checked against the declared params. Errors point at the declaration in the file
// (or at [params] for an undeclared name): "p.toml:5:10: params.epochs: ... (from -p)".
std::optional<dag::ParamList> ParamsFromFlags(const dag::PipelineSpec& spec,
                                              const std::string& file,
                                              const std::vector<std::string>& flags) {
  std::vector<std::pair<std::string, std::string>> overrides;
  for (const auto& flag : flags) {
    auto kv = dag::SplitAssignment(flag);
    if (!kv.ok()) {
      std::cerr << "kiln: -p " << kv.message() << '\n';
      return std::nullopt;
    }
    overrides.push_back(std::move(kv).value());
  }
  std::string name;
  auto params = dag::ResolveParams(spec, overrides, &name);
  if (params.ok()) return std::move(params).value();
  std::string field = "params." + name;
  auto loc = spec.locs.find(field);
  if (loc == spec.locs.end()) {
    field = "params";
    loc = spec.locs.find(field);
  }
  dag::Diagnostic d{file, loc == spec.locs.end() ? dag::SourceLoc{} : loc->second, field,
                    params.message() + " (from -p)"};
  std::cerr << d.ToString() << '\n';
  return std::nullopt;
}

// Pools the pipeline names but the config does not get the size of the parallel limit, so that
// a pipeline written for a daemon with a "gpu" pool also runs on a laptop.
// The widest task of such a pool is never refused for want of slots.
void AddMissingPools(const dag::PipelineSpec& spec, config::DaemonConfig& cfg) {
  std::map<std::string, int> widest = {{"default", 1}};
  for (const auto& task : spec.tasks) widest[task.pool] = std::max(widest[task.pool], task.slots);
  for (const auto& [pool, slots] : widest) {
    if (!cfg.pools.count(pool)) cfg.pools[pool] = std::max(cfg.max_parallel_tasks, slots);
  }
}

double Millis(const std::optional<Instant>& from, const std::optional<Instant>& to) {
  if (!from || !to) return 0;
  return static_cast<double>((*to - *from).count());
}

void PrintText(const store::RunRecord& run) {
  std::printf("run %lld of %s: %s\n", static_cast<long long>(Value(run.id)), run.pipeline.c_str(),
              std::string(dag::Name(run.state)).c_str());
  std::printf("%-24s %-16s %8s %6s %10s\n", "TASK", "STATE", "ATTEMPTS", "EXIT", "DURATION");
  for (const auto& t : run.tasks) {
    std::string exit = t.exit_code ? std::to_string(*t.exit_code)
                                   : (t.signal ? "sig" + std::to_string(*t.signal) : "-");
    char duration[32] = "-";
    if (t.started_at && t.ended_at)
      std::snprintf(duration, sizeof duration, "%.2fs", Millis(t.started_at, t.ended_at) / 1000);
    std::printf("%-24s %-16s %8d %6s %10s\n", t.task_id.c_str(),
                std::string(dag::Name(t.state)).c_str(), t.attempt, exit.c_str(), duration);
  }
}

void PrintJson(const store::RunRecord& run) {
  json tasks = json::array();
  for (const auto& t : run.tasks) {
    tasks.push_back(
        {{"id", t.task_id},
         {"state", dag::Name(t.state)},
         {"attempts", t.attempt},
         {"exit_code", t.exit_code ? json(*t.exit_code) : json(nullptr)},
         {"signal", t.signal ? json(*t.signal) : json(nullptr)},
         {"duration_ms",
          t.started_at && t.ended_at ? json(Millis(t.started_at, t.ended_at)) : json(nullptr)}});
  }
  json out = {{"id", Value(run.id)},
              {"pipeline", run.pipeline},
              {"state", dag::Name(run.state)},
              {"tasks", tasks}};
  std::cout << out.dump(2) << '\n';
}

// Ctrl-C (or SIGTERM) once: cancel the run and wait for its processes and rows. Twice: stop the
// processes at once and leave without waiting (for a database that does not answer).
class Interrupts {
 public:
  Interrupts(asio::io_context& io, scheduler::Scheduler& sched, executor::LocalTaskRunner& runner)
      : signals_(io, SIGINT, SIGTERM), sched_(sched), runner_(runner) {
    Wait();
  }
  ~Interrupts() { signals_.cancel(); }
  // The run to cancel; a signal that came earlier cancels it now.
  void Watch(RunId run) {
    run_ = run;
    if (count_ > 0) sched_.CancelRun(run, "cancelled by the user");
  }
  bool abandoned() const { return count_ > 1; }

 private:
  void Wait() {
    signals_.async_wait([this](const boost::system::error_code& ec, int) {
      if (ec) return;
      if (++count_ == 1) {
        std::cerr << "kiln: cancelling the run (interrupt again to stop without waiting)\n";
        if (run_) sched_.CancelRun(*run_, "cancelled by the user");
      } else {
        std::cerr << "kiln: stopping without waiting\n";
        runner_.KillAll();
      }
      Wait();
    });
  }

  asio::signal_set signals_;
  scheduler::Scheduler& sched_;
  executor::LocalTaskRunner& runner_;
  std::optional<RunId> run_;
  int count_ = 0;
};

// What kiln run does on the scheduler's news besides printing it (`next`). It has no API for an
// operator to answer: an approval task named with --approve is approved as soon as it waits, any
// other is rejected at once, saying how to approve it. And a run taken from it ends the command.
class CommandLineObserver final : public scheduler::Observer {
 public:
  CommandLineObserver(asio::io_context& io, scheduler::Scheduler& sched, scheduler::Observer& next,
                      const std::vector<std::string>& approved)
      : io_(io), sched_(sched), next_(next), approved_(approved.begin(), approved.end()) {}

  void OnTaskState(RunId run, const dag::TaskSpec& task, const std::string& name,
                   dag::TaskState state, int attempt, const std::string& reason) override {
    next_.OnTaskState(run, task, name, state, attempt, reason);
    if (state != dag::TaskState::kWaiting || task.execution != dag::Execution::kApproval) return;
    const bool approve = approved_.count(task.id) != 0;
    std::string why = approve ? "approved on the command line (kiln run --approve " + task.id + ")"
                              : "rejected: kiln run has no operator to ask; pass --approve " +
                                    task.id + " to approve it";
    std::vector<std::pair<std::string, std::string>> detail = {
        {"decision", approve ? "approved" : "rejected"}, {"by", "cli"}, {"note", ""}};
    asio::post(io_, [this, run, task_id = task.id, approve, why, detail]() mutable {
      sched_.Decide(run, task_id, approve, why, std::move(detail), nullptr);
    });
  }
  void OnTaskResults(RunId run, const dag::TaskSpec& task, const std::string& name, int attempt,
                     const std::string& results) override {
    next_.OnTaskResults(run, task, name, attempt, results);
  }
  void OnRunFinished(RunId run, dag::RunState state) override { next_.OnRunFinished(run, state); }
  // An update of the run was refused: the database says another process drives it or ended it
  // (a daemon does when this process's lease lapsed). This process stops driving it: its tasks
  // are stopped and the command ends.
  void OnRunFenced(RunId run) override {
    if (taken_) return;
    taken_ = true;
    asio::post(io_, [this, run] { sched_.Release(run); });
  }
  bool taken() const { return taken_; }

 private:
  asio::io_context& io_;
  scheduler::Scheduler& sched_;
  scheduler::Observer& next_;
  std::set<std::string> approved_;
  bool taken_ = false;
};

// --approve names approval tasks of the pipeline.
bool CheckApprovals(const dag::Pipeline& pipeline, const std::vector<std::string>& names) {
  std::string known;
  for (const auto& t : pipeline.spec.tasks) {
    if (t.execution == dag::Execution::kApproval) known += (known.empty() ? "" : ", ") + t.id;
  }
  for (const auto& name : names) {
    auto id = pipeline.dag.Find(name);
    if (id && pipeline.task(*id).execution == dag::Execution::kApproval) continue;
    std::cerr << "kiln: --approve " << name << ": pipeline " << pipeline.spec.name
              << (id ? " has a task '" + name + "' but it is not kind = \"approval\""
                     : " has no task '" + name + "'")
              << (known.empty() ? "; it has no approval task" : "; its approval tasks: " + known)
              << '\n';
    return false;
  }
  return true;
}

}  // namespace

int Run(const RunOptions& o) {
  auto cfg = LoadConfig(o.config);
  if (!cfg) return 1;
  const dag::SecretNames secrets = daemon::SecretNamesOf(*cfg);
  auto loaded = config::LoadPipelineFile(o.file, plugins::Builtins(), &secrets);
  if (!loaded.pipeline) {
    PrintDiagnostics(loaded.diagnostics);
    return 1;
  }
  const dag::Pipeline& pipeline = *loaded.pipeline;
  auto params = ParamsFromFlags(pipeline.spec, o.file, o.params);
  if (!params) return 1;
  if (!CheckApprovals(pipeline, o.approve)) return 1;
  if (!o.data_dir.empty()) cfg->data_dir = o.data_dir;
  if (o.parallel > 0) {
    // -j limits how many tasks run at once; the default pool is sized from it below.
    cfg->max_parallel_tasks = o.parallel;
    cfg->pools.erase("default");
  }
  AddMissingPools(pipeline.spec, *cfg);

  const std::string name = daemon::ForegroundName(cfg->data_dir);
  executor::LocalTaskRunner* local = nullptr;
  auto task_users = daemon::TaskUser(*cfg, /*daemon=*/false);
  if (!task_users.ok()) {
    std::cerr << "kiln: " << task_users.message() << '\n';
    return 1;
  }
  // A foreground run: its tasks are this process's children and stop with it, SIGKILL included
  // (its guard stops them).
  if (Status s = executor::guard::Start("kiln run"); !s.ok()) {
    std::cerr << "kiln: warning: " << s.message() << '\n';
  }
  // Its run is held by a lease like a daemon's runs: a daemon on the same database ends it
  // (cancelled) if this process dies, and leaves it alone while it lives. The lease is taken
  // while the engine opens its connections (a few ms each), and before the run is created.
  std::optional<daemon::LeaseKeeper> lease;
  std::future<Status> leased;
  auto runtime = daemon::StartRuntime(
      *cfg, name, name, *task_users,
      [&](boost::asio::io_context& io,
          const std::string&) -> Result<std::unique_ptr<scheduler::TaskRunner>> {
        auto runner =
            std::make_unique<executor::LocalTaskRunner>(io, cfg->log_cap_bytes, cfg->kill_grace);
        local = runner.get();
        return std::unique_ptr<scheduler::TaskRunner>(std::move(runner));
      },
      [&](const std::string& url) {
        lease.emplace(daemon::LeaseKeeperOptions{url, name, cfg->lease, /*take_over=*/false,
                                                 /*leadership=*/nullptr, /*clock=*/nullptr},
                      daemon::LeaseKeeperHooks{});
        leased = std::async(std::launch::async, [&lease] { return lease->Start(); });
      });
  Status lease_taken = leased.valid() ? leased.get() : Status::Ok();
  if (!runtime.ok()) {
    // The engine failed after the database opened; an embedded server is stopped by now, so
    // the lease row, with no run under it, is left to expire by itself.
    if (lease) lease->Stop(/*release=*/false);
    std::cerr << "kiln: " << runtime.message() << '\n';
    return 1;
  }
  // Whatever way this function returns, the lease's thread ends before the runtime (and an
  // embedded database) is torn down.
  struct StopLease {
    std::optional<daemon::LeaseKeeper>& lease;
    ~StopLease() {
      if (lease) lease->Stop(/*release=*/false);
    }
  } stop_lease{lease};
  if (!lease_taken.ok()) {
    std::cerr << "kiln: " << lease_taken.message() << '\n';
    return 1;
  }
  store::Database& db = *(*runtime)->database.db;
  asio::io_context& io = (*runtime)->engine->io;
  scheduler::Scheduler& sched = *(*runtime)->engine->scheduler;
  executor::LocalTaskRunner& runner = *local;
  Progress progress(stderr, isatty(STDERR_FILENO), pipeline.spec.tasks.size());
  CommandLineObserver observer(io, sched, progress, o.approve);
  sched.SetObserver(&observer);
  Interrupts interrupts(io, sched, runner);  // from here on, Ctrl-C cancels the run

  Instant now = NowUtc();
  store::NewRun row = daemon::MakeNewRun(pipeline, *params, "cli", now);
  row.lease_owner = name;
  auto created = db.CreateRun(row);
  if (!created.ok()) {
    std::cerr << "kiln: " << created.message() << '\n';
    return 1;
  }
  RunId run_id = created->id;
  std::cerr << "kiln: run " << ToString(run_id) << " of " << pipeline.spec.name << '\n';
  scheduler::RunContext ctx;
  ctx.id = run_id;
  ctx.pipeline = loaded.pipeline;
  ctx.params = *params;
  ctx.logical_date = ctx.data_interval_start = ctx.data_interval_end = now;
  sched.AddRun(ctx);
  interrupts.Watch(run_id);
  while (!progress.finished() && !interrupts.abandoned() && !observer.taken() && io.run_one() > 0) {
  }
  if (interrupts.abandoned()) return 130;
  if (observer.taken()) {
    runner.KillAll();
    std::cerr << "kiln: run " << ToString(run_id)
              << " is no longer this process's to drive: the database refused its changes (a "
                 "daemon on the same database took the run or ended it, as it does when this "
                 "process's lease lapses); its tasks were stopped\n";
    return 1;
  }
  lease->Stop(/*release=*/true);

  auto record = db.GetRun(run_id);
  if (!record.ok()) {
    std::cerr << "kiln: " << record.message() << '\n';
    return 1;
  }
  if (o.output == "json") {
    PrintJson(*record);
  } else {
    PrintText(*record);
  }
  return progress.final_state() == dag::RunState::kSuccess ? 0 : 1;
}

}  // namespace kiln::cli
