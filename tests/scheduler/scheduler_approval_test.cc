// Approval tasks (Execution::kApproval) through the scheduler with fakes: they wait without a
// slot or a process, end as an operator decides or at their deadline, and a resumed run keeps
// them waiting with the deadline it recorded.
#include "tests/scheduler/scheduler_harness.h"

using namespace scheduler_test;

namespace {

kiln::dag::TaskSpec Approval(std::string id, std::vector<std::string> needs,
                             kiln::Duration timeout = kiln::Duration(0)) {
  kiln::dag::TaskSpec t;
  t.id = std::move(id);
  t.kind = "approval";
  t.execution = kiln::dag::Execution::kApproval;
  t.needs = std::move(needs);
  t.timeout = timeout;
  return t;
}

kiln::Status Decide(Harness& h, const std::string& task, bool approve, const std::string& reason) {
  std::optional<kiln::Status> result;
  h.scheduler->Decide(RunId{7}, task, approve, reason,
                      {{"decision", approve ? "approved" : "rejected"}, {"by", "ops"}},
                      [&](kiln::Status s) { result = std::move(s); });
  CHECK_FALSE(result.has_value());  // never from inside Decide
  h.SettleReady();
  REQUIRE(result.has_value());
  return *result;
}

}  // namespace

TEST_CASE("an approval waits without a slot and its approval lets the downstream run") {
  // One slot: the approval holds none, so the other branch runs while it waits.
  Harness h({Task("build"), Approval("approve", {"build"}, std::chrono::hours(2)),
             Task("ship", {"approve"}), Task("lint", {"build"})},
            1);
  h.scheduler->AddRun(h.Context());
  h.SettleReady();
  h.runner.Exit("build", 0);
  h.SettleReady();
  const sch::TaskUpdate* waiting = LastUpdate(h, "approve");
  REQUIRE(waiting != nullptr);
  CHECK(waiting->state == TaskState::kWaiting);
  CHECK(waiting->attempt == 0);
  CHECK(waiting->waiting_for == "approval");
  CHECK(waiting->retry_at == h.clock.now + std::chrono::hours(2));
  CHECK(waiting->reason.starts_with("waiting for approval; rejected if nobody decides by "));
  CHECK(h.runner.running.count("lint") == 1);  // the only slot
  CHECK(h.scheduler->pools().in_use("default") == 1);
  h.runner.Exit("lint", 0);
  h.SettleReady();
  CHECK(h.scheduler->pools().in_use("default") == 0);
  CHECK(h.scheduler->IsActive(RunId{7}));

  // Not an approval task; not waiting.
  CHECK(Decide(h, "nosuch", true, "x").message() == "run 7 has no task 'nosuch'");
  CHECK(Decide(h, "ship", true, "x").message() ==
        "task 'ship' is not an approval task (its kind is shell)");
  CHECK(Decide(h, "approve", true, "approved by ops").ok());
  const sch::TaskUpdate* decided = LastUpdate(h, "approve");
  CHECK(decided->state == TaskState::kSuccess);
  CHECK(decided->reason == "approved by ops");
  CHECK(decided->detail ==
        std::vector<std::pair<std::string, std::string>>{{"decision", "approved"}, {"by", "ops"}});
  CHECK(Decide(h, "approve", false, "late").message() ==
        "task 'approve' is not waiting for approval (it is success)");
  h.runner.Exit("ship", 0);
  h.SettleReady();
  CHECK(h.recorder.state == RunState::kSuccess);
  CHECK(Decide(h, "nosuch", true, "x").message() == "run 7 is not active");
}

TEST_CASE("a rejected approval fails and its downstream ends upstream_failed") {
  Harness h({Approval("approve", {}), Task("ship", {"approve"})});
  h.scheduler->AddRun(h.Context());
  h.SettleReady();
  CHECK(LastUpdate(h, "approve")->state == TaskState::kWaiting);
  CHECK_FALSE(LastUpdate(h, "approve")->retry_at.has_value());  // no timeout: no deadline
  CHECK(Decide(h, "approve", false, "rejected by ops: no").ok());
  CHECK(LastUpdate(h, "approve")->state == TaskState::kFailed);
  CHECK(LastUpdate(h, "ship")->state == TaskState::kUpstreamFailed);
  CHECK(h.recorder.state == RunState::kFailed);
  CHECK(h.runner.order.empty());
}

TEST_CASE("an approval nobody decides is rejected at its deadline") {
  Harness h({Approval("approve", {}, std::chrono::milliseconds(5)), Task("ship", {"approve"})});
  h.Start();  // runs until the deadline timer has fired
  const sch::TaskUpdate* end = LastUpdate(h, "approve");
  CHECK(end->state == TaskState::kFailed);
  CHECK(end->reason == "rejected: nobody decided within its timeout of 5ms");
  CHECK(end->detail == std::vector<std::pair<std::string, std::string>>{
                           {"decision", "rejected"}, {"by", "timeout"}, {"note", ""}});
  CHECK(h.recorder.state == RunState::kFailed);
}

TEST_CASE("a waiting approval can be marked, and is cancelled with its run") {
  Harness h({Approval("a", {}), Approval("b", {}), Task("c", {"a"})});
  h.scheduler->AddRun(h.Context());
  h.SettleReady();
  CHECK(h.Mark("a", TaskState::kSuccess, "by hand").ok());
  CHECK(LastUpdate(h, "a")->state == TaskState::kSuccess);
  CHECK(h.runner.running.count("c") == 1);
  h.scheduler->CancelRun(RunId{7}, "run cancelled");
  h.SettleReady();
  CHECK(LastUpdate(h, "b")->state == TaskState::kCancelled);
  h.Settle();
  CHECK(h.recorder.state == RunState::kCancelled);
}

TEST_CASE("a resumed run's approval waits on with the deadline it recorded") {
  SECTION("a deadline to come: it still waits, then is approved") {
    Harness h({Task("build"), Approval("approve", {"build"}, std::chrono::hours(1)),
               Task("ship", {"approve"})});
    sch::RunContext ctx = h.Context();
    ctx.resumed = true;
    ctx.initial_states = {TaskState::kSuccess, TaskState::kWaiting, TaskState::kPending};
    ctx.initial_attempts = {1, 0, 0};
    ctx.retry_at = {std::nullopt, h.clock.now + std::chrono::minutes(10), std::nullopt};
    h.scheduler->AddRun(ctx);
    h.SettleReady();
    CHECK(h.store.TaskUpdates().empty());  // nothing written again, nothing lost
    CHECK(h.runner.order.empty());
    CHECK(Decide(h, "approve", true, "approved by ops").ok());
    CHECK(h.runner.running.count("ship") == 1);
  }
  SECTION("a deadline passed while no daemon ran: rejected at once") {
    Harness h({Approval("approve", {}, std::chrono::hours(1)), Task("ship", {"approve"})});
    sch::RunContext ctx = h.Context();
    ctx.resumed = true;
    ctx.initial_states = {TaskState::kWaiting, TaskState::kPending};
    ctx.retry_at = {h.clock.now - std::chrono::minutes(1), std::nullopt};
    h.scheduler->AddRun(ctx);
    h.Settle();
    CHECK(LastUpdate(h, "approve")->state == TaskState::kFailed);
    CHECK(LastUpdate(h, "approve")->reason == "rejected: nobody decided within its timeout of 1h");
    CHECK(h.recorder.state == RunState::kFailed);
  }
}
