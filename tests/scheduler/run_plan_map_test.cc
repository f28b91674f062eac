// RunPlan::Expand: a mapped task's instances are units of their own, ready at once; the parent
// ends with the aggregate of their ends when the last one ends, then its downstream decides.
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "scheduler/run_plan.h"

using kiln::Index;
using kiln::TaskId;
using kiln::dag::RunState;
using kiln::dag::TaskState;
using kiln::scheduler::Change;
using kiln::scheduler::RunPlan;

namespace {

// list -> train (mapped) -> report
std::unique_ptr<kiln::dag::Pipeline> MakePipeline() {
  kiln::dag::PipelineSpec spec;
  spec.name = "map";
  for (auto [id, need] :
       {std::pair<std::string, std::string>{"list", ""}, {"train", "list"}, {"report", "train"}}) {
    kiln::dag::TaskSpec task;
    task.id = id;
    task.command = "true";
    if (!need.empty()) task.needs = {need};
    spec.tasks.push_back(task);
  }
  kiln::dag::Dag dag(spec);
  return std::make_unique<kiln::dag::Pipeline>(
      kiln::dag::Pipeline{std::move(spec), std::move(dag), std::nullopt});
}

constexpr TaskId kList{0}, kTrain{1}, kReport{2};

}  // namespace

TEST_CASE("instances are ready at once and the parent ends with their aggregate") {
  auto p = MakePipeline();
  RunPlan plan(*p);
  CHECK(plan.TakeReady() == std::vector<TaskId>{kList});
  CHECK(plan.Finish(kList, TaskState::kSuccess).empty());
  CHECK(plan.TakeReady() == std::vector<TaskId>{kTrain});
  const TaskId first = plan.Expand(kTrain, 3, nullptr);
  CHECK(Index(first) == 3);
  CHECK(plan.units() == 6);
  CHECK(plan.state(kTrain) == TaskState::kRunning);
  CHECK(plan.ParentOf(TaskId{4}) == kTrain);
  CHECK_FALSE(plan.ParentOf(kReport).has_value());
  CHECK(plan.TakeReady() == std::vector<TaskId>{TaskId{3}, TaskId{4}, TaskId{5}});
  CHECK(plan.Finish(TaskId{3}, TaskState::kSuccess).empty());
  CHECK(plan.Finish(TaskId{5}, TaskState::kSuccess).empty());
  CHECK(plan.unfinished() == 3);  // one instance, the parent, report
  const std::vector<Change> last = plan.Finish(TaskId{4}, TaskState::kSuccess);
  REQUIRE(last.size() == 1);
  CHECK(last[0].task == kTrain);
  CHECK(last[0].state == TaskState::kSuccess);
  CHECK(last[0].cause == TaskId{4});
  CHECK(plan.TakeReady() == std::vector<TaskId>{kReport});
  CHECK(plan.Finish(kReport, TaskState::kSuccess).empty());
  CHECK(plan.done());
  CHECK(plan.Outcome() == RunState::kSuccess);
}

TEST_CASE("one failed instance fails the parent and its downstream, and all skipped skips it") {
  SECTION("failed") {
    auto p = MakePipeline();
    RunPlan plan(*p);
    plan.TakeReady();
    plan.Finish(kList, TaskState::kSuccess);
    plan.TakeReady();
    plan.Expand(kTrain, 2, nullptr);
    plan.TakeReady();
    CHECK(plan.Finish(TaskId{3}, TaskState::kFailed).empty());  // the other still runs
    const std::vector<Change> last = plan.Finish(TaskId{4}, TaskState::kSuccess);
    REQUIRE(last.size() == 2);
    CHECK(last[0].task == kTrain);
    CHECK(last[0].state == TaskState::kFailed);
    CHECK(last[1].task == kReport);
    CHECK(last[1].state == TaskState::kUpstreamFailed);
    CHECK(plan.Outcome() == RunState::kFailed);
  }
  SECTION("all skipped") {
    auto p = MakePipeline();
    RunPlan plan(*p);
    plan.TakeReady();
    plan.Finish(kList, TaskState::kSuccess);
    plan.TakeReady();
    plan.Expand(kTrain, 2, nullptr);
    plan.TakeReady();
    plan.Finish(TaskId{3}, TaskState::kSkipped);
    const std::vector<Change> last = plan.Finish(TaskId{4}, TaskState::kSkipped);
    REQUIRE(last.size() == 2);
    CHECK(last[0].state == TaskState::kSkipped);
    CHECK(last[1].task == kReport);
    CHECK(last[1].state == TaskState::kSkipped);
  }
  SECTION("success and skipped mixed: failed, as the format says") {
    auto p = MakePipeline();
    RunPlan plan(*p);
    plan.TakeReady();
    plan.Finish(kList, TaskState::kSuccess);
    plan.TakeReady();
    plan.Expand(kTrain, 2, nullptr);
    plan.TakeReady();
    plan.Finish(TaskId{3}, TaskState::kSkipped);
    CHECK(plan.Finish(TaskId{4}, TaskState::kSuccess)[0].state == TaskState::kFailed);
  }
}

