// The scheduler driven end to end with fakes: a store that commits (or fails) on demand and a
// runner whose attempts the test ends by hand.
#include "scheduler/scheduler.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <tuple>

#include "scheduler/run_plan.h"

namespace asio = boost::asio;
using kiln::RunId;
using kiln::TaskId;
using kiln::dag::RunState;
using kiln::dag::TaskState;
namespace sch = kiln::scheduler;

namespace {

class FakeStore final : public sch::StateStore {
 public:
  explicit FakeStore(asio::io_context& io) : io_(io) {}
  void Commit(sch::Batch batch, std::function<void(kiln::Status)> done) override {
    ++calls;
    bool fail = fail_next > 0;
    if (fail) --fail_next;
    if (!fail) committed.push_back(batch);
    auto reply = [done, fail] {
      done(fail ? kiln::Status::Error(kiln::ErrorCode::kUnavailable, "database down")
                : kiln::Status::Ok());
    };
    if (hold) {
      held.push_back(reply);
    } else {
      asio::post(io_, reply);
    }
  }
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
    std::string id = task_names.at(kiln::Index(request.task));
    bool durable = store_.StartCommitted(id, request.attempt);
    order.push_back(id);
    started_at[id] = clock_.now;
    running[id] = Started{std::move(request), std::move(on_exit), durable};
  }
  void Kill(RunId, TaskId task) override {
    std::string id = task_names.at(kiln::Index(task));
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
  std::vector<std::string> task_names;
  std::vector<std::string> order;
  std::map<std::string, Started> running;
  std::vector<std::string> killed;

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

kiln::dag::TaskSpec Task(std::string id, std::vector<std::string> needs = {}) {
  kiln::dag::TaskSpec t;
  t.id = std::move(id);
  t.needs = std::move(needs);
  t.command = "echo {{ params.word }}";
  return t;
}

struct Harness {
  explicit Harness(std::vector<kiln::dag::TaskSpec> tasks, int parallel = 4) {
    spec.name = "p";
    spec.file = "/pipelines/p.toml";
    spec.params = {{"word", kiln::dag::ParamValue(std::string("a b")), {}}};
    spec.tasks = std::move(tasks);
    for (const auto& t : spec.tasks) runner.task_names.push_back(t.id);
    pipeline =
        std::make_shared<kiln::dag::Pipeline>(kiln::dag::Pipeline{spec, kiln::dag::Dag(spec)});
    sch::SchedulerOptions o;
    o.pools = {{"default", parallel}};
    o.max_parallel_tasks = parallel;
    o.lease_owner = "test:1";
    o.logs_dir = "/data/logs";
    o.runs_dir = "/data/runs";
    o.base_env = {{"PATH", "/usr/bin:/bin"}};
    o.commit_retry_delay = std::chrono::milliseconds(1);
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
      size_t i = kiln::Index(*pipeline->dag.Find(u.task_id));
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

}  // namespace

TEST_CASE("a chain runs in order and every start is durable before its launch") {
  Harness h({Task("a"), Task("b", {"a"}), Task("c", {"b"})});
  h.Start();
  REQUIRE(h.runner.order == std::vector<std::string>{"a"});
  h.runner.Exit("a", 0);
  h.Settle();
  h.runner.Exit("b", 0);
  h.Settle();
  h.runner.Exit("c", 0);
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"a", "b", "c"});
  REQUIRE(h.recorder.state == RunState::kSuccess);
  // The end of one task and the start of the next are one commit.
  bool b_end_with_c_start = false;
  for (const auto& batch : h.store.committed) {
    bool b_end = false, c_start = false;
    for (const auto& u : batch.tasks) {
      b_end |= u.task_id == "b" && u.state == TaskState::kSuccess;
      c_start |= u.task_id == "c" && u.state == TaskState::kRunning;
    }
    b_end_with_c_start |= b_end && c_start;
  }
  CHECK(b_end_with_c_start);
  CHECK(h.store.committed.size() == 4);
  CHECK(h.store.committed.back().runs.back().state == RunState::kSuccess);
}

TEST_CASE("launch requests carry the rendered command, the log path and an explicit env") {
  Harness h({Task("a")});
  h.Start({{"word", std::string("$(touch pwned)'; rm -rf x")}});
  REQUIRE(h.runner.running.count("a"));
  const auto& started = h.runner.running["a"];
  CHECK(started.start_was_durable);
  const auto& req = started.request;
  CHECK(req.argv ==
        std::vector<std::string>{"/bin/sh", "-c", "echo '$(touch pwned)'\\''; rm -rf x'"});
  CHECK(req.log_path == "/data/logs/p/7/a/1.log");
  CHECK(req.run_dir == "/data/runs/p/7");
  CHECK(req.cwd == "/pipelines");
  std::map<std::string, std::string> env(req.env.begin(), req.env.end());
  CHECK(env.size() == 9);
  CHECK(env["PATH"] == "/usr/bin:/bin");
  CHECK(env["KILN_RUN_ID"] == "7");
  CHECK(env["KILN_TASK_ID"] == "a");
  CHECK(env["KILN_ATTEMPT"] == "1");
  CHECK(env["KILN_PIPELINE"] == "p");
  CHECK(env["KILN_RUN_DIR"] == "/data/runs/p/7");
  CHECK(env["KILN_PARAM_WORD"] == "$(touch pwned)'; rm -rf x");
  CHECK(env["KILN_IDEMPOTENCY_KEY"] == "7:a");
  CHECK(env["KILN_LOGICAL_DATE"] == "2027-01-15T08:00:00Z");
}

TEST_CASE("a failed attempt is retried after its backoff, then succeeds") {
  auto t = Task("a");
  t.retry.retries = 2;
  t.retry.retry_delay = std::chrono::milliseconds(1);
  Harness h({t, Task("b", {"a"})});
  h.Start();
  h.runner.Exit("a", 3);
  h.Settle();  // the retry timer fires within the settle
  REQUIRE(h.runner.running.count("a"));
  CHECK(h.runner.running["a"].request.attempt == 2);
  h.runner.Exit("a", 0);
  h.Settle();
  h.runner.Exit("b", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
  auto updates = h.store.TaskUpdates();
  auto retry = std::find_if(updates.begin(), updates.end(),
                            [](const auto& u) { return u.state == TaskState::kUpForRetry; });
  REQUIRE(retry != updates.end());
  CHECK(retry->attempt == 1);
  CHECK(retry->end->exit_code == 3);
  CHECK(retry->retry_at == h.clock.now + std::chrono::milliseconds(1));
  CHECK(retry->reason == "exit code 3; retrying in 1ms");
}

TEST_CASE("a failure propagates upstream_failed and fails the run") {
  Harness h({Task("a"), Task("b", {"a"}), Task("c", {"b"})});
  h.Start();
  h.runner.Exit("a", 1);
  h.Settle();
  CHECK(h.recorder.state == RunState::kFailed);
  auto updates = h.store.TaskUpdates();
  REQUIRE(updates.size() == 4);
  CHECK(updates[1].task_id == "a");
  CHECK(updates[1].state == TaskState::kFailed);
  CHECK(updates[2].task_id == "b");
  CHECK(updates[2].state == TaskState::kUpstreamFailed);
  CHECK(updates[2].reason == "upstream 'a' failed");
  CHECK(updates[3].state == TaskState::kUpstreamFailed);
  CHECK(updates[3].reason == "upstream 'b' upstream_failed");
}

TEST_CASE("nothing launches until a failed commit is retried") {
  Harness h({Task("a")});
  h.store.fail_next = 1;
  h.Start();
  CHECK(h.store.calls == 2);
  REQUIRE(h.runner.running.count("a"));
  CHECK(h.runner.running["a"].start_was_durable);
}

TEST_CASE("the parallel limit queues tasks, which start as slots free up") {
  Harness h({Task("a"), Task("b"), Task("c")}, /*parallel=*/1);
  h.Start();
  CHECK(h.runner.order == std::vector<std::string>{"a"});
  int queued = 0;
  for (const auto& u : h.store.TaskUpdates()) queued += u.state == TaskState::kQueued;
  CHECK(queued == 2);
  h.runner.Exit("a", 0);
  h.Settle();
  h.runner.Exit("b", 0);
  h.Settle();
  h.runner.Exit("c", 0);
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"a", "b", "c"});
  CHECK(h.recorder.state == RunState::kSuccess);
}

