// The scheduler across restarts and takeovers, with fakes: runs resumed from their rows (adopted
// attempts, waiting retries), refused updates, stopping without cancelling.
#include "tests/scheduler/scheduler_harness.h"

using namespace scheduler_test;

namespace {

// Run 7 as the rows of a daemon that stopped left it: `states` per task, attempts as given.
sch::RunContext Resumed(const Harness& h, std::vector<TaskState> states,
                        std::vector<int> attempts) {
  sch::RunContext ctx = h.Context();
  ctx.resumed = true;
  ctx.initial_states = std::move(states);
  ctx.initial_attempts = attempts;
  ctx.round_base = std::vector<int>(attempts.size(), 0);
  ctx.supervisors = std::vector<std::string>(attempts.size(), "host:/data#41");
  return ctx;
}

struct Probe final : sch::Observer {
  void OnRunFinished(RunId, RunState s) override { state = s; }
  void OnRunFenced(RunId run) override { fenced.push_back(run); }
  std::optional<RunState> state;
  std::vector<RunId> fenced;
};

}  // namespace

TEST_CASE("a resumed run adopts its running attempt and carries on when it ends") {
  Harness h({Task("a"), Task("b", {"a"}), Task("c", {"b"})});
  h.scheduler->AddRun(
      Resumed(h, {TaskState::kSuccess, TaskState::kRunning, TaskState::kPending}, {1, 2, 0}));
  h.Settle();
  REQUIRE(h.runner.adopted.size() == 1);
  CHECK(h.runner.adopted[0].task_id == "b");
  CHECK(h.runner.adopted[0].attempt == 2);
  CHECK(h.runner.adopted[0].supervisor == "host:/data#41");
  CHECK_FALSE(h.runner.adopted[0].at_start);  // a run read again: an unknown attempt is lost
  CHECK(h.runner.order.empty());              // nothing started: "c" waits for "b"
  // The run's row is already running: nothing is written for it.
  CHECK(h.store.committed.empty());
  CHECK(h.scheduler->Metrics().running_attempts == 1);
  CHECK(h.scheduler->pools().in_use("default") == 1);

  h.runner.Exit("b", 0);
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"c"});
  CHECK(h.runner.recorded == std::vector<std::string>{"b#2"});
  h.runner.Exit("c", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
  auto updates = h.store.TaskUpdates();
  REQUIRE(updates.size() == 3);
  CHECK(updates[0].task_id == "b");
  CHECK(updates[0].attempt == 2);
  CHECK(updates[0].state == TaskState::kSuccess);
  CHECK(updates[1].task_id == "c");
  CHECK(updates[1].start.has_value());
}

