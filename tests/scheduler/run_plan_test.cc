#include "scheduler/run_plan.h"

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

using kiln::TaskId;
using kiln::dag::RunState;
using kiln::dag::TaskState;
using kiln::dag::TriggerRule;
using kiln::scheduler::Change;
using kiln::scheduler::RunPlan;

namespace {

struct TaskDef {
  std::string id;
  std::vector<std::string> needs;
  TriggerRule rule = TriggerRule::kAllSuccess;
  bool allow_failure = false;
};

// A pipeline built by hand (valid by construction), independent of the TOML loader. Held by
// pointer: the plan keeps a reference to it.
std::unique_ptr<kiln::dag::Pipeline> MakePipeline(const std::vector<TaskDef>& defs) {
  kiln::dag::PipelineSpec spec;
  spec.name = "run-plan-test";
  for (const TaskDef& def : defs) {
    kiln::dag::TaskSpec task;
    task.id = def.id;
    task.command = "true";
    task.needs = def.needs;
    task.trigger_rule = def.rule;
    task.allow_failure = def.allow_failure;
    spec.tasks.push_back(task);
  }
  kiln::dag::Dag dag(spec);
  return std::make_unique<kiln::dag::Pipeline>(
      kiln::dag::Pipeline{std::move(spec), std::move(dag), std::nullopt});
}

std::vector<TaskId> Ids(std::initializer_list<uint32_t> indexes) {
  std::vector<TaskId> ids;
  for (uint32_t i : indexes) ids.push_back(static_cast<TaskId>(i));
  return ids;
}

TaskId T(uint32_t index) { return static_cast<TaskId>(index); }

// t0 <- t1 <- ... <- t(n-1), all all_success.
std::vector<TaskDef> Chain(uint32_t n) {
  std::vector<TaskDef> defs(n);
  for (uint32_t i = 0; i < n; ++i) {
    defs[i].id = "t" + std::to_string(i);
    if (i > 0) defs[i].needs = {defs[i - 1].id};
  }
  return defs;
}

// Takes `task` through queued and running, as the scheduler does, then finishes it.
std::vector<Change> RunAndFinish(RunPlan& plan, TaskId task, TaskState end_state) {
  plan.SetState(task, TaskState::kQueued);
  plan.SetState(task, TaskState::kRunning);
  return plan.Finish(task, end_state);
}

bool SameChange(const Change& change, uint32_t task, TaskState state, uint32_t cause) {
  return change.task == T(task) && change.state == state && change.cause == T(cause);
}

// The end state of `target`, the only downstream of two upstreams u1 and u2 with the given end
// states, under `rule`.
TaskState JoinOutcome(TriggerRule rule, TaskState first, TaskState second) {
  auto pipeline = MakePipeline({{"u1", {}}, {"u2", {}}, {"target", {"u1", "u2"}, rule}});
  RunPlan plan(*pipeline);
  REQUIRE(plan.TakeReady() == Ids({0, 1}));
  RunAndFinish(plan, T(0), first);
  RunAndFinish(plan, T(1), second);
  std::vector<TaskId> ready = plan.TakeReady();
  if (ready == Ids({2})) {
    // Ran: report it as success to tell it apart from a decided end state.
    RunAndFinish(plan, T(2), TaskState::kSuccess);
  } else {
    REQUIRE(ready.empty());
  }
  REQUIRE(plan.done());
  return plan.state(T(2));
}

}  // namespace

TEST_CASE("a chain runs one task after another") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}});
  RunPlan plan(*pipeline);
  CHECK(plan.unfinished() == 3);
  CHECK(plan.TakeReady() == Ids({0}));
  CHECK(plan.TakeReady().empty());  // each task is returned once
  plan.SetState(T(0), TaskState::kRunning);
  CHECK(plan.state(T(0)) == TaskState::kRunning);
  CHECK(plan.state(T(1)) == TaskState::kPending);
  CHECK(plan.Finish(T(0), TaskState::kSuccess).empty());
  CHECK(plan.state(T(0)) == TaskState::kSuccess);
  CHECK(plan.TakeReady() == Ids({1}));
  CHECK(RunAndFinish(plan, T(1), TaskState::kSuccess).empty());
  CHECK(plan.TakeReady() == Ids({2}));
  CHECK_FALSE(plan.done());
  CHECK(RunAndFinish(plan, T(2), TaskState::kSuccess).empty());
  CHECK(plan.done());
  CHECK(plan.Outcome() == RunState::kSuccess);
}

