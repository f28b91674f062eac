#include "dag/validate.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using kiln::dag::PipelineSpec;
using kiln::dag::TaskSpec;
using kiln::dag::Validate;

namespace {

using Strings = std::vector<std::string>;

// Task `id` declared at line `line` of p.toml, with its needs one line below.
TaskSpec Task(const std::string& id, Strings needs = {}, int line = 0) {
  TaskSpec task;
  task.id = id;
  task.command = "true";
  task.needs = std::move(needs);
  task.loc = {line, 8};
  if (line > 0 && !task.needs.empty()) task.needs_loc = {line + 1, 9};
  return task;
}

PipelineSpec Spec(std::vector<TaskSpec> tasks) {
  PipelineSpec spec;
  spec.name = "churn-retrain";
  spec.file = "p.toml";
  spec.tasks = std::move(tasks);
  return spec;
}

Strings Messages(const PipelineSpec& spec) {
  Strings out;
  for (const auto& d : Validate(spec)) out.push_back(d.ToString());
  return out;
}

}  // namespace

TEST_CASE("a valid pipeline has no diagnostics") {
  PipelineSpec spec =
      Spec({Task("prepare"), Task("train", {"prepare"}), Task("evaluate", {"train", "prepare"})});
  spec.params.push_back({"min_auc", 0.85, {}});
  spec.tasks[1].command = "python3 train.py --min {{ params.min_auc }} --out {{ run.dir }}";
  spec.tasks[2].command.reset();
  spec.tasks[2].argv = Strings{"python3", "{{ run.dir }}/x", "{{ task.attempt }}"};
  spec.tasks[2].env = {{"RUN", "{{ run.id }}"}};
  CHECK(Messages(spec).empty());
}

TEST_CASE("names must match the patterns of the format") {
  PipelineSpec spec = Spec({Task("Train", {}, 5), Task("ok_id-2", {}, 7)});
  spec.name = "Churn Retrain";
  spec.locs["pipeline.name"] = {2, 8};
  spec.params.push_back({"Min-AUC", 0.85, {3, 1}});
  spec.params.push_back({"_ok9", int64_t{1}, {4, 1}});
  CHECK(Messages(spec) ==
        Strings{
            "p.toml:2:8: pipeline.name: invalid pipeline name 'Churn Retrain'; use 1-64 "
            "characters from a-z, 0-9, '_', '.', '-', starting with a letter or digit "
            "(^[a-z0-9][a-z0-9_.-]{0,63}$)",
            "p.toml:3:1: params.Min-AUC: invalid param name 'Min-AUC'; use 1-64 characters from "
            "a-z, 0-9, '_', starting with a letter or '_' (^[a-z_][a-z0-9_]{0,63}$)",
            "p.toml:5:8: tasks.Train: invalid task id 'Train'; use 1-64 characters from a-z, "
            "0-9, '_', '-', starting with a letter or digit (^[a-z0-9][a-z0-9_-]{0,63}$)",
        });
}

TEST_CASE("name length limits") {
  PipelineSpec spec = Spec({Task(std::string(64, 'a')), Task(std::string(65, 'b'))});
  spec.name = std::string(64, 'p');
  CHECK(Messages(spec).size() == 1);
  spec.name = std::string(65, 'p');
  CHECK(Messages(spec).size() == 2);
  spec.name.clear();
  CHECK(Messages(spec).back() ==
        "p.toml:1:1: pipeline.name: missing; add name = \"...\" to [pipeline]; use 1-64 characters "
        "from a-z, 0-9, '_', '.', '-', starting with a letter or digit "
        "(^[a-z0-9][a-z0-9_.-]{0,63}$)");
}

TEST_CASE("needs naming unknown tasks, the task itself, or a task twice") {
  PipelineSpec spec = Spec({Task("prepare", {}, 1), Task("train", {"prepar", "train"}, 3),
                            Task("evaluate", {"train", "train"}, 6)});
  spec.locs["tasks.train.needs[0]"] = {4, 10};
  spec.locs["tasks.train.needs[1]"] = {4, 20};
  CHECK(Messages(spec) ==
        Strings{
            "p.toml:4:10: tasks.train.needs: unknown task 'prepar' (defined tasks: prepare, "
            "train, evaluate)",
            "p.toml:4:20: tasks.train.needs: task 'train' needs itself; remove it from needs",
            "p.toml:7:9: tasks.evaluate.needs: 'train' is listed twice; list each upstream task "
            "once",
        });
}