TEST_CASE("an adopted attempt that was lost follows the task's retry policy") {
  auto b = Task("b", {"a"});
  b.retry.retries = 1;
  b.retry.retry_delay = std::chrono::milliseconds(1);
  Harness h({Task("a"), b});
  h.scheduler->AddRun(Resumed(h, {TaskState::kSuccess, TaskState::kRunning}, {1, 1}));
  h.Settle();
  kiln::scheduler::AttemptOutcome lost;
  lost.lost = true;
  lost.error = "its supervisor is gone and recorded no end";
  h.runner.Finish("b", lost);
  h.Settle();
  REQUIRE(h.runner.running.count("b"));
  CHECK(h.runner.running["b"].request.attempt == 2);
  auto updates = h.store.TaskUpdates();
  REQUIRE(!updates.empty());
  CHECK(updates[0].state == TaskState::kUpForRetry);
  CHECK(updates[0].reason == "lost: its supervisor is gone and recorded no end; retrying in 1ms");
  CHECK(h.scheduler->Metrics().attempts_lost == 1);
  h.runner.Exit("b", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
}

TEST_CASE("an adopted attempt that never reached its supervisor starts as the same attempt") {
  Harness h({Task("a"), Task("b", {"a"})});  // no retries: a lost attempt would fail the run
  auto ctx = Resumed(h, {TaskState::kSuccess, TaskState::kRunning}, {1, 1});
  ctx.resumed_at_start = true;
  h.scheduler->AddRun(std::move(ctx));
  h.Settle();
  REQUIRE(h.runner.adopted.size() == 1);
  CHECK(h.runner.adopted[0].at_start);
  kiln::scheduler::AttemptOutcome never;
  never.never_launched = true;
  never.error = "its start was recorded but never reached its supervisor";
  h.runner.Finish("b", never);
  h.Settle();
  // Started again, as attempt 1, with its start already recorded: nothing is written for it.
  REQUIRE(h.runner.running.count("b"));
  CHECK(h.runner.order == std::vector<std::string>{"b"});
  CHECK(h.runner.running["b"].request.attempt == 1);
  CHECK(h.runner.running["b"].request.start_recorded);
  CHECK(h.store.TaskUpdates().empty());
  CHECK(h.scheduler->Metrics().attempts_relaunched == 1);
  CHECK(h.scheduler->Metrics().attempts_lost == 0);
  CHECK(h.scheduler->Metrics().running_attempts == 1);
  CHECK(h.scheduler->pools().in_use("default") == 1);
  h.runner.Exit("b", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
  auto updates = h.store.TaskUpdates();
  REQUIRE(updates.size() == 1);
  CHECK(updates[0].task_id == "b");
  CHECK(updates[0].attempt == 1);
  CHECK(updates[0].state == TaskState::kSuccess);
  CHECK(h.runner.recorded == std::vector<std::string>{"b#1"});
}

TEST_CASE("a resumed retry waits for its recorded time, and queued tasks are decided again") {
  Harness h({Task("a"), Task("b"), Task("c", {"a", "b"})});
  auto ctx =
      Resumed(h, {TaskState::kUpForRetry, TaskState::kQueued, TaskState::kPending}, {1, 0, 0});
  ctx.retry_at = {h.clock.now + std::chrono::hours(1), std::nullopt, std::nullopt};
  h.scheduler->AddRun(ctx);
  h.SettleReady();
  // "b" was queued: its start is decided again at once. "a" waits an hour for its retry.
  CHECK(h.runner.order == std::vector<std::string>{"b"});
  CHECK(h.runner.running.count("a") == 0);
}

TEST_CASE("a resumed run whose cancel was requested is cancelled, its attempt stopped") {
  Harness h({Task("a"), Task("b", {"a"})});
  auto ctx = Resumed(h, {TaskState::kRunning, TaskState::kPending}, {1, 0});
  ctx.cancel_reason = "cancelled by admin";
  h.scheduler->AddRun(ctx);
  h.Settle();
  CHECK(h.runner.killed == std::vector<std::string>{"a"});
  CHECK(h.recorder.state == RunState::kCancelled);
  auto updates = h.store.TaskUpdates();
  REQUIRE(updates.size() == 2);
  CHECK(updates[0].task_id == "b");
  CHECK(updates[0].state == TaskState::kCancelled);
  CHECK(updates[0].reason == "cancelled by admin");
  CHECK(updates[1].task_id == "a");
  CHECK(updates[1].state == TaskState::kCancelled);
}

TEST_CASE("an attempt its supervisor stopped for a requested cancel ends the run cancelled") {
  auto a = Task("a");
  a.retry.retries = 3;
  Harness h({a, Task("b", {"a"})});
  h.Start();
  kiln::scheduler::AttemptOutcome stopped;
  stopped.started = true;
  stopped.killed = true;
  stopped.signal = 15;
  stopped.stop_cause = "cancel";
  stopped.error = "the run is being cancelled";
  h.runner.Finish("a", stopped);
  h.Settle();
  CHECK(h.recorder.state == RunState::kCancelled);
  CHECK(h.runner.running.empty());  // not retried
}

TEST_CASE("a fenced start is never launched and the run is handed to the observer") {
  Harness h({Task("a")});
  Probe probe;
  h.scheduler->SetObserver(&probe);
  h.store.refuse.push_back({"a", TaskState::kRunning, false, ""});
  h.Start();
  CHECK(h.runner.order.empty());
  CHECK(probe.fenced == std::vector<RunId>{RunId{7}});
  CHECK(h.scheduler->IsActive(RunId{7}));
  h.scheduler->Release(RunId{7});
  CHECK_FALSE(h.scheduler->IsActive(RunId{7}));
  CHECK(h.scheduler->pools().in_use("default") == 0);
  CHECK_FALSE(probe.state.has_value());
}

TEST_CASE("an end the store rejects is recorded again with safe values and the rest commits") {
  Harness h({Task("a"), Task("b"), Task("c", {"a"})});
  h.Start();
  h.store.refuse.push_back({"a", TaskState::kSuccess, true, "invalid byte sequence"});
  h.runner.Exit("a", 0);
  h.runner.Exit("b", 0);
  h.Settle();
  auto updates = h.store.TaskUpdates();
  std::vector<std::string> seen;
  for (const auto& u : updates) {
    seen.push_back(u.task_id + ":" + std::string(kiln::dag::Name(u.state)));
  }
  // The start of "c" committed with the rejected end; the end is written again after it.
  CHECK(seen ==
        std::vector<std::string>{"a:running", "b:running", "c:running", "b:success", "a:success"});
  const auto& a = updates.back();
  CHECK(a.reason == "success (its details could not be recorded: invalid byte sequence)");
  REQUIRE(a.end.has_value());
  CHECK_FALSE(a.end->exit_code.has_value());
  // Acknowledged once the replacement was durable, and once only.
  CHECK(std::count(h.runner.recorded.begin(), h.runner.recorded.end(), "a#1") == 1);
  h.runner.Exit("c", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
}

TEST_CASE("a start the store rejects fails the task without an attempt") {
  Harness h({Task("a"), Task("b", {"a"})});
  h.store.refuse.push_back({"a", TaskState::kRunning, true, "value too long"});
  h.Start();
  CHECK(h.runner.order.empty());
  CHECK(h.recorder.state == RunState::kFailed);
  auto updates = h.store.TaskUpdates();
  REQUIRE(updates.size() == 2);
  CHECK(updates[0].task_id == "a");
  CHECK(updates[0].state == TaskState::kFailed);
  CHECK(updates[0].attempt == 0);
  CHECK(updates[0].reason == "its state could not be recorded: value too long");
  CHECK(updates[1].state == TaskState::kUpstreamFailed);
}

TEST_CASE("stopping without cancelling leaves attempts running and starts nothing new") {
  auto a = Task("a");
  a.retry.retries = 1;
  a.retry.retry_delay = std::chrono::milliseconds(1);
  Harness h({a, Task("b"), Task("c", {"b"})}, 1);
  h.Start();
  REQUIRE(h.runner.order == std::vector<std::string>{"a"});  // one slot: "b" waits, queued
  bool done = false;
  h.scheduler->Shutdown(sch::StopMode::kLeave, "the daemon stopped", [&] { done = true; });
  h.Settle();
  CHECK(done);
  CHECK(h.runner.killed.empty());
  // An exit that arrives now is left to the supervisor: not recorded, not acknowledged.
  const size_t before = h.store.TaskUpdates().size();
  h.runner.Exit("a", 3);
  h.Settle();
  CHECK(h.store.TaskUpdates().size() == before);
  CHECK(h.runner.recorded.empty());
  CHECK(h.runner.order == std::vector<std::string>{"a"});
  CHECK_FALSE(h.recorder.state.has_value());
}

TEST_CASE("stopping without cancelling commits the pending batch and launches its starts") {
  Harness h({Task("a")});
  h.store.hold = true;
  h.Start();  // the start of "a" is being committed
  CHECK(h.runner.order.empty());
  bool done = false;
  h.scheduler->Shutdown(sch::StopMode::kLeave, "the daemon stopped", [&] { done = true; });
  h.SettleReady();
  CHECK_FALSE(done);  // its commit is in flight
  h.store.hold = false;
  h.store.ReleaseHeld();
  h.Settle();
  CHECK(done);
  CHECK(h.runner.order == std::vector<std::string>{"a"});  // every recorded start has a process
}

TEST_CASE("a failing store is retried with a growing delay and the failure time is kept") {
  Harness h({Task("a")});
  h.store.fail_next = 3;
  h.Start();
  CHECK(h.store.calls == 4);
  CHECK(h.scheduler->Metrics().commits_failed == 3);
  CHECK_FALSE(h.scheduler->failing_since().has_value());
  CHECK(h.runner.order == std::vector<std::string>{"a"});
}