TEST_CASE("a failure propagates upstream_failed down a chain") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}});
  RunPlan plan(*pipeline);
  plan.TakeReady();
  std::vector<Change> changes = RunAndFinish(plan, T(0), TaskState::kFailed);
  REQUIRE(changes.size() == 2);
  CHECK(SameChange(changes[0], 1, TaskState::kUpstreamFailed, 0));
  CHECK(SameChange(changes[1], 2, TaskState::kUpstreamFailed, 1));
  CHECK(plan.TakeReady().empty());
  CHECK(plan.done());
  CHECK(plan.Outcome() == RunState::kFailed);
}

TEST_CASE("roots are ready in file order and fan-out releases in downstream order") {
  // 0 z, 1 a, 2 fan1<-a, 3 fan2<-a, 4 fan3<-a, 5 join<-fan1,fan2,fan3,z
  auto pipeline = MakePipeline({{"z", {}},
                                {"a", {}},
                                {"fan1", {"a"}},
                                {"fan2", {"a"}},
                                {"fan3", {"a"}},
                                {"join", {"fan1", "fan2", "fan3", "z"}}});
  RunPlan plan(*pipeline);
  CHECK(plan.TakeReady() == Ids({0, 1}));
  RunAndFinish(plan, T(1), TaskState::kSuccess);
  CHECK(plan.TakeReady() == Ids({2, 3, 4}));
  RunAndFinish(plan, T(3), TaskState::kSuccess);
  RunAndFinish(plan, T(2), TaskState::kSuccess);
  RunAndFinish(plan, T(4), TaskState::kSuccess);
  CHECK(plan.TakeReady().empty());  // join still waits for z
  RunAndFinish(plan, T(0), TaskState::kSuccess);
  CHECK(plan.TakeReady() == Ids({5}));
  RunAndFinish(plan, T(5), TaskState::kSuccess);
  CHECK(plan.Outcome() == RunState::kSuccess);
}

TEST_CASE("a diamond decides its join only when both branches ended") {
  // 0 a, 1 b<-a, 2 c<-a, 3 d<-b,c, 4 e<-d
  auto pipeline =
      MakePipeline({{"a", {}}, {"b", {"a"}}, {"c", {"a"}}, {"d", {"b", "c"}}, {"e", {"d"}}});
  RunPlan plan(*pipeline);
  plan.TakeReady();
  RunAndFinish(plan, T(0), TaskState::kSuccess);
  CHECK(plan.TakeReady() == Ids({1, 2}));
  CHECK(RunAndFinish(plan, T(2), TaskState::kFailed).empty());
  CHECK(plan.state(T(3)) == TaskState::kPending);
  std::vector<Change> changes = RunAndFinish(plan, T(1), TaskState::kSuccess);
  REQUIRE(changes.size() == 2);
  CHECK(SameChange(changes[0], 3, TaskState::kUpstreamFailed, 1));
  CHECK(SameChange(changes[1], 4, TaskState::kUpstreamFailed, 3));
  CHECK(plan.done());
  CHECK(plan.Outcome() == RunState::kFailed);
}

TEST_CASE("skipped propagates as skipped, not as a failure") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}});
  RunPlan plan(*pipeline);
  plan.TakeReady();
  std::vector<Change> changes = RunAndFinish(plan, T(0), TaskState::kSkipped);
  REQUIRE(changes.size() == 2);
  CHECK(SameChange(changes[0], 1, TaskState::kSkipped, 0));
  CHECK(SameChange(changes[1], 2, TaskState::kSkipped, 1));
  CHECK(plan.Outcome() == RunState::kSuccess);
}

