#include "dag/triggers.h"

#include <catch2/catch.hpp>

#include "config/pipeline_loader.h"

using kiln::dag::CheckTriggers;
using kiln::dag::FindTriggerCycle;

TEST_CASE("trigger cycles are found in a deterministic order") {
  CHECK_FALSE(FindTriggerCycle({{"b", {"a"}}, {"c", {"a", "b"}}}));
  auto cycle = FindTriggerCycle({{"a", {"c"}}, {"b", {"a"}}, {"c", {"b"}}, {"d", {"a"}}});
  REQUIRE(cycle);
  CHECK(*cycle == std::vector<std::string>{"a", "b", "c", "a"});
}

TEST_CASE("completion triggers across a folder: unknown pipelines and cycles") {
  auto load = [](const std::string& name, const std::string& on) {
    auto r = kiln::config::ParsePipeline("[pipeline]\nname = \"" + name +
                                             "\"\ntrigger_on_success = " + on +
                                             "\n[tasks.t]\ncommand = \"true\"\n",
                                         name + ".toml");
    REQUIRE(r.pipeline);
    return r.pipeline;
  };
  auto a = load("a", "[\"c\"]"), b = load("b", "[\"a\"]"), c = load("c", "[\"x\", \"b\"]");
  std::vector<const kiln::dag::PipelineSpec*> specs = {&a->spec, &b->spec, &c->spec};
  std::vector<std::string> errors;
  for (const auto& d : CheckTriggers(specs, true)) errors.push_back(d.ToString());
  const std::string dir = a->spec.file.parent_path().string() + "/";
  CHECK(errors == std::vector<std::string>{
                      dir + "c.toml:3:23: pipeline.trigger_on_success: unknown pipeline 'x' "
                            "(pipelines: a, b, c)",
                      dir + "b.toml:3:23: pipeline.trigger_on_success: pipelines trigger each "
                            "other in a cycle: a -> b -> c -> a",
                  });
  CHECK(CheckTriggers(specs, false).size() == 1);
}

TEST_CASE("a pipeline's own trigger list is checked") {
  auto r = kiln::config::ParsePipeline(
      "[pipeline]\nname = \"p\"\ntrigger_on_success = [\"p\", \"Bad Name\", \"q\", \"q\"]\n"
      "[tasks.t]\ncommand = \"true\"\n",
      "p.toml");
  std::vector<std::string> errors;
  for (const auto& d : r.diagnostics) errors.push_back(d.ToString());
  CHECK(errors ==
        std::vector<std::string>{
            "p.toml:3:23: pipeline.trigger_on_success: pipeline 'p' cannot start itself: its "
            "runs would trigger each other forever",
            "p.toml:3:28: pipeline.trigger_on_success: invalid pipeline name 'Bad Name'; use "
            "1-64 characters from a-z, 0-9, '_', '.', '-', starting with a letter or digit "
            "(^[a-z0-9][a-z0-9_.-]{0,63}$)",
            "p.toml:3:45: pipeline.trigger_on_success: 'q' is listed twice; list each pipeline "
            "once",
        });
}