TEST_CASE("a task in an unknown pool fails with the reason, without running") {
  auto t = Task("a");
  t.pool = "gpu";
  Harness h({t, Task("b", {"a"})});
  h.Start();
  CHECK(h.runner.order.empty());
  CHECK(h.recorder.state == RunState::kFailed);
  auto updates = h.store.TaskUpdates();
  REQUIRE(updates.size() == 2);
  CHECK(updates[0].reason == "pool 'gpu' is not configured (configured: default)");
}

TEST_CASE("cancelling kills running attempts and cancels the rest") {
  Harness h({Task("a"), Task("b", {"a"})});
  h.Start();
  h.scheduler->CancelRun(RunId{7});
  h.Settle();
  CHECK(h.runner.running.empty());
  CHECK(h.recorder.state == RunState::kCancelled);
  auto updates = h.store.TaskUpdates();
  int cancelled = 0;
  for (const auto& u : updates) cancelled += u.state == TaskState::kCancelled;
  CHECK(cancelled == 2);
}

TEST_CASE("shutdown cancels active runs and reports done after the last commit") {
  Harness h({Task("a"), Task("b", {"a"})});
  h.Start();
  bool done = false;
  h.scheduler->Shutdown("the daemon stopped", [&] { done = true; });
  CHECK_FALSE(done);  // "a" is still running until its process is gone
  h.Settle();
  CHECK(done);
  CHECK(h.recorder.state == RunState::kCancelled);
  CHECK(h.store.committed.back().runs.back().state == RunState::kCancelled);
  auto updates = h.store.TaskUpdates();
  auto b = std::find_if(updates.begin(), updates.end(), [](const auto& u) {
    return u.task_id == "b" && u.state == TaskState::kCancelled;
  });
  REQUIRE(b != updates.end());
  CHECK(b->reason == "the daemon stopped");
}

