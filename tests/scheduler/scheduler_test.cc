// The scheduler driven end to end with fakes: a store that commits (or fails) on demand and a
// runner whose attempts the test ends by hand.
#include "scheduler/scheduler.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <map>

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
    asio::post(io_, [done, fail] {
      done(fail ? kiln::Status::Error(kiln::ErrorCode::kUnavailable, "database down")
                : kiln::Status::Ok());
    });
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

 private:
  asio::io_context& io_;
};

class FakeRunner final : public sch::TaskRunner {
 public:
  FakeRunner(asio::io_context& io, FakeStore& store) : io_(io), store_(store) {}
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
    running[id] = Started{std::move(request), std::move(on_exit), durable};
  }
  void Kill(RunId, TaskId task) override {
    std::string id = task_names.at(kiln::Index(task));
    auto it = running.find(id);
    if (it == running.end()) return;
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
    asio::post(io_, [f = node.mapped().on_exit, o] { f(o); });
  }
  std::vector<std::string> task_names;
  std::vector<std::string> order;
  std::map<std::string, Started> running;

 private:
  asio::io_context& io_;
  FakeStore& store_;
};

class FixedClock final : public sch::Clock {
 public:
  kiln::Instant Now() override { return now; }
  kiln::Instant now{std::chrono::milliseconds(1'800'000'000'000)};
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
  void Start(std::vector<std::pair<std::string, kiln::dag::ParamValue>> params = {}) {
    sch::RunContext ctx;
    ctx.id = RunId{7};
    ctx.pipeline = pipeline;
    ctx.params = params.empty() ? decltype(params){{"word", std::string("a b")}} : params;
    ctx.logical_date = clock.now;
    scheduler->AddRun(ctx);
    Settle();
  }
  void Settle() {
    io.restart();
    io.run();
  }
  kiln::dag::PipelineSpec spec;
  std::shared_ptr<kiln::dag::Pipeline> pipeline;
  asio::io_context io;
  FakeStore store{io};
  FakeRunner runner{io, store};
  FixedClock clock;
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