TEST_CASE("each trigger rule end to end") {
  constexpr TaskState kS = TaskState::kSuccess;
  constexpr TaskState kF = TaskState::kFailed;
  constexpr TaskState kSk = TaskState::kSkipped;
  constexpr TaskState kUf = TaskState::kUpstreamFailed;
  constexpr TaskState kC = TaskState::kCancelled;
  // "Ran" shows as success (JoinOutcome finishes a task that ran with success).
  const TaskState ran = kS;

  SECTION("all_success") {
    const TriggerRule r = TriggerRule::kAllSuccess;
    CHECK(JoinOutcome(r, kS, kS) == ran);
    CHECK(JoinOutcome(r, kS, kF) == kUf);
    CHECK(JoinOutcome(r, kC, kS) == kUf);
    CHECK(JoinOutcome(r, kS, kSk) == kSk);
  }
  SECTION("all_failed") {
    const TriggerRule r = TriggerRule::kAllFailed;
    CHECK(JoinOutcome(r, kF, kF) == ran);
    CHECK(JoinOutcome(r, kF, kC) == ran);
    CHECK(JoinOutcome(r, kF, kS) == kSk);
    CHECK(JoinOutcome(r, kSk, kF) == kSk);
  }
  SECTION("all_done") {
    const TriggerRule r = TriggerRule::kAllDone;
    CHECK(JoinOutcome(r, kF, kSk) == ran);
    CHECK(JoinOutcome(r, kS, kC) == ran);
  }
  SECTION("one_success") {
    const TriggerRule r = TriggerRule::kOneSuccess;
    CHECK(JoinOutcome(r, kF, kS) == ran);
    CHECK(JoinOutcome(r, kF, kSk) == kSk);
  }
  SECTION("one_failed") {
    const TriggerRule r = TriggerRule::kOneFailed;
    CHECK(JoinOutcome(r, kS, kF) == ran);
    CHECK(JoinOutcome(r, kS, kSk) == kSk);
  }
  SECTION("none_failed") {
    const TriggerRule r = TriggerRule::kNoneFailed;
    CHECK(JoinOutcome(r, kS, kSk) == ran);
    CHECK(JoinOutcome(r, kSk, kSk) == ran);
    CHECK(JoinOutcome(r, kS, kF) == kUf);
  }
  SECTION("none_failed_min_one_success") {
    const TriggerRule r = TriggerRule::kNoneFailedMinOneSuccess;
    CHECK(JoinOutcome(r, kS, kSk) == ran);
    CHECK(JoinOutcome(r, kSk, kSk) == kSk);
    CHECK(JoinOutcome(r, kSk, kF) == kUf);
  }
}

TEST_CASE("one_success starts early and is not released again") {
  // 0 slow, 1 fast, 2 either<-slow,fast (one_success), 3 after<-either
  auto pipeline = MakePipeline({{"slow", {}},
                                {"fast", {}},
                                {"either", {"slow", "fast"}, TriggerRule::kOneSuccess},
                                {"after", {"either"}}});
  RunPlan plan(*pipeline);
  CHECK(plan.TakeReady() == Ids({0, 1}));
  plan.SetState(T(0), TaskState::kRunning);
  CHECK(RunAndFinish(plan, T(1), TaskState::kSuccess).empty());
  CHECK(plan.TakeReady() == Ids({2}));
  plan.SetState(T(2), TaskState::kRunning);
  // The other upstream ending, even failed, neither re-releases nor decides `either`.
  CHECK(plan.Finish(T(0), TaskState::kFailed).empty());
  CHECK(plan.TakeReady().empty());
  CHECK(plan.state(T(2)) == TaskState::kRunning);
  CHECK(plan.Finish(T(2), TaskState::kSuccess).empty());
  CHECK(plan.TakeReady() == Ids({3}));
  RunAndFinish(plan, T(3), TaskState::kSuccess);
  CHECK(plan.done());
  CHECK(plan.Outcome() == RunState::kFailed);  // `slow` failed without allow_failure
}