TEST_CASE("a run added while stopping is cancelled at once") {
  Harness h({Task("a")});
  bool done = false;
  h.scheduler->Shutdown("the daemon stopped", [&] { done = true; });
  CHECK(done);
  h.Start();
  CHECK(h.runner.order.empty());
  CHECK(h.recorder.state == RunState::kCancelled);
}

TEST_CASE("a retry that must wait for a slot is recorded as queued") {
  auto t = Task("a");
  t.retry.retries = 1;
  t.retry.retry_delay = std::chrono::milliseconds(1);
  Harness h({t, Task("b")}, /*parallel=*/1);
  h.Start();
  h.runner.Exit("a", 1);
  h.Settle();  // b takes the only slot; a's retry comes due and waits
  REQUIRE(h.runner.running.count("b"));
  auto updates = h.store.TaskUpdates();
  CHECK(std::any_of(updates.begin(), updates.end(), [](const auto& u) {
    return u.task_id == "a" && u.state == TaskState::kQueued && u.attempt == 1;
  }));
  h.runner.Exit("b", 0);
  h.Settle();
  h.runner.Exit("a", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
}

namespace {

using Step = std::tuple<std::string, TaskState, int>;  // task, state, attempt

std::vector<Step> Steps(const std::vector<sch::TaskUpdate>& updates, size_t from = 0) {
  std::vector<Step> out;
  for (size_t i = from; i < updates.size(); ++i) {
    out.emplace_back(updates[i].task_id, updates[i].state, updates[i].attempt);
  }
  return out;
}

const sch::TaskUpdate* LastUpdate(const Harness& h, const std::string& task) {
  const sch::TaskUpdate* last = nullptr;
  for (const auto& b : h.store.committed) {
    for (const auto& u : b.tasks) {
      if (u.task_id == task) last = &u;
    }
  }
  return last;
}

}  // namespace

// ---- Retrying an ended run ----

TEST_CASE("retrying the failures keeps successes and continues attempt numbers") {
  auto train = Task("train", {"prep"});
  train.retry.retries = 1;
  train.retry.retry_delay = std::chrono::milliseconds(1);
  Harness h({Task("prep"), train, Task("eval", {"train"}), Task("lint")});
  h.Start();
  h.runner.Exit("prep", 0);
  h.runner.Exit("lint", 0);
  h.Settle();
  h.runner.Exit("train", 1);
  h.Settle();  // retried once
  h.runner.Exit("train", 2);
  h.Settle();  // out of retries
  REQUIRE(h.recorder.state == RunState::kFailed);
  CHECK_FALSE(h.scheduler->IsActive(RunId{7}));

  // What the store does for {"mode": "failed"}: reset the chosen tasks, hand the run back.
  auto [states, attempts] = h.Rows();
  CHECK(states == std::vector<TaskState>{TaskState::kSuccess, TaskState::kFailed,
                                         TaskState::kUpstreamFailed, TaskState::kSuccess});
  CHECK(attempts == std::vector<int>{1, 2, 0, 1});
  auto chosen = sch::TasksToRetry(*h.pipeline, states, std::nullopt);
  REQUIRE(chosen == std::vector<TaskId>{TaskId{1}, TaskId{2}});
  for (TaskId t : chosen) states[kiln::Index(t)] = TaskState::kPending;
  sch::RunContext ctx = h.Context();
  ctx.initial_states = states;
  ctx.initial_attempts = attempts;
  const size_t before = h.store.TaskUpdates().size();
  h.runner.order.clear();
  h.recorder.state.reset();
  h.scheduler->AddRun(ctx);
  CHECK(h.scheduler->IsActive(RunId{7}));
  h.Settle();

  REQUIRE(h.runner.running.count("train"));
  CHECK(h.runner.running["train"].request.attempt == 3);
  CHECK(h.runner.running["train"].request.log_path == "/data/logs/p/7/train/3.log");
  h.runner.Exit("train", 1);
  h.Settle();  // a full retry budget again: attempt 3 is this round's first
  REQUIRE(h.runner.running.count("train"));
  CHECK(h.runner.running["train"].request.attempt == 4);
  h.runner.Exit("train", 0);
  h.Settle();
  h.runner.Exit("eval", 0);
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"train", "train", "eval"});
  CHECK(h.recorder.state == RunState::kSuccess);
  CHECK(h.store.committed.back().runs.back().state == RunState::kSuccess);
  // Kept tasks are not written again; the run went back to running first.
  CHECK(Steps(h.store.TaskUpdates(), before) ==
        std::vector<Step>{{"train", TaskState::kRunning, 3},
                          {"train", TaskState::kUpForRetry, 3},
                          {"train", TaskState::kRunning, 4},
                          {"train", TaskState::kSuccess, 4},
                          {"eval", TaskState::kRunning, 1},
                          {"eval", TaskState::kSuccess, 1}});
  bool running_recorded = false;
  for (const auto& b : h.store.committed) {
    for (const auto& r : b.runs) running_recorded |= r.state == RunState::kRunning;
  }
  CHECK(running_recorded);
}