TEST_CASE("no items skip the mapped task at once, and a cancel reaches the instances") {
  auto p = MakePipeline();
  RunPlan plan(*p);
  plan.TakeReady();
  plan.Finish(kList, TaskState::kSuccess);
  plan.TakeReady();
  std::vector<Change> changes;
  plan.Expand(kTrain, 0, &changes);
  REQUIRE(changes.size() == 2);
  CHECK(changes[0].task == kTrain);
  CHECK(changes[0].state == TaskState::kSkipped);
  CHECK(changes[1].task == kReport);
  CHECK(changes[1].state == TaskState::kSkipped);
  CHECK(plan.done());

  auto q = MakePipeline();
  RunPlan other(*q);
  other.TakeReady();
  other.Finish(kList, TaskState::kSuccess);
  other.TakeReady();
  other.Expand(kTrain, 10000, nullptr);  // one call, however many items
  CHECK(other.TakeReady().size() == 10000);
  const std::vector<TaskId> cancelled = other.CancelAll();
  CHECK(cancelled.size() == 10002);  // the instances, the parent, report
  CHECK(other.Outcome() == RunState::kCancelled);
}

TEST_CASE("a resumed plan rebuilds instances: pending ones ready, ended ones counted") {
  auto p = MakePipeline();
  // list succeeded; train expanded into 3: [0] success, [1] running, [2] queued.
  RunPlan plan(*p,
               {TaskState::kSuccess, TaskState::kRunning, TaskState::kPending, TaskState::kSuccess,
                TaskState::kRunning, TaskState::kQueued},
               {kTrain, kTrain, kTrain});
  CHECK(plan.units() == 6);
  CHECK(plan.IsExpanded(kTrain));
  CHECK(plan.mapped(kTrain)->ended == 1);
  CHECK(plan.TakeReady() == std::vector<TaskId>{TaskId{5}});
  CHECK(plan.TakeInitialChanges().empty());
  CHECK(plan.Finish(TaskId{5}, TaskState::kSuccess).empty());
  const std::vector<Change> last = plan.Finish(TaskId{4}, TaskState::kFailed);
  REQUIRE(last.size() == 2);
  CHECK(last[0].task == kTrain);
  CHECK(last[0].state == TaskState::kFailed);
  CHECK(last[1].task == kReport);
  CHECK(last[1].state == TaskState::kUpstreamFailed);
  CHECK(plan.done());
  CHECK(plan.Outcome() == RunState::kFailed);
}

TEST_CASE("a resumed plan whose instances had all ended ends their task first") {
  auto p = MakePipeline();
  RunPlan plan(*p,
               {TaskState::kSuccess, TaskState::kRunning, TaskState::kPending, TaskState::kSuccess,
                TaskState::kSkipped},
               {kTrain, kTrain});
  const std::vector<Change> changes = plan.TakeInitialChanges();
  REQUIRE(changes.size() == 2);
  CHECK(changes[0].task == kTrain);
  CHECK(changes[0].state == TaskState::kFailed);  // a mix of success and skipped
  CHECK(changes[1].task == kReport);
  CHECK(changes[1].state == TaskState::kUpstreamFailed);
  CHECK(plan.TakeReady().empty());
  CHECK(plan.done());
}

TEST_CASE("a resumed plan whose mapped task was cancelled: an instance under way ends later") {
  auto p = MakePipeline();
  // Cancelled while [0] ran: its row stays running until it exits; [1] never started.
  RunPlan plan(*p,
               {TaskState::kSuccess, TaskState::kCancelled, TaskState::kCancelled,
                TaskState::kRunning, TaskState::kPending},
               {kTrain, kTrain});
  const std::vector<Change> changes = plan.TakeInitialChanges();
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].task == TaskId{4});
  CHECK(changes[0].state == TaskState::kCancelled);
  CHECK(changes[0].cause == kTrain);
  CHECK(plan.TakeReady().empty());
  CHECK(plan.unfinished() == 1);
  CHECK(plan.Finish(TaskId{3}, TaskState::kCancelled).empty());
  CHECK(plan.done());
  CHECK(plan.Outcome() == RunState::kCancelled);
}