TEST_CASE("a cycle is named whole, from its first task in the file") {
  SECTION("two tasks") {
    PipelineSpec spec = Spec({Task("prepare", {}, 1), Task("train", {"prepare", "evaluate"}, 30),
                              Task("evaluate", {"train"}, 40)});
    CHECK(Messages(spec) ==
          Strings{"p.toml:31:9: tasks.train.needs: dependency cycle train -> evaluate -> train"});
  }
  SECTION("three tasks, found from the middle") {
    // c needs b, b needs a, a needs c; the search starts at "c", the first task in the file.
    PipelineSpec spec = Spec({Task("c", {"b"}, 10), Task("a", {"c"}, 20), Task("b", {"a"}, 30)});
    CHECK(Messages(spec) ==
          Strings{"p.toml:11:9: tasks.c.needs: dependency cycle c -> b -> a -> c"});
  }
  SECTION("first in the file is not where the search entered the cycle") {
    // x (in no cycle) needs b: the search enters the cycle at b, but a is first in the file.
    PipelineSpec reordered =
        Spec({Task("x", {"b"}, 5), Task("a", {"b"}, 10), Task("b", {"a"}, 30)});
    CHECK(Messages(reordered) ==
          Strings{"p.toml:11:9: tasks.a.needs: dependency cycle a -> b -> a"});
  }
}

TEST_CASE("each cycle is reported once, separate cycles each") {
  PipelineSpec spec = Spec({Task("a", {"b"}, 1), Task("b", {"a"}, 3), Task("c", {"a", "d"}, 5),
                            Task("d", {"c"}, 7), Task("e", {"a", "c"}, 9)});
  CHECK(Messages(spec) == Strings{"p.toml:2:9: tasks.a.needs: dependency cycle a -> b -> a",
                                  "p.toml:6:9: tasks.c.needs: dependency cycle c -> d -> c"});
}

TEST_CASE("a long chain is checked without deep recursion") {
  std::vector<TaskSpec> tasks;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    tasks.push_back(
        Task("t" + std::to_string(i), i == 0 ? Strings{} : Strings{"t" + std::to_string(i - 1)}));
  }
  PipelineSpec spec = Spec(std::move(tasks));
  CHECK(Messages(spec).empty());
  spec.tasks[0].needs = {"t" + std::to_string(n - 1)};
  REQUIRE(Messages(spec).size() == 1);
  CHECK(Messages(spec)[0].starts_with(
      "p.toml: tasks.t0.needs: dependency cycle t0 -> t19999 -> t19998 -> "));
  CHECK(Messages(spec)[0].ends_with("t2 -> t1 -> t0"));
}

TEST_CASE("kind shell needs exactly one of command and argv") {
  PipelineSpec spec = Spec({Task("both", {}, 1), Task("neither", {}, 2), Task("empty", {}, 3),
                            Task("blank", {}, 4), Task("plugin", {}, 5)});
  spec.tasks[0].argv = Strings{"true"};
  spec.tasks[1].command.reset();
  spec.tasks[2].command.reset();
  spec.tasks[2].argv = Strings{};
  spec.tasks[3].command = "  ";
  spec.tasks[4].kind = "docker";
  CHECK(Messages(spec) ==
        Strings{
            "p.toml:1:8: tasks.both: both command and argv are set; set exactly one",
            "p.toml:2:8: tasks.neither: no command; set command (run with /bin/sh -c) or argv "
            "(run directly)",
            "p.toml:3:8: tasks.empty.argv: empty argv; expected at least the program to run",
            "p.toml:4:8: tasks.blank.command: empty command; expected a shell command line",
            "p.toml:5:8: tasks.plugin.kind: unknown task kind 'docker' (known: shell)",
        });
}

TEST_CASE("numbers and choices out of range") {
  PipelineSpec spec = Spec({Task("t", {}, 10)});
  spec.catchup = "sometimes";
  spec.overlap = "wait";
  spec.max_active_runs = 0;
  spec.locs = {{"pipeline.catchup", {2, 11}},           {"pipeline.overlap", {3, 11}},
               {"pipeline.max_active_runs", {4, 19}},   {"tasks.t.slots", {11, 9}},
               {"tasks.t.retries", {12, 11}},           {"tasks.t.retry_backoff", {13, 17}},
               {"tasks.t.skip_exit_codes[1]", {14, 23}}};
  spec.tasks[0].slots = 0;
  spec.tasks[0].retry.retries = -1;
  spec.tasks[0].retry.retry_backoff = 0.5;
  spec.tasks[0].skip_exit_codes = {99, 256};
  CHECK(Messages(spec) ==
        Strings{
            "p.toml:2:11: pipeline.catchup: unknown catchup 'sometimes' (accepted: none, latest, "
            "all)",
            "p.toml:3:11: pipeline.overlap: unknown overlap 'wait' (accepted: skip, queue, "
            "cancel_running)",
            "p.toml:4:19: pipeline.max_active_runs: must be at least 1, got 0",
            "p.toml:11:9: tasks.t.slots: must be at least 1, got 0",
            "p.toml:12:11: tasks.t.retries: must be 0 or more, got -1",
            "p.toml:13:17: tasks.t.retry_backoff: must be at least 1.0, got 0.5",
            "p.toml:14:23: tasks.t.skip_exit_codes: exit code 256 is out of range; exit codes "
            "are 0-255",
        });
}