TEST_CASE("retrying from a task whose kept upstream failed ends it upstream_failed at once") {
  Harness h({Task("prep"), Task("train", {"prep"}), Task("eval", {"train"})});
  h.Start();
  h.runner.Exit("prep", 1);
  h.Settle();
  REQUIRE(h.recorder.state == RunState::kFailed);
  auto [states, attempts] = h.Rows();
  auto chosen = sch::TasksToRetry(*h.pipeline, states, TaskId{1});
  REQUIRE(chosen == std::vector<TaskId>{TaskId{1}, TaskId{2}});
  for (TaskId t : chosen) states[kiln::Index(t)] = TaskState::kPending;
  sch::RunContext ctx = h.Context();
  ctx.initial_states = states;
  ctx.initial_attempts = attempts;
  const size_t before = h.store.TaskUpdates().size();
  h.runner.order.clear();
  h.recorder.state.reset();
  h.scheduler->AddRun(ctx);
  h.Settle();
  CHECK(h.runner.order.empty());
  CHECK(h.recorder.state == RunState::kFailed);
  auto updates = h.store.TaskUpdates();
  REQUIRE(updates.size() == before + 2);
  CHECK(updates[before].task_id == "train");
  CHECK(updates[before].state == TaskState::kUpstreamFailed);
  CHECK(updates[before].reason == "upstream 'prep' failed");
  CHECK(updates[before + 1].task_id == "eval");
  CHECK(updates[before + 1].reason == "upstream 'train' upstream_failed");
}

// ---- Marking a task by hand ----

TEST_CASE("marking a pending task success lets its downstream run") {
  Harness h({Task("slow"), Task("gate", {"slow"}), Task("deploy", {"gate"})});
  h.Start();
  REQUIRE(h.runner.order == std::vector<std::string>{"slow"});
  kiln::Status s = h.Mark("gate", TaskState::kSuccess, "approved by hand");
  CHECK(s.ok());
  CHECK(h.runner.order == std::vector<std::string>{"slow", "deploy"});
  const sch::TaskUpdate* gate = LastUpdate(h, "gate");
  REQUIRE(gate != nullptr);
  CHECK(gate->state == TaskState::kSuccess);
  CHECK(gate->reason == "approved by hand");
  CHECK(gate->attempt == 0);
  CHECK_FALSE(gate->end.has_value());
  h.runner.Exit("slow", 0);
  h.Settle();  // gate is not run after all
  h.runner.Exit("deploy", 0);
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"slow", "deploy"});
  CHECK(h.recorder.state == RunState::kSuccess);
}

