// The scheduler's test harness: a store that commits (or fails) on demand, a fixed clock and a
// runner whose attempts the test ends by hand, wired to a Scheduler on one io_context.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "scheduler/run_plan.h"
#include "scheduler/scheduler.h"

namespace scheduler_test {

namespace asio = boost::asio;
using kiln::RunId;
using kiln::TaskId;
using kiln::dag::RunState;
using kiln::dag::TaskState;
namespace sch = kiln::scheduler;

class FakeStore final : public sch::StateStore {
 public:
  explicit FakeStore(asio::io_context& io) : io_(io) {}
  // Cache lookups: the keys asked for, answered with `cached` (a JSON array) on the loop.
  void LookupCache(const std::string& key,
                   std::function<void(kiln::Result<std::string>)> done) override {
    lookups.push_back(key);
    if (hold_lookups) {
      held_lookups.push_back([done, answer = cached] { done(answer); });
      return;
    }
    asio::post(io_, [done, answer = cached] { done(answer); });
  }
  std::vector<std::string> lookups;
  std::string cached = "[]";
  bool hold_lookups = false;  // answered when the test calls `held_lookups`
  std::vector<std::function<void()>> held_lookups;
  void Commit(sch::Batch batch, std::function<void(sch::CommitResult)> done) override {
    ++calls;
    bool fail = fail_next > 0;
    if (fail) --fail_next;
    sch::CommitResult result;
    if (fail) {
      result.status = kiln::Status::Error(kiln::ErrorCode::kUnavailable, "database down");
    } else {
      // Refusals chosen by the test: by (task id, state) for task updates.
      for (size_t i = 0; i < batch.tasks.size(); ++i) {
        const auto& u = batch.tasks[i];
        for (auto it = refuse.begin(); it != refuse.end(); ++it) {
          if (it->task == u.task_id && it->state == u.state) {
            result.refused.push_back(sch::Refusal{false, i, it->rejected, it->message});
            refused.push_back(u);
            refuse.erase(it);
            break;
          }
        }
      }
      // The accepted part of the batch, as the database keeps it.
      sch::Batch kept;
      kept.runs = batch.runs;
      for (size_t i = 0; i < batch.tasks.size(); ++i) {
        bool out = false;
        for (const auto& r : result.refused) out = out || (!r.run && r.index == i);
        if (!out) kept.tasks.push_back(batch.tasks[i]);
      }
      committed.push_back(std::move(kept));
    }
    auto reply = [done, result] { done(result); };
    if (hold) {
      held.push_back(reply);
    } else {
      asio::post(io_, reply);
    }
  }
  // An update the next commits refuse: the first task update of `task` to `state`.
  struct Refuse {
    std::string task;
    TaskState state;
    bool rejected;
    std::string message;
  };
  std::vector<Refuse> refuse;
  std::vector<sch::TaskUpdate> refused;
  // Answers the commits held back while `hold` was set.
  void ReleaseHeld() {
    for (auto& reply : held) asio::post(io_, reply);
    held.clear();
  }
  // Every committed task update, flattened.
  std::vector<sch::TaskUpdate> TaskUpdates() const {
    std::vector<sch::TaskUpdate> out;
    for (const auto& b : committed) out.insert(out.end(), b.tasks.begin(), b.tasks.end());
    return out;
  }
  bool StartCommitted(const std::string& task, int attempt) const {
    for (const auto& u : TaskUpdates()) {
      if (u.task_id == task && u.attempt == attempt && u.start) return true;
    }
    return false;
  }
  std::vector<sch::Batch> committed;
  int calls = 0;
  int fail_next = 0;
  bool hold = false;  // keep commits unanswered until ReleaseHeld()
  std::vector<std::function<void()>> held;

