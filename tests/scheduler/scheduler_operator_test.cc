// Operators' actions through the scheduler with fakes: retrying an ended run, marking tasks by
// hand, and the metrics it keeps.
#include "tests/scheduler/scheduler_harness.h"

using namespace scheduler_test;

namespace {

using Step = std::tuple<std::string, TaskState, int>;  // task, state, attempt

std::vector<Step> Steps(const std::vector<sch::TaskUpdate>& updates, size_t from = 0) {
  std::vector<Step> out;
  for (size_t i = from; i < updates.size(); ++i) {
    out.emplace_back(updates[i].task_id, updates[i].state, updates[i].attempt);
  }
  return out;
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
  CHECK(h.runner.running["train"].request.log_path == "/data/logs/p/7/train.3.log");
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