TEST_CASE("marking a queued task failed drops it from its pool and fails its downstream") {
  Harness h({Task("a"), Task("b"), Task("c", {"b"})}, /*parallel=*/1);
  h.Start();
  REQUIRE(h.runner.order == std::vector<std::string>{"a"});
  CHECK(h.scheduler->Metrics().pools.at("default").waiting == 1);
  CHECK(h.Mark("b", TaskState::kFailed, "bad input").ok());
  CHECK(h.scheduler->Metrics().pools.at("default").waiting == 0);
  const sch::TaskUpdate* c = LastUpdate(h, "c");
  REQUIRE(c != nullptr);
  CHECK(c->state == TaskState::kUpstreamFailed);
  CHECK(c->reason == "upstream 'b' failed");
  CHECK(LastUpdate(h, "b")->reason == "bad input");
  h.runner.Exit("a", 0);
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"a"});
  CHECK(h.recorder.state == RunState::kFailed);
}

TEST_CASE("marking a task that waits for its retry drops the retry") {
  auto a = Task("a");
  a.retry.retries = 3;
  a.retry.retry_delay = std::chrono::hours(1);
  Harness h({a, Task("b", {"a"})});
  h.scheduler->AddRun(h.Context());
  h.SettleReady();
  h.runner.Exit("a", 1);
  h.SettleReady();
  REQUIRE(LastUpdate(h, "a")->state == TaskState::kUpForRetry);
  CHECK(h.Mark("a", TaskState::kSuccess, "fixed upstream data").ok());
  h.Settle();  // returns: the hour-long retry timer is gone
  CHECK(h.runner.order == std::vector<std::string>{"a", "b"});
  CHECK(LastUpdate(h, "a")->state == TaskState::kSuccess);
  CHECK(LastUpdate(h, "a")->attempt == 1);
  h.runner.Exit("b", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
}

TEST_CASE("marking a running task kills it and records the marked state, not the kill") {
  auto a = Task("a");
  a.retry.retries = 2;  // a mark is final: no retry
  Harness h({a, Task("b", {"a"})});
  h.Start();
  CHECK(h.Mark("a", TaskState::kFailed, "wrong dataset").ok());
  CHECK(h.runner.killed == std::vector<std::string>{"a"});
  const sch::TaskUpdate* end = LastUpdate(h, "a");
  REQUIRE(end != nullptr);
  CHECK(end->state == TaskState::kFailed);
  CHECK(end->attempt == 1);
  CHECK(end->reason == "wrong dataset");
  REQUIRE(end->end.has_value());
  CHECK(end->end->signal == 15);
  CHECK(end->end->reason == "wrong dataset");
  CHECK(LastUpdate(h, "b")->state == TaskState::kUpstreamFailed);
  CHECK(h.runner.order == std::vector<std::string>{"a"});
  CHECK(h.recorder.state == RunState::kFailed);
}

TEST_CASE("marking a running task success lets its downstream run once it has exited") {
  Harness h({Task("a"), Task("b", {"a"})});
  h.scheduler->AddRun(h.Context());
  h.SettleReady();
  kiln::Status status = kiln::Status::Error("not called");
  h.scheduler->MarkTask(RunId{7}, TaskId{0}, TaskState::kSuccess, "good enough",
                        [&](kiln::Status s) { status = std::move(s); });
  // Decided at once; b waits for a's process to be gone.
  CHECK(h.runner.order == std::vector<std::string>{"a"});
  h.SettleReady();
  CHECK(status.ok());
  CHECK(h.runner.order == std::vector<std::string>{"a", "b"});
  CHECK(LastUpdate(h, "a")->state == TaskState::kSuccess);
  CHECK(LastUpdate(h, "a")->end->signal == 15);
}

TEST_CASE("a task marked while its start is being written never launches") {
  Harness h({Task("a"), Task("b", {"a"})});
  h.store.hold = true;
  h.scheduler->AddRun(h.Context());
  h.SettleReady();
  REQUIRE(h.store.held.size() == 1);
  CHECK(h.Mark("a", TaskState::kSuccess, "done elsewhere").ok());
  CHECK(h.runner.killed.empty());
  h.store.hold = false;
  h.store.ReleaseHeld();
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"b"});
  const sch::TaskUpdate* a = LastUpdate(h, "a");
  CHECK(a->state == TaskState::kSuccess);
  CHECK(a->attempt == 1);
  CHECK(a->reason == "done elsewhere");
  CHECK_FALSE(a->end->exit_code.has_value());
}