TEST_CASE("one_success that finished before its last upstream stays finished") {
  auto pipeline = MakePipeline(
      {{"slow", {}}, {"fast", {}}, {"either", {"slow", "fast"}, TriggerRule::kOneSuccess}});
  RunPlan plan(*pipeline);
  plan.TakeReady();
  RunAndFinish(plan, T(1), TaskState::kSuccess);
  CHECK(plan.TakeReady() == Ids({2}));
  RunAndFinish(plan, T(2), TaskState::kSuccess);
  CHECK(RunAndFinish(plan, T(0), TaskState::kSkipped).empty());
  CHECK(plan.state(T(2)) == TaskState::kSuccess);
  CHECK(plan.TakeReady().empty());
  CHECK(plan.Outcome() == RunState::kSuccess);
}

TEST_CASE("one_failed starts as soon as one upstream failed") {
  // The alert of the format's example: 0 train, 1 evaluate<-train, 2 alert<-train,evaluate.
  auto pipeline = MakePipeline(
      {{"train", {}},
       {"evaluate", {"train"}},
       {"alert", {"train", "evaluate"}, TriggerRule::kOneFailed, /*allow_failure=*/true}});
  RunPlan plan(*pipeline);
  plan.TakeReady();
  std::vector<Change> changes = RunAndFinish(plan, T(0), TaskState::kFailed);
  REQUIRE(changes.size() == 1);
  CHECK(SameChange(changes[0], 1, TaskState::kUpstreamFailed, 0));
  CHECK(plan.TakeReady() == Ids({2}));
  CHECK(RunAndFinish(plan, T(2), TaskState::kFailed).empty());
  CHECK(plan.Outcome() == RunState::kFailed);  // train failed
}

TEST_CASE("one_failed is skipped when everything succeeded") {
  auto pipeline = MakePipeline(
      {{"train", {}},
       {"evaluate", {"train"}},
       {"alert", {"train", "evaluate"}, TriggerRule::kOneFailed, /*allow_failure=*/true}});
  RunPlan plan(*pipeline);
  plan.TakeReady();
  RunAndFinish(plan, T(0), TaskState::kSuccess);
  CHECK(plan.TakeReady() == Ids({1}));
  std::vector<Change> changes = RunAndFinish(plan, T(1), TaskState::kSuccess);
  REQUIRE(changes.size() == 1);
  CHECK(SameChange(changes[0], 2, TaskState::kSkipped, 1));
  CHECK(plan.Outcome() == RunState::kSuccess);
}

TEST_CASE("allow_failure keeps a failed task from failing the run") {
  SECTION("a failed leaf with allow_failure") {
    auto pipeline = MakePipeline({{"main", {}}, {"optional", {}, {}, /*allow_failure=*/true}});
    RunPlan plan(*pipeline);
    plan.TakeReady();
    RunAndFinish(plan, T(0), TaskState::kSuccess);
    RunAndFinish(plan, T(1), TaskState::kFailed);
    CHECK(plan.Outcome() == RunState::kSuccess);
  }
  SECTION("its downstream still sees failed") {
    auto pipeline =
        MakePipeline({{"optional", {}, {}, /*allow_failure=*/true}, {"next", {"optional"}}});
    RunPlan plan(*pipeline);
    plan.TakeReady();
    std::vector<Change> changes = RunAndFinish(plan, T(0), TaskState::kFailed);
    REQUIRE(changes.size() == 1);
    CHECK(SameChange(changes[0], 1, TaskState::kUpstreamFailed, 0));
    CHECK(plan.Outcome() == RunState::kFailed);
  }
  SECTION("a tolerant downstream keeps the run green") {
    auto pipeline = MakePipeline({{"optional", {}, {}, /*allow_failure=*/true},
                                  {"next", {"optional"}, TriggerRule::kAllDone}});
    RunPlan plan(*pipeline);
    plan.TakeReady();
    CHECK(RunAndFinish(plan, T(0), TaskState::kFailed).empty());
    CHECK(plan.TakeReady() == Ids({1}));
    RunAndFinish(plan, T(1), TaskState::kSuccess);
    CHECK(plan.Outcome() == RunState::kSuccess);
  }
  SECTION("upstream_failed with allow_failure") {
    auto pipeline = MakePipeline(
        {{"a", {}, {}, /*allow_failure=*/true}, {"b", {"a"}, {}, /*allow_failure=*/true}});
    RunPlan plan(*pipeline);
    plan.TakeReady();
    RunAndFinish(plan, T(0), TaskState::kFailed);
    CHECK(plan.state(T(1)) == TaskState::kUpstreamFailed);
    CHECK(plan.Outcome() == RunState::kSuccess);
  }
}

