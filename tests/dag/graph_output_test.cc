#include <catch2/catch.hpp>
#include <string>

#include "dag/graph.h"

using kiln::dag::PipelineSpec;
using kiln::dag::TaskSpec;

namespace {

PipelineSpec Churn() {
  PipelineSpec spec;
  spec.name = "churn-retrain";
  auto add = [&spec](const std::string& id, std::vector<std::string> needs) {
    TaskSpec task;
    task.id = id;
    task.command = "true";
    task.needs = std::move(needs);
    spec.tasks.push_back(task);
  };
  add("prepare", {});
  add("train", {"prepare"});
  add("evaluate", {"train"});
  add("end", {"train", "evaluate"});
  return spec;
}

}  // namespace

TEST_CASE("DOT output lists tasks in file order and edges upstream to downstream") {
  CHECK(kiln::dag::ToDot(Churn()) ==
        "digraph \"churn-retrain\" {\n"
        "  rankdir=LR;\n"
        "  node [shape=box];\n"
        "  \"prepare\";\n"
        "  \"train\";\n"
        "  \"evaluate\";\n"
        "  \"end\";\n"
        "  \"prepare\" -> \"train\";\n"
        "  \"train\" -> \"evaluate\";\n"
        "  \"train\" -> \"end\";\n"
        "  \"evaluate\" -> \"end\";\n"
        "}\n");
}

TEST_CASE("Mermaid output uses generated node ids labelled with the task ids") {
  CHECK(kiln::dag::ToMermaid(Churn()) ==
        "flowchart TD\n"
        "  t0[\"prepare\"]\n"
        "  t1[\"train\"]\n"
        "  t2[\"evaluate\"]\n"
        "  t3[\"end\"]\n"
        "  t0 --> t1\n"
        "  t1 --> t2\n"
        "  t1 --> t3\n"
        "  t2 --> t3\n");
}

TEST_CASE("graph output escapes quotes and leaves out needs that name no task") {
  PipelineSpec spec = Churn();
  spec.name = "a\"b";
  spec.tasks[0].id = "x\"y";
  spec.tasks[1].needs = {"missing", "missing"};
  const std::string dot = kiln::dag::ToDot(spec);
  CHECK(dot.starts_with("digraph \"a\\\"b\" {\n"));
  CHECK(dot.find("  \"x\\\"y\";\n") != std::string::npos);
  CHECK(dot.find("missing") == std::string::npos);
  const std::string mermaid = kiln::dag::ToMermaid(spec);
  CHECK(mermaid.find("  t0[\"x#quot;y\"]\n") != std::string::npos);
  CHECK(mermaid.find("t0 --> t1") == std::string::npos);
  CHECK(kiln::dag::ToDot(spec) == dot);  // deterministic
}