TEST_CASE("every template name must be known") {
  PipelineSpec spec = Spec({Task("train", {}, 10), Task("check", {}, 20)});
  spec.params.push_back({"epochs", int64_t{10}, {}});
  spec.tasks[0].command = "python3 train.py --epochs {{ params.epoch }}";
  spec.tasks[1].command.reset();
  spec.tasks[1].argv = Strings{"check.py", "{{ run.dri }}/x.csv"};
  spec.tasks[1].env = {{"MODEL", "{{ params.model }}"}};
  spec.locs = {{"tasks.train.command", {11, 11}},
               {"tasks.check.argv", {21, 8}},
               {"tasks.check.argv[1]", {21, 21}},
               {"tasks.check.env.MODEL", {22, 15}}};
  const std::string known =
      "(known: params.epochs, pipeline.name, run.data_interval_end, run.data_interval_start, "
      "run.dir, run.id, run.logical_date, run.triggered_by, task.attempt, task.id)";
  CHECK(Messages(spec) ==
        Strings{
            "p.toml:11:11: tasks.train.command: unknown template name 'params.epoch' " + known,
            "p.toml:21:21: tasks.check.argv: unknown template name 'run.dri' " + known,
            "p.toml:22:15: tasks.check.env.MODEL: unknown template name 'params.model' " + known,
        });
}

TEST_CASE("a command reference that cannot be quoted safely is a validation error") {
  PipelineSpec spec = Spec({Task("t", {}, 1)});
  spec.tasks[0].command = "echo $(cat {{ run.dir }}/x)";
  spec.locs["tasks.t.command"] = {2, 11};
  CHECK(Messages(spec) ==
        Strings{"p.toml:2:11: tasks.t.command: cannot quote {{ run.dir }} at position 12 inside "
                "a command substitution $(...); use it as a plain word, or in '...' or \"...\", "
                "e.g. assign v={{ run.dir }} first and use \"$v\" there"});
}

TEST_CASE("a bad value from [defaults] is reported once, where [defaults] sets it") {
  PipelineSpec spec = Spec({Task("a", {}, 10), Task("b", {}, 20), Task("c", {}, 30)});
  for (TaskSpec& t : spec.tasks) {
    t.retry.retries = -2;
    t.env = {{"OUT", "{{ run.dri }}"}};
  }
  spec.tasks[2].retry.retries = 1;
  spec.locs = {{"defaults.retries", {3, 11}},
               {"defaults.env", {4, 7}},
               {"defaults.env.OUT", {4, 15}},
               {"tasks.c.retries", {31, 11}}};
  const Strings messages = Messages(spec);
  REQUIRE(messages.size() == 2);
  CHECK(messages[0] == "p.toml:3:11: defaults.retries: must be 0 or more, got -2");
  CHECK(messages[1].starts_with("p.toml:4:15: defaults.env.OUT: unknown template name 'run.dri'"));
}

TEST_CASE("environment variable names and duplicates") {
  PipelineSpec spec = Spec({Task("t", {}, 1)});
  spec.tasks[0].env = {{"1X", "a"}, {"A=B", "b"}, {"OK_1", "c"}, {"OK_1", "d"}};
  CHECK(Messages(spec) ==
        Strings{
            "p.toml:1:8: tasks.t.env.1X: invalid environment variable name '1X'; use letters, "
            "digits and '_', not starting with a digit",
            "p.toml:1:8: tasks.t.env.A=B: invalid environment variable name 'A=B'; use letters, "
            "digits and '_', not starting with a digit",
            "p.toml:1:8: tasks.t.env.OK_1: environment variable 'OK_1' is set twice",
        });
}

TEST_CASE("duplicate task ids and params, and a pipeline without tasks") {
  PipelineSpec spec = Spec({Task("t", {}, 1), Task("t", {}, 5)});
  spec.params = {{"x", int64_t{1}, {2, 1}}, {"x", int64_t{2}, {3, 1}}};
  CHECK(Messages(spec) == Strings{"p.toml:3:1: params.x: param 'x' is declared twice",
                                  "p.toml:5:8: tasks.t: task 't' is defined twice"});
  CHECK(Messages(Spec({})) ==
        Strings{"p.toml:1:1: tasks: no tasks; define at least one [tasks.<id>] table"});
}