TEST_CASE("marks that cannot apply say why") {
  Harness h({Task("a"), Task("b")});
  h.Start();
  h.runner.Exit("a", 3);
  h.Settle();
  REQUIRE(h.scheduler->IsActive(RunId{7}));  // b still runs

  kiln::Status ended = h.Mark("a", TaskState::kSuccess, "x");
  CHECK(ended.code() == kiln::ErrorCode::kConflict);
  CHECK(ended.message() ==
        "task 'a' has already ended (failed); mark it once the run has ended, or retry it");

  kiln::Status invalid = h.Mark("b", TaskState::kSkipped, "x");
  CHECK(invalid.code() == kiln::ErrorCode::kInvalidArgument);
  CHECK(invalid.message() == "mark state 'skipped' is not allowed: mark a task success or failed");

  kiln::Status other = h.Mark("b", TaskState::kFailed, "x", RunId{8});
  CHECK(other.code() == kiln::ErrorCode::kNotFound);
  CHECK(other.message() == "run 8 is not active");

  // A second mark while the first one's attempt is being stopped.
  std::optional<kiln::Status> first, second;
  h.scheduler->MarkTask(RunId{7}, TaskId{1}, TaskState::kFailed, "first",
                        [&](kiln::Status s) { first = std::move(s); });
  h.scheduler->MarkTask(RunId{7}, TaskId{1}, TaskState::kSuccess, "second",
                        [&](kiln::Status s) { second = std::move(s); });
  h.Settle();
  REQUIRE(first.has_value());
  REQUIRE(second.has_value());
  CHECK(first->ok());
  CHECK(second->code() == kiln::ErrorCode::kConflict);
  CHECK(second->message() ==
        "task 'b' is already being marked failed; its attempt is being stopped");
  CHECK(LastUpdate(h, "b")->reason == "first");
  CHECK(h.recorder.state == RunState::kFailed);

  CHECK_FALSE(h.scheduler->IsActive(RunId{7}));
  kiln::Status after = h.Mark("b", TaskState::kSuccess, "x");
  CHECK(after.code() == kiln::ErrorCode::kNotFound);
  CHECK(after.message() == "run 7 is not active");
}

// ---- Metrics ----