TEST_CASE("CancelAll ends every unfinished task and nothing runs afterwards") {
  // 0 a, 1 b<-a, 2 c<-b, 3 d (independent, done)
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}, {"d", {}}});
  RunPlan plan(*pipeline);
  CHECK(plan.TakeReady() == Ids({0, 3}));
  plan.SetState(T(0), TaskState::kRunning);
  RunAndFinish(plan, T(3), TaskState::kSuccess);
  CHECK(plan.CancelAll() == Ids({0, 1, 2}));
  CHECK(plan.done());
  CHECK(plan.state(T(0)) == TaskState::kCancelled);
  CHECK(plan.state(T(2)) == TaskState::kCancelled);
  CHECK(plan.state(T(3)) == TaskState::kSuccess);
  // The killed attempt reports late: nothing changes.
  CHECK(plan.Finish(T(0), TaskState::kFailed).empty());
  CHECK(plan.state(T(0)) == TaskState::kCancelled);
  CHECK(plan.TakeReady().empty());
  CHECK(plan.Outcome() == RunState::kCancelled);
  CHECK(plan.CancelAll().empty());
}

TEST_CASE("CancelAll drops tasks that were ready but not taken") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {}}});
  RunPlan plan(*pipeline);
  CHECK(plan.CancelAll() == Ids({0, 1}));
  CHECK(plan.TakeReady().empty());
  CHECK(plan.Outcome() == RunState::kCancelled);
}

TEST_CASE("a cancelled task counts as failed for its downstream") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {}}, {"c", {"a", "b"}}});
  RunPlan plan(*pipeline);
  CHECK(plan.TakeReady() == Ids({0, 1}));
  // Ended before it was taken (e.g. an operator cancelled it): not returned as ready.
  CHECK(plan.Finish(T(0), TaskState::kCancelled).empty());
  std::vector<Change> changes = RunAndFinish(plan, T(1), TaskState::kSuccess);
  REQUIRE(changes.size() == 1);
  CHECK(SameChange(changes[0], 2, TaskState::kUpstreamFailed, 1));
  CHECK(plan.Outcome() == RunState::kCancelled);
}

TEST_CASE("a task that ends before it is taken is not returned as ready") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {}}});
  RunPlan plan(*pipeline);
  CHECK(plan.Finish(T(1), TaskState::kCancelled).empty());
  CHECK(plan.TakeReady() == Ids({0}));
}

TEST_CASE("a second report for an ended task changes nothing") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}});
  RunPlan plan(*pipeline);
  plan.TakeReady();
  RunAndFinish(plan, T(0), TaskState::kSuccess);
  CHECK(plan.Finish(T(0), TaskState::kFailed).empty());
  CHECK(plan.state(T(0)) == TaskState::kSuccess);
  CHECK(plan.unfinished() == 1);
  CHECK(plan.TakeReady() == Ids({1}));
}

TEST_CASE("up_for_retry is bookkeeping only") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}});
  RunPlan plan(*pipeline);
  plan.TakeReady();
  plan.SetState(T(0), TaskState::kRunning);
  plan.SetState(T(0), TaskState::kUpForRetry);
  CHECK(plan.state(T(0)) == TaskState::kUpForRetry);
  CHECK(plan.TakeReady().empty());
  CHECK(plan.unfinished() == 2);
  RunAndFinish(plan, T(0), TaskState::kSuccess);
  CHECK(plan.TakeReady() == Ids({1}));
}

