// A runner that may start an attempt while its start commits (TaskRunner::StartsBeforeCommit):
// the process overlaps the commit, every update still commits in order, and a start the store
// refuses or rejects has its process stopped.
#include "tests/scheduler/scheduler_harness.h"

using namespace scheduler_test;

namespace {

std::vector<std::string> Seen(const FakeStore& store) {
  std::vector<std::string> seen;
  for (const auto& u : store.TaskUpdates()) {
    seen.push_back(u.task_id + ":" + std::string(kiln::dag::Name(u.state)));
  }
  return seen;
}

}  // namespace

TEST_CASE("with a runner that starts before the commit, a chain overlaps its commits") {
  Harness h({Task("a"), Task("b", {"a"}), Task("c", {"b"})});
  h.runner.early = true;
  h.store.hold = true;  // no commit answers until released
  h.Start();
  // "a" runs although its start is not durable yet.
  REQUIRE(h.runner.order == std::vector<std::string>{"a"});
  CHECK(h.store.held.size() == 1);  // the commit that records its start is not answered
  CHECK(h.store.calls == 1);
  // It ends before its start has committed: b starts at once, while the end and b's start wait
  // for the next commit, behind the first.
  h.runner.Exit("a", 0);
  h.Settle();
  CHECK(h.store.calls == 1);
  REQUIRE(h.runner.order == std::vector<std::string>{"a", "b"});
  CHECK_FALSE(h.runner.running.at("b").start_was_durable);
  // The runner is told which starts are not recorded yet, and then when they are.
  CHECK_FALSE(h.runner.running.at("b").request.start_recorded);
  CHECK(h.runner.starts_recorded.empty());
  CHECK(h.runner.recorded.empty());
  h.store.ReleaseHeld();
  h.Settle();
  CHECK(h.store.calls == 2);
  // a's start is durable (a has ended already: its runner may still hold its end).
  CHECK(h.runner.starts_recorded == std::vector<std::string>{"a#1"});
  h.store.hold = false;
  h.store.ReleaseHeld();
  h.Settle();
  // Acknowledged only once the end is durable.
  CHECK(h.runner.recorded == std::vector<std::string>{"a#1"});
  CHECK(h.runner.starts_recorded == std::vector<std::string>{"a#1", "b#1"});
  h.runner.Exit("b", 0);
  h.Settle();
  h.runner.Exit("c", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
  CHECK(Seen(h.store) == std::vector<std::string>{"a:running", "a:success", "b:running",
                                                  "b:success", "c:running", "c:success"});
  // Launched once each.
  CHECK(h.runner.order == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("a start refused after its early launch has its process stopped") {
  Harness h({Task("a")});
  h.runner.early = true;
  h.store.refuse.push_back({"a", TaskState::kRunning, false, ""});
  h.Start();
  CHECK(h.runner.order == std::vector<std::string>{"a"});
  CHECK(h.runner.killed == std::vector<std::string>{"a"});
  CHECK(h.runner.running.empty());
  CHECK(h.runner.starts_recorded.empty());
}

TEST_CASE("a start rejected after its early launch is stopped and the task fails") {
  Harness h({Task("a"), Task("b", {"a"})});
  h.runner.early = true;
  h.store.refuse.push_back({"a", TaskState::kRunning, true, "value too long"});
  h.Start();
  CHECK(h.runner.killed == std::vector<std::string>{"a"});
  CHECK(h.runner.running.empty());
  CHECK(h.recorder.state == RunState::kFailed);
  auto updates = h.store.TaskUpdates();
  REQUIRE(updates.size() == 2);
  CHECK(updates[0].task_id == "a");
  CHECK(updates[0].state == TaskState::kFailed);
  CHECK(updates[0].attempt == 0);
  CHECK(updates[0].reason == "its state could not be recorded: value too long");
  // The killed process's end was stale: acknowledged, never written.
  CHECK(updates[1].state == TaskState::kUpstreamFailed);
  CHECK(h.runner.starts_recorded.empty());
}

TEST_CASE("a runner that starts after the commit gets starts that are recorded already") {
  Harness h({Task("a"), Task("b", {"a"})});
  h.Start();
  REQUIRE(h.runner.order == std::vector<std::string>{"a"});
  CHECK(h.runner.running.at("a").start_was_durable);
  CHECK(h.runner.running.at("a").request.start_recorded);
  h.runner.Exit("a", 0);
  h.Settle();
  CHECK(h.runner.running.at("b").request.start_recorded);
  CHECK(h.runner.starts_recorded.empty());
}

TEST_CASE("a cancel while an early-launched start commits stops the process") {
  Harness h({Task("a"), Task("b", {"a"})});
  h.runner.early = true;
  h.store.hold = true;
  h.Start();
  REQUIRE(h.runner.order == std::vector<std::string>{"a"});
  h.scheduler->CancelRun(RunId{7}, "operator");
  h.Settle();
  CHECK(h.runner.killed == std::vector<std::string>{"a"});
  h.store.hold = false;
  h.store.ReleaseHeld();
  h.Settle();
  CHECK(h.recorder.state == RunState::kCancelled);
  CHECK(Seen(h.store) == std::vector<std::string>{"a:running", "b:cancelled", "a:cancelled"});
}

TEST_CASE("an early launch that fails at once ends its task after the turn, not inside it") {
  // The launch is built after the start is recorded; a secret this runner cannot read fails it
  // at once. The run ends with that failure, and nothing of the ended run is touched afterwards
  // (run under AddressSanitizer in CI).
  auto a = Task("a");
  a.command.reset();
  a.argv = std::vector<std::string>{"echo", "{{ secrets.token }}"};
  Harness h({a});
  h.runner.early = true;
  h.Start();
  CHECK(h.runner.order.empty());
  CHECK(h.recorder.state == RunState::kFailed);
  CHECK(Seen(h.store) == std::vector<std::string>{"a:running", "a:failed"});
}