 private:
  asio::io_context& io_;
};

class FixedClock final : public sch::Clock {
 public:
  kiln::Instant Now() override { return now; }
  kiln::Instant now{std::chrono::milliseconds(1'800'000'000'000)};
};

// Attempts run from Start() until the test ends them; their times come from the test's clock.
class FakeRunner final : public sch::TaskRunner {
 public:
  FakeRunner(asio::io_context& io, FakeStore& store, FixedClock& clock)
      : io_(io), store_(store), clock_(clock) {}
  struct Started {
    sch::LaunchRequest request;
    std::function<void(sch::AttemptOutcome)> on_exit;
    bool start_was_durable;
  };
  void Start(sch::LaunchRequest request,
             std::function<void(sch::AttemptOutcome)> on_exit) override {
    std::string id = request.task_id;
    unit_names[kiln::Index(request.task)] = id;
    bool durable = store_.StartCommitted(id, request.attempt);
    order.push_back(id);
    started_at[id] = clock_.now;
    running[id] = Started{std::move(request), std::move(on_exit), durable};
  }
  void Adopt(const sch::AdoptRequest& request,
             std::function<void(sch::AttemptOutcome)> on_exit) override {
    std::string id = request.task_id;
    unit_names[kiln::Index(request.task)] = id;
    adopted.push_back(request);
    started_at[id] = clock_.now;
    sch::LaunchRequest launch;
    launch.run = request.run;
    launch.task = request.task;
    launch.task_id = request.task_id;
    launch.attempt = request.attempt;
    running[id] = Started{std::move(launch), std::move(on_exit), true};
  }
  bool StartsBeforeCommit() const override { return early; }
  bool HandsOut(const std::string& pool) const override { return hands_out.count(pool) != 0; }
  std::optional<sch::Handout> HandOut(sch::LaunchRequest request,
                                      std::function<void(sch::AttemptOutcome)> on_exit) override {
    std::string id = request.task_id;
    unit_names[kiln::Index(request.task)] = id;
    bool durable = store_.StartCommitted(id, request.attempt);
    handed.push_back(id);
    started_at[id] = clock_.now;
    sch::Handout h{request.pool, request.priority, request.slots, "launch of " + id};
    running[id] = Started{std::move(request), std::move(on_exit), durable};
    return h;
  }
  void StartRefused(RunId, TaskId task, int attempt) override {
    starts_refused.push_back(Name(task) + "#" + std::to_string(attempt));
  }
  void Recorded(RunId, TaskId task, int attempt) override {
    recorded.push_back(Name(task) + "#" + std::to_string(attempt));
  }
  void StartRecorded(RunId, TaskId task, int attempt) override {
    starts_recorded.push_back(Name(task) + "#" + std::to_string(attempt));
  }
  void CloseRunFolder(const std::filesystem::path& run_dir) override { closed.push_back(run_dir); }
  void Kill(RunId, TaskId task) override {
    std::string id = Name(task);
    auto it = running.find(id);
    if (it == running.end()) return;
    killed.push_back(id);
    sch::AttemptOutcome o;
    o.started = true;
    o.signal = 15;
    o.killed = true;
    Finish(id, o);
  }
  // Ends a running attempt with `exit_code`.
  void Exit(const std::string& id, int exit_code) {
    sch::AttemptOutcome o;
    o.started = true;
    o.exit_code = exit_code;
    Finish(id, o);
  }
  void Finish(const std::string& id, sch::AttemptOutcome o) {
    auto node = running.extract(id);
    REQUIRE(!node.empty());
    o.started_at = started_at[id];
    o.ended_at = clock_.now;
    asio::post(io_, [f = node.mapped().on_exit, o] { f(o); });
  }
  // A unit's name: the task_id it was started with (instances: "train[3]"), else the task's.
  std::string Name(TaskId task) const {
    auto it = unit_names.find(kiln::Index(task));
    return it != unit_names.end() ? it->second : task_names.at(kiln::Index(task));
  }
  bool early = false;               // StartsBeforeCommit
  std::set<std::string> hands_out;  // pools HandsOut names
  std::vector<std::string> handed;  // attempts taken by HandOut, in order
  std::vector<std::string> task_names;
  std::map<uint32_t, std::string> unit_names;
  std::vector<std::string> order;
  std::map<std::string, Started> running;
  std::vector<std::string> killed;
  std::vector<sch::AdoptRequest> adopted;
  std::vector<std::string> recorded;          // "task#attempt" acknowledged as durable
  std::vector<std::string> starts_recorded;   // "task#attempt" whose early start is durable
  std::vector<std::string> starts_refused;    // "task#attempt" whose early start was refused
  std::vector<std::filesystem::path> closed;  // run folders closed at their run's end