TEST_CASE("metrics count finishes and place each observation in its bucket") {
  using std::chrono::milliseconds;
  Harness h({Task("a"), Task("b", {"a"}), Task("c")}, /*parallel=*/1);
  const kiln::Instant t0 = h.clock.now;
  h.store.hold = true;
  h.scheduler->AddRun(h.Context());  // a and c ready at t0; a takes the only slot
  h.SettleReady();
  REQUIRE(h.store.held.size() == 1);
  h.clock.now = t0 + milliseconds(3);
  h.store.hold = false;
  h.store.ReleaseHeld();
  h.Settle();  // commit took 3 ms; a launches 3 ms after it became ready
  REQUIRE(h.runner.order == std::vector<std::string>{"a"});

  sch::MetricsSnapshot mid = h.scheduler->Metrics();
  CHECK(mid.active_runs == 1);
  CHECK(mid.running_attempts == 1);
  REQUIRE(mid.pools.size() == 1);
  CHECK(mid.pools.at("default").slots == 1);
  CHECK(mid.pools.at("default").in_use == 1);
  CHECK(mid.pools.at("default").waiting == 1);
  CHECK(mid.tasks_finished.empty());

  h.clock.now = t0 + milliseconds(2003);
  h.runner.Exit("a", 0);  // ran 2 s; b becomes ready now, c (ready since t0) takes the slot
  h.Settle();
  h.clock.now = t0 + milliseconds(2010);
  h.runner.Exit("c", 1);  // ran 7 ms; b starts 7 ms after it became ready
  h.Settle();
  h.clock.now = t0 + milliseconds(42010);
  h.runner.Exit("b", 0);  // ran 40 s
  h.Settle();
  REQUIRE(h.runner.order == std::vector<std::string>{"a", "c", "b"});
  REQUIRE(h.recorder.state == RunState::kFailed);

  sch::MetricsSnapshot m = h.scheduler->Metrics();
  CHECK(m.runs_finished == std::map<std::string, uint64_t>{{"failed", 1}});
  CHECK(m.tasks_finished == std::map<std::string, uint64_t>{{"success", 2}, {"failed", 1}});
  // Durations 2 s, 7 ms, 40 s over bounds 1ms 5ms 10ms 50ms 100ms 500ms 1 5 10 30 60 ...
  CHECK(m.task_duration.count() == 3);
  CHECK(m.task_duration.sum() == Approx(42.007));
  CHECK(m.task_duration.counts() ==
        std::vector<uint64_t>{0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3});
  // Lags 3 ms (a), 2.003 s (c), 7 ms (b) over bounds .1ms .5ms 1ms 2.5ms 5ms 10ms 25ms 50ms
  // 100ms 250ms 500ms 1 2.5 5 10.
  CHECK(m.scheduling_lag.count() == 3);
  CHECK(m.scheduling_lag.sum() == Approx(2.013));
  CHECK(m.scheduling_lag.counts() ==
        std::vector<uint64_t>{0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3});
  // One commit per call; only the held one took time (3 ms).
  const auto calls = static_cast<uint64_t>(h.store.calls);
  CHECK(m.commit_latency.count() == calls);
  CHECK(m.commit_latency.sum() == Approx(0.003));
  CHECK(m.commit_latency.counts()[0] == calls - 1);
  CHECK(m.commit_latency.counts()[3] == calls - 1);
  CHECK(m.commit_latency.counts()[4] == calls);
  CHECK(m.active_runs == 0);
  CHECK(m.running_attempts == 0);
  CHECK(m.pools.at("default").in_use == 0);
  CHECK(m.pools.at("default").waiting == 0);
}

TEST_CASE("metrics count propagated, cancelled and retried ends by state") {
  auto a = Task("a");
  a.retry.retries = 1;
  a.retry.retry_delay = std::chrono::milliseconds(1);
  Harness h({a, Task("b", {"a"}), Task("c", {"b"}), Task("d")});
  h.store.fail_next = 1;  // the first commit fails and is retried: both calls are observed
  h.Start();
  h.runner.Exit("a", 1);
  h.Settle();  // up_for_retry is not an end
  CHECK(h.scheduler->Metrics().tasks_finished.empty());
  CHECK(h.scheduler->Metrics().task_duration.count() == 1);
  h.runner.Exit("a", 1);
  h.Settle();
  CHECK(h.scheduler->Metrics().tasks_finished ==
        std::map<std::string, uint64_t>{{"failed", 1}, {"upstream_failed", 2}});
  h.scheduler->CancelRun(RunId{7});  // d is killed
  h.Settle();
  sch::MetricsSnapshot m = h.scheduler->Metrics();
  CHECK(m.tasks_finished ==
        std::map<std::string, uint64_t>{{"failed", 1}, {"upstream_failed", 2}, {"cancelled", 1}});
  CHECK(m.runs_finished == std::map<std::string, uint64_t>{{"cancelled", 1}});
  CHECK(m.task_duration.count() == 3);   // a twice, the killed d once
  CHECK(m.scheduling_lag.count() == 2);  // first attempts only: a and d
  CHECK(m.commit_latency.count() == static_cast<uint64_t>(h.store.calls));
  CHECK(h.store.calls == static_cast<int>(h.store.committed.size()) + 1);
}

TEST_CASE("a mark decided before a cancel is what the killed task records") {
  Harness h({Task("a"), Task("b", {"a"})});
  h.Start();
  std::optional<kiln::Status> status;
  h.scheduler->MarkTask(RunId{7}, TaskId{0}, TaskState::kSuccess, "verified",
                        [&](kiln::Status s) { status = std::move(s); });
  h.scheduler->CancelRun(RunId{7});
  h.Settle();
  REQUIRE(status.has_value());
  CHECK(status->ok());
  CHECK(LastUpdate(h, "a")->state == TaskState::kSuccess);
  CHECK(LastUpdate(h, "a")->reason == "verified");
  CHECK(LastUpdate(h, "b")->state == TaskState::kCancelled);
  CHECK(h.runner.order == std::vector<std::string>{"a"});
  CHECK(h.recorder.state == RunState::kCancelled);
}