TEST_CASE("upstream_failed propagates through a 10,000-task chain without recursion") {
  constexpr uint32_t kTasks = 10000;
  auto pipeline = MakePipeline(Chain(kTasks));
  RunPlan plan(*pipeline);
  CHECK(plan.TakeReady() == Ids({0}));
  std::vector<Change> changes = RunAndFinish(plan, T(0), TaskState::kFailed);
  REQUIRE(changes.size() == kTasks - 1);
  for (uint32_t i = 1; i < kTasks; ++i) {
    REQUIRE(SameChange(changes[i - 1], i, TaskState::kUpstreamFailed, i - 1));
  }
  CHECK(plan.done());
  CHECK(plan.Outcome() == RunState::kFailed);
}

TEST_CASE("a 10,000-task chain runs to success one task at a time") {
  constexpr uint32_t kTasks = 10000;
  auto pipeline = MakePipeline(Chain(kTasks));
  RunPlan plan(*pipeline);
  for (uint32_t i = 0; i < kTasks; ++i) {
    REQUIRE(plan.TakeReady() == Ids({i}));
    REQUIRE(RunAndFinish(plan, T(i), TaskState::kSuccess).empty());
  }
  CHECK(plan.done());
  CHECK(plan.Outcome() == RunState::kSuccess);
}

// Resuming an ended run (a retry): kept tasks count as finished upstreams, pending ones run.

TEST_CASE("a resumed plan runs the pending tasks and never announces kept ones") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}, {"d", {}}});
  RunPlan plan(*pipeline, {TaskState::kSuccess, TaskState::kPending, TaskState::kPending,
                           TaskState::kSuccess});
  CHECK(plan.TakeInitialChanges().empty());
  CHECK(plan.unfinished() == 2);
  CHECK(plan.state(T(0)) == TaskState::kSuccess);
  CHECK(plan.TakeReady() == Ids({1}));
  CHECK(plan.TakeReady().empty());
  CHECK(RunAndFinish(plan, T(1), TaskState::kSuccess).empty());
  CHECK(plan.TakeReady() == Ids({2}));
  CHECK(RunAndFinish(plan, T(2), TaskState::kSuccess).empty());
  CHECK(plan.done());
  CHECK(plan.Outcome() == RunState::kSuccess);
}

TEST_CASE("a resumed join waits for its pending upstream, counting the kept one") {
  // 0 a, 1 b<-a, 2 c<-a, 3 d<-b,c: b kept, c re-runs.
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}, {"c", {"a"}}, {"d", {"b", "c"}}});
  RunPlan plan(*pipeline, {TaskState::kSuccess, TaskState::kSuccess, TaskState::kPending,
                           TaskState::kPending});
  CHECK(plan.TakeReady() == Ids({2}));
  CHECK(RunAndFinish(plan, T(2), TaskState::kSuccess).empty());
  CHECK(plan.TakeReady() == Ids({3}));
  RunAndFinish(plan, T(3), TaskState::kSuccess);
  CHECK(plan.Outcome() == RunState::kSuccess);
}

TEST_CASE("a resumed task decided by kept upstreams ends at construction, transitively") {
  // 0 a (kept failed), 1 b (kept success), 2 c<-b,a, 3 d<-c, 4 e (pending root)
  auto pipeline = MakePipeline({{"a", {}}, {"b", {}}, {"c", {"b", "a"}}, {"d", {"c"}}, {"e", {}}});
  RunPlan plan(*pipeline, {TaskState::kFailed, TaskState::kSuccess, TaskState::kPending,
                           TaskState::kPending, TaskState::kPending});
  std::vector<Change> changes = plan.TakeInitialChanges();
  REQUIRE(changes.size() == 2);
  // The cause is the upstream that explains it (a failed), not merely the last one listed.
  CHECK(SameChange(changes[0], 2, TaskState::kUpstreamFailed, 0));
  CHECK(SameChange(changes[1], 3, TaskState::kUpstreamFailed, 2));
  CHECK(plan.TakeInitialChanges().empty());  // returned once
  CHECK(plan.state(T(3)) == TaskState::kUpstreamFailed);
  CHECK(plan.unfinished() == 1);
  CHECK(plan.TakeReady() == Ids({4}));
  CHECK(RunAndFinish(plan, T(4), TaskState::kSuccess).empty());
  CHECK(plan.done());
  CHECK(plan.Outcome() == RunState::kFailed);
}

