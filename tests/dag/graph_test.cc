#include "dag/graph.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <span>
#include <string>
#include <vector>

using kiln::TaskId;
using kiln::dag::Dag;
using kiln::dag::PipelineSpec;

namespace {

struct TaskDef {
  std::string id;
  std::vector<std::string> needs;
};

// A spec built by hand (valid by construction), independent of the TOML loader.
PipelineSpec MakeSpec(const std::vector<TaskDef>& defs) {
  PipelineSpec spec;
  spec.name = "graph-test";
  for (const TaskDef& def : defs) {
    kiln::dag::TaskSpec task;
    task.id = def.id;
    task.command = "true";
    task.needs = def.needs;
    spec.tasks.push_back(task);
  }
  return spec;
}

std::vector<TaskId> Ids(std::initializer_list<uint32_t> indexes) {
  std::vector<TaskId> ids;
  for (uint32_t i : indexes) ids.push_back(static_cast<TaskId>(i));
  return ids;
}

std::vector<TaskId> ToVector(std::span<const TaskId> span) { return {span.begin(), span.end()}; }

}  // namespace

TEST_CASE("an empty pipeline has an empty graph") {
  Dag dag(MakeSpec({}));
  CHECK(dag.size() == 0);
  CHECK(dag.topological_order().empty());
  CHECK(dag.roots().empty());
  CHECK_FALSE(dag.Find("a").has_value());
}

TEST_CASE("adjacency follows the order of needs and of tasks in the file") {
  // 0 prepare, 1 check, 2 train, 3 evaluate, 4 alert
  Dag dag(MakeSpec({{"prepare", {}},
                    {"check", {"prepare"}},
                    {"train", {"check", "prepare"}},
                    {"evaluate", {"train"}},
                    {"alert", {"train", "evaluate"}}}));
  REQUIRE(dag.size() == 5);
  CHECK(ToVector(dag.upstream(TaskId{0})).empty());
  CHECK(ToVector(dag.upstream(TaskId{2})) == Ids({1, 0}));
  CHECK(ToVector(dag.upstream(TaskId{4})) == Ids({2, 3}));
  CHECK(ToVector(dag.downstream(TaskId{0})) == Ids({1, 2}));
  CHECK(ToVector(dag.downstream(TaskId{2})) == Ids({3, 4}));
  CHECK(ToVector(dag.downstream(TaskId{4})).empty());
  CHECK(dag.roots() == Ids({0}));
  CHECK(dag.topological_order() == Ids({0, 1, 2, 3, 4}));
}

TEST_CASE("topological order keeps file order where the needs allow it") {
  // 0 c needs b, 1 a, 2 b needs a, 3 d, 4 e needs d
  Dag dag(MakeSpec({{"c", {"b"}}, {"a", {}}, {"b", {"a"}}, {"d", {}}, {"e", {"d"}}}));
  CHECK(dag.roots() == Ids({1, 3}));
  CHECK(dag.topological_order() == Ids({1, 2, 0, 3, 4}));
}

TEST_CASE("every task comes after all its upstreams") {
  Dag dag(MakeSpec({{"join", {"left", "right"}},
                    {"right", {"root"}},
                    {"left", {"root"}},
                    {"root", {}},
                    {"tail", {"join", "root"}}}));
  const auto& order = dag.topological_order();
  REQUIRE(order.size() == dag.size());
  std::vector<size_t> position(dag.size());
  for (size_t i = 0; i < order.size(); ++i) position[kiln::Index(order[i])] = i;
  for (uint32_t t = 0; t < dag.size(); ++t) {
    for (TaskId up : dag.upstream(TaskId{t})) CHECK(position[kiln::Index(up)] < position[t]);
  }
  CHECK(order == Ids({3, 1, 2, 0, 4}));
}

