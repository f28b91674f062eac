// A runner that hands some pools' starts to other machines in the commit that records them
// (TaskRunner::HandsOut / HandOut): the start's update carries what workers claim, the runner
// learns when it is durable or refused, and the other pools start as before.
#include "tests/scheduler/scheduler_harness.h"

using namespace scheduler_test;

namespace {

kiln::dag::TaskSpec OnPool(kiln::dag::TaskSpec t, std::string pool) {
  t.pool = std::move(pool);
  return t;
}

void WithGpu(sch::SchedulerOptions& o) { o.pools["gpu"] = 2; }

// The start update of `task`'s `attempt` that the store was given (it must be there).
sch::TaskUpdate StartOf(const FakeStore& store, const std::string& task, int attempt = 1) {
  for (const auto& u : store.TaskUpdates()) {
    if (u.task_id == task && u.attempt == attempt && u.start) return u;
  }
  FAIL("no start of " << task << " attempt " << attempt);
  return {};
}

}  // namespace

TEST_CASE("a start of a pool handed out travels in the commit that records it") {
  Harness h({OnPool(Task("a"), "gpu"), Task("b", {"a"})}, 4, WithGpu);
  h.runner.hands_out = {"gpu"};
  h.store.hold = true;
  h.Start();
  // Handed to the runner before its commit, never started by Start().
  CHECK(h.runner.handed == std::vector<std::string>{"a"});
  CHECK(h.runner.order.empty());
  CHECK_FALSE(h.runner.running.at("a").start_was_durable);
  // What it launches is claimed only once committed: a worker runs a recorded start.
  CHECK(h.runner.running.at("a").request.start_recorded);
  const sch::TaskUpdate a = StartOf(h.store, "a");
  REQUIRE(a.start->handout.has_value());
  CHECK(a.start->handout->pool == "gpu");
  CHECK(a.start->handout->slots == 1);
  CHECK(a.start->handout->launch == "launch of a");
  CHECK(h.runner.starts_recorded.empty());
  h.store.hold = false;
  h.store.ReleaseHeld();
  h.Settle();
  CHECK(h.runner.starts_recorded == std::vector<std::string>{"a#1"});
  // b's pool is not handed out: it starts after its commit, through Start().
  h.runner.Exit("a", 0);
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"b"});
  CHECK_FALSE(StartOf(h.store, "b").start->handout.has_value());
  h.runner.Exit("b", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
  CHECK(h.runner.handed == std::vector<std::string>{"a"});
  CHECK(h.runner.starts_refused.empty());
}

TEST_CASE("a handed-out start the store refuses is refused to its runner, and stopped") {
  Harness h({OnPool(Task("a"), "gpu")}, 4, WithGpu);
  h.runner.hands_out = {"gpu"};
  h.store.refuse.push_back({"a", TaskState::kRunning, false, ""});
  h.Start();
  CHECK(h.runner.handed == std::vector<std::string>{"a"});
  CHECK(h.runner.starts_refused == std::vector<std::string>{"a#1"});
  CHECK(h.runner.starts_recorded.empty());
  CHECK(h.runner.killed == std::vector<std::string>{"a"});
}

TEST_CASE("a retry of a handed-out task is handed out again, in its own commit") {
  auto t = OnPool(Task("a"), "gpu");
  t.retry.retries = 1;
  t.retry.retry_delay = std::chrono::milliseconds(1);
  Harness h({t}, 4, WithGpu);
  h.runner.hands_out = {"gpu"};
  h.Start();
  h.runner.Exit("a", 3);
  h.Settle();
  CHECK(h.runner.handed == std::vector<std::string>{"a", "a"});
  CHECK(h.runner.starts_recorded == std::vector<std::string>{"a#1", "a#2"});
  CHECK(StartOf(h.store, "a", 2).start->handout.has_value());
  h.runner.Exit("a", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
  CHECK(h.runner.order.empty());
}