TEST_CASE("a resumed skip names the upstream that explains it") {
  SECTION("all_success after a kept skip") {
    auto pipeline = MakePipeline({{"a", {}}, {"b", {}}, {"c", {"a", "b"}}});
    RunPlan plan(*pipeline, {TaskState::kSuccess, TaskState::kSkipped, TaskState::kPending});
    std::vector<Change> changes = plan.TakeInitialChanges();
    REQUIRE(changes.size() == 1);
    CHECK(SameChange(changes[0], 2, TaskState::kSkipped, 1));
    CHECK(plan.Outcome() == RunState::kSuccess);
  }
  SECTION("all_failed after a kept success") {
    auto pipeline =
        MakePipeline({{"a", {}}, {"b", {}}, {"c", {"a", "b"}, TriggerRule::kAllFailed}});
    RunPlan plan(*pipeline, {TaskState::kFailed, TaskState::kSuccess, TaskState::kPending});
    std::vector<Change> changes = plan.TakeInitialChanges();
    REQUIRE(changes.size() == 1);
    CHECK(SameChange(changes[0], 2, TaskState::kSkipped, 1));
  }
}

TEST_CASE("a resumed one_success runs at once on a kept success") {
  // 0 slow (pending), 1 fast (kept success), 2 either<-slow,fast (one_success)
  auto pipeline = MakePipeline(
      {{"slow", {}}, {"fast", {}}, {"either", {"slow", "fast"}, TriggerRule::kOneSuccess}});
  RunPlan plan(*pipeline, {TaskState::kPending, TaskState::kSuccess, TaskState::kPending});
  CHECK(plan.TakeReady() == Ids({0, 2}));
  CHECK(RunAndFinish(plan, T(0), TaskState::kFailed).empty());  // does not re-decide `either`
  CHECK(plan.state(T(2)) == TaskState::kPending);
  RunAndFinish(plan, T(2), TaskState::kSuccess);
  CHECK(plan.Outcome() == RunState::kFailed);  // `slow` failed
}

TEST_CASE("a resumed plan with every task kept is done at once") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}});
  RunPlan plan(*pipeline, {TaskState::kSuccess, TaskState::kCancelled});
  CHECK(plan.done());
  CHECK(plan.TakeReady().empty());
  CHECK(plan.TakeInitialChanges().empty());
  CHECK(plan.Outcome() == RunState::kCancelled);
  // A report for a kept task changes nothing.
  CHECK(plan.Finish(T(1), TaskState::kSuccess).empty());
  CHECK(plan.state(T(1)) == TaskState::kCancelled);
}

TEST_CASE("an all-pending resumed plan is a fresh plan") {
  auto pipeline =
      MakePipeline({{"z", {}}, {"a", {}}, {"b", {"a"}}, {"c", {"z", "b"}, TriggerRule::kAllDone}});
  RunPlan fresh(*pipeline);
  RunPlan resumed(*pipeline, std::vector<TaskState>(4, TaskState::kPending));
  CHECK(fresh.TakeReady() == Ids({0, 1}));
  CHECK(resumed.TakeReady() == Ids({0, 1}));
  CHECK(resumed.TakeInitialChanges().empty());
  CHECK(resumed.unfinished() == 4);
}

TEST_CASE("a 10,000-task chain resumed halfway starts at the first pending task") {
  constexpr uint32_t kTasks = 10000;
  auto pipeline = MakePipeline(Chain(kTasks));
  std::vector<TaskState> states(kTasks, TaskState::kPending);
  for (uint32_t i = 0; i < kTasks / 2; ++i) states[i] = TaskState::kSuccess;
  RunPlan plan(*pipeline, states);
  CHECK(plan.unfinished() == kTasks / 2);
  for (uint32_t i = kTasks / 2; i < kTasks; ++i) {
    REQUIRE(plan.TakeReady() == Ids({i}));
    REQUIRE(RunAndFinish(plan, T(i), TaskState::kSuccess).empty());
  }
  CHECK(plan.Outcome() == RunState::kSuccess);
}