TEST_CASE("Find resolves task ids by name") {
  Dag dag(MakeSpec({{"zeta", {}}, {"alpha", {}}, {"mid", {"alpha"}}}));
  CHECK(dag.Find("zeta") == TaskId{0});
  CHECK(dag.Find("alpha") == TaskId{1});
  CHECK(dag.Find("mid") == TaskId{2});
  CHECK_FALSE(dag.Find("").has_value());
  CHECK_FALSE(dag.Find("alph").has_value());
  CHECK_FALSE(dag.Find("alphaa").has_value());
  CHECK_FALSE(dag.Find("zz").has_value());
}

TEST_CASE("DownstreamClosure lists reachable tasks in topological order") {
  // 0 a, 1 b<-a, 2 c<-a, 3 d<-b,c, 4 e (separate), 5 f<-d,e
  Dag dag(MakeSpec(
      {{"a", {}}, {"b", {"a"}}, {"c", {"a"}}, {"d", {"b", "c"}}, {"e", {}}, {"f", {"d", "e"}}}));
  CHECK(dag.DownstreamClosure(TaskId{0}) == Ids({0, 1, 2, 3, 5}));
  CHECK(dag.DownstreamClosure(TaskId{2}) == Ids({2, 3, 5}));
  CHECK(dag.DownstreamClosure(TaskId{4}) == Ids({4, 5}));
  CHECK(dag.DownstreamClosure(TaskId{5}) == Ids({5}));
}

TEST_CASE("a long chain builds without deep recursion") {
  std::vector<TaskDef> defs;
  constexpr int kTasks = 10000;
  for (int i = 0; i < kTasks; ++i) {
    defs.push_back(
        {"t" + std::to_string(i), i == 0 ? std::vector<std::string>{}
                                         : std::vector<std::string>{"t" + std::to_string(i - 1)}});
  }
  // Listed last to first: the topological order must still be first to last.
  std::reverse(defs.begin(), defs.end());
  Dag dag(MakeSpec(defs));
  REQUIRE(dag.topological_order().size() == kTasks);
  CHECK(dag.topological_order().front() == TaskId{kTasks - 1});
  CHECK(dag.topological_order().back() == TaskId{0});
  CHECK(dag.roots() == Ids({kTasks - 1}));
  CHECK(dag.DownstreamClosure(TaskId{kTasks - 1}).size() == kTasks);
  CHECK(dag.Find("t0") == TaskId{kTasks - 1});
}

TEST_CASE("the critical path is the chain whose costs add up to the most") {
  // prepare -> (train_a | train_b) -> pick -> report; lint alone.
  Dag dag(MakeSpec({{"prepare", {}},
                    {"train_a", {"prepare"}},
                    {"train_b", {"prepare"}},
                    {"pick", {"train_a", "train_b"}},
                    {"report", {"pick"}},
                    {"lint", {}}}));
  auto names = [&](const std::vector<TaskId>& path) {
    std::vector<std::string> out;
    const char* ids[] = {"prepare", "train_a", "train_b", "pick", "report", "lint"};
    for (TaskId id : path) out.push_back(ids[kiln::Index(id)]);
    return out;
  };
  using Names = std::vector<std::string>;
  std::vector<int64_t> cost = {10, 50, 70, 5, 1, 20};
  CHECK(names(CriticalPath(dag, cost)) == Names{"prepare", "train_b", "pick", "report"});
  cost = {10, 90, 70, 5, 1, 20};
  CHECK(names(CriticalPath(dag, cost)) == Names{"prepare", "train_a", "pick", "report"});
  // A lone task that takes longer than every chain is the path by itself.
  cost = {10, 90, 70, 5, 1, 500};
  CHECK(names(CriticalPath(dag, cost)) == Names{"lint"});
  // Ties go to the task first in the file; nothing run yet: the first task.
  cost = {0, 0, 0, 0, 0, 0};
  CHECK(names(CriticalPath(dag, cost)) == Names{"prepare"});
  cost = {1, 5, 5, 1, 1, 0};
  CHECK(names(CriticalPath(dag, cost)) == Names{"prepare", "train_a", "pick", "report"});
  CHECK(CriticalPath(Dag(MakeSpec({})), std::vector<int64_t>{}).empty());
}