 private:
  asio::io_context& io_;
  FakeStore& store_;
  FixedClock& clock_;
  std::map<std::string, kiln::Instant> started_at;
};

struct Recorder final : sch::Observer {
  void OnRunFinished(RunId, RunState s) override { state = s; }
  std::optional<RunState> state;
};

inline kiln::dag::TaskSpec Task(std::string id, std::vector<std::string> needs = {}) {
  kiln::dag::TaskSpec t;
  t.id = std::move(id);
  t.needs = std::move(needs);
  t.command = "echo {{ params.word }}";
  return t;
}

struct Harness {
  explicit Harness(std::vector<kiln::dag::TaskSpec> tasks, int parallel = 4,
                   const std::function<void(sch::SchedulerOptions&)>& tweak = {}) {
    spec.name = "p";
    spec.file = "/pipelines/p.toml";
    spec.params = {{"word", kiln::dag::ParamValue(std::string("a b")), {}}};
    spec.tasks = std::move(tasks);
    for (const auto& t : spec.tasks) runner.task_names.push_back(t.id);
    pipeline = std::make_shared<kiln::dag::Pipeline>(
        kiln::dag::Pipeline{spec, kiln::dag::Dag(spec), std::nullopt});
    sch::SchedulerOptions o;
    o.pools = {{"default", parallel}};
    o.max_parallel_tasks = parallel;
    o.lease_owner = "test:1";
    o.logs_dir = "/data/logs";
    o.runs_dir = "/data/runs";
    o.base_env = {{"PATH", "/usr/bin:/bin"}};
    o.commit_retry_delay = std::chrono::milliseconds(1);
    if (tweak) tweak(o);
    scheduler = std::make_unique<sch::Scheduler>(io, store, runner, clock, o);
    scheduler->SetObserver(&recorder);
  }
  sch::RunContext Context(
      std::vector<std::pair<std::string, kiln::dag::ParamValue>> params = {}) const {
    sch::RunContext ctx;
    ctx.id = RunId{7};
    ctx.pipeline = pipeline;
    ctx.params = params.empty() ? decltype(params){{"word", std::string("a b")}} : params;
    ctx.logical_date = clock.now;
    ctx.data_interval_start = clock.now - std::chrono::hours(24);
    ctx.data_interval_end = clock.now;
    ctx.triggered_by = "5";
    return ctx;
  }
  void Start(std::vector<std::pair<std::string, kiln::dag::ParamValue>> params = {}) {
    scheduler->AddRun(Context(std::move(params)));
    Settle();
  }
  void Settle() {
    io.restart();
    io.run();
  }
  // Runs what is ready without waiting for timers (a retry due in an hour).
  void SettleReady() {
    io.restart();
    io.poll();
  }
  // Marks a task of run 7 and returns what `done` said (after the loop ran).
  kiln::Status Mark(const std::string& task, TaskState state, const std::string& reason,
                    RunId run = RunId{7}) {
    std::optional<kiln::Status> result;
    scheduler->MarkTask(run, *pipeline->dag.Find(task), state, reason,
                        [&](kiln::Status s) { result = std::move(s); });
    CHECK_FALSE(result.has_value());  // never from inside MarkTask
    SettleReady();
    REQUIRE(result.has_value());
    return *result;
  }
  // What the store's rows say after every committed update: state and latest attempt per task,
  // in pipeline order (what it hands back for a retry).
  std::pair<std::vector<TaskState>, std::vector<int>> Rows() const {
    std::vector<TaskState> states(spec.tasks.size(), TaskState::kPending);
    std::vector<int> attempts(spec.tasks.size(), 0);
    for (const auto& u : store.TaskUpdates()) {
      auto found = pipeline->dag.Find(u.task_id);
      if (!found) continue;  // an instance ("train[3]")
      size_t i = kiln::Index(*found);
      states[i] = u.state;
      attempts[i] = u.attempt;
    }
    return {states, attempts};
  }
  kiln::dag::PipelineSpec spec;
  std::shared_ptr<kiln::dag::Pipeline> pipeline;
  asio::io_context io;
  FakeStore store{io};
  FixedClock clock;
  FakeRunner runner{io, store, clock};
  Recorder recorder;
  std::unique_ptr<sch::Scheduler> scheduler;
};

// The last update of `task` that a batch committed, or null.
inline const sch::TaskUpdate* LastUpdate(const Harness& h, const std::string& task) {
  const sch::TaskUpdate* last = nullptr;
  for (const auto& b : h.store.committed) {
    for (const auto& u : b.tasks) {
      if (u.task_id == task) last = &u;
    }
  }
  return last;
}

}  // namespace scheduler_test
