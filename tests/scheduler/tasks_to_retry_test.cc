#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "scheduler/run_plan.h"

using kiln::TaskId;
using kiln::dag::TaskState;
using kiln::scheduler::TasksToRetry;

namespace {

struct TaskDef {
  std::string id;
  std::vector<std::string> needs;
};

std::unique_ptr<kiln::dag::Pipeline> MakePipeline(const std::vector<TaskDef>& defs) {
  kiln::dag::PipelineSpec spec;
  spec.name = "retry-select-test";
  for (const TaskDef& def : defs) {
    kiln::dag::TaskSpec task;
    task.id = def.id;
    task.command = "true";
    task.needs = def.needs;
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

constexpr TaskState kS = TaskState::kSuccess;
constexpr TaskState kF = TaskState::kFailed;
constexpr TaskState kUf = TaskState::kUpstreamFailed;
constexpr TaskState kSk = TaskState::kSkipped;
constexpr TaskState kC = TaskState::kCancelled;

}  // namespace

TEST_CASE("retry failed re-runs failures and their downstream, keeping successes") {
  // 0 prep, 1 train<-prep, 2 eval<-train, 3 report<-eval, 4 lint (independent), 5 docs<-lint
  auto pipeline = MakePipeline({{"prep", {}},
                                {"train", {"prep"}},
                                {"eval", {"train"}},
                                {"report", {"eval"}},
                                {"lint", {}},
                                {"docs", {"lint"}}});
  CHECK(TasksToRetry(*pipeline, {kS, kF, kUf, kUf, kS, kS}, std::nullopt) == Ids({1, 2, 3}));
}

TEST_CASE("retry failed re-runs cancelled tasks and what ran after them") {
  // 0 a, 1 b<-a (all_done: it ran after a was cancelled), 2 c
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}, {"c", {}}});
  CHECK(TasksToRetry(*pipeline, {kC, kS, kS}, std::nullopt) == Ids({0, 1}));
}

TEST_CASE("retry failed with nothing failed selects nothing") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}, {"c", {}}});
  CHECK(TasksToRetry(*pipeline, {kSk, kSk, kS}, std::nullopt).empty());
}

TEST_CASE("retry from a task re-runs it and everything downstream, whatever their states") {
  // 0 a, 1 b<-a, 2 c<-a, 3 d<-b,c, 4 e<-d, 5 f
  auto pipeline = MakePipeline(
      {{"a", {}}, {"b", {"a"}}, {"c", {"a"}}, {"d", {"b", "c"}}, {"e", {"d"}}, {"f", {}}});
  CHECK(TasksToRetry(*pipeline, {kS, kS, kF, kUf, kUf, kS}, T(1)) == Ids({1, 3, 4}));
  CHECK(TasksToRetry(*pipeline, {kS, kS, kS, kS, kS, kS}, T(0)) == Ids({0, 1, 2, 3, 4}));
  CHECK(TasksToRetry(*pipeline, {kS, kS, kS, kS, kS, kS}, T(5)) == Ids({5}));
}

TEST_CASE("retry selections come in pipeline order, not graph order") {
  // The downstream task is declared first.
  auto pipeline = MakePipeline({{"report", {"train"}}, {"train", {}}});
  CHECK(TasksToRetry(*pipeline, {kUf, kF}, std::nullopt) == Ids({0, 1}));
  CHECK(TasksToRetry(*pipeline, {kS, kS}, T(1)) == Ids({0, 1}));
}

TEST_CASE("a task that never ended is re-run with its downstream in either mode") {
  auto pipeline = MakePipeline({{"a", {}}, {"b", {"a"}}, {"c", {}}});
  CHECK(TasksToRetry(*pipeline, {TaskState::kPending, kS, kS}, std::nullopt) == Ids({0, 1}));
  CHECK(TasksToRetry(*pipeline, {TaskState::kRunning, kS, kS}, T(2)) == Ids({0, 1, 2}));
}
