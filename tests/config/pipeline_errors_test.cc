#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "config/pipeline_loader.h"

using kiln::config::ParsePipeline;

namespace {

using Strings = std::vector<std::string>;

Strings PipelineErrors(std::string_view text, const std::string& file = "p.toml") {
  Strings out;
  auto result = ParsePipeline(text, file);
  for (const auto& d : result.diagnostics) out.push_back(d.ToString());
  CHECK(static_cast<bool>(result.pipeline) == out.empty());
  return out;
}

constexpr std::string_view kHeader = "[pipeline]\nname = \"p\"\n";  // lines 1-2

std::string WithHeader(std::string_view rest) { return std::string(kHeader) + std::string(rest); }

}  // namespace

TEST_CASE("a TOML syntax error is one diagnostic at toml++'s position") {
  CHECK(PipelineErrors("[pipeline]\nname = \"p\n") ==
        Strings{"p.toml:2:10: invalid TOML: error while parsing string: unescaped control "
                "characters other than TAB (U+0009) are explicitly prohibited"});
  CHECK(PipelineErrors("[tasks.a\ncommand = \"x\"\n") ==
        Strings{"p.toml:1:9: invalid TOML: error while parsing table header: expected ']', "
                "saw '\\n'"});
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\ncommand = \"y\"\n")).size() == 1);
}

TEST_CASE("a key or a table given twice is named as a field") {
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\nretries = 1\nretries = 2\n")) ==
        Strings{"p.toml:6:11: tasks.a.retries: 'retries' is set twice; set each key once"});
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\n[tasks.a]\ncommand = \"y\"\n")) ==
        Strings{"p.toml:5:1: tasks.a: the table [tasks.a] is defined twice; put all its keys "
                "under one [tasks.a]"});
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\nenv.A = \"1\"\nenv.A = \"2\"\n")) ==
        Strings{"p.toml:6:9: tasks.a.env.A: 'env.A' is set twice; set each key once"});
  CHECK(
      PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\nenv = { A = \"1\", A = \"2\" }\n")) ==
      Strings{"p.toml:5:22: tasks.a: 'A' is set twice in an inline table; set each key once"});
  CHECK(PipelineErrors("name = 1\nname = 2\n") ==
        Strings{"p.toml:2:8: name: 'name' is set twice; set each key once"});
}

TEST_CASE("a for_each that is refused is one error, not also its uses") {
  CHECK(PipelineErrors(WithHeader("[tasks.a]\nfor_each = 5\ncommand = \"echo {{ item }}\"\n"
                                  "max_parallel = 2\n")) ==
        Strings{"p.toml:4:12: tasks.a.for_each: expected a JSON array file's path or an array of "
                "items, got an integer"});
}

TEST_CASE("a NUL character in any string or key is refused where it is") {
  CHECK(PipelineErrors(WithHeader("[params]\np = \"a\\u0000b\"\n[tasks.a]\ncommand = \"echo "
                                  "a\\u0000b\"\nenv = { X = [\"\\u0000\"] }\n")) ==
        Strings{"p.toml:4:5: params.p: holds a NUL character (\\u0000), which no command, "
                "argument, path or stored text can hold; remove it",
                "p.toml:6:11: tasks.a.command: holds a NUL character (\\u0000), which no command, "
                "argument, path or stored text can hold; remove it",
                "p.toml:7:13: tasks.a.env.X: expected a string, got an array",
                "p.toml:7:14: tasks.a.env.X[0]: holds a NUL character (\\u0000), which no "
                "command, argument, path or stored text can hold; remove it"});
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\n\"b\\u0000\" = 1\n")) ==
        Strings{"p.toml:5:1: tasks.a.(a key): a key holds a NUL character (\\u0000), which no "
                "command, argument, path or stored text can hold; remove it"});
}

TEST_CASE("an empty schedule, a tag or a skip code listed twice, a templated workdir") {
  CHECK(PipelineErrors("[pipeline]\nname = \"p\"\nschedule = \"\"\ntags = [\"a\", \"b\", \"a\"]\n"
                       "[tasks.a]\ncommand = \"x\"\nskip_exit_codes = [3, 4, 3]\n"
                       "workdir = \"{{ run.dir }}\"\n") ==
        Strings{"p.toml:3:12: pipeline.schedule: empty; give a 5-field cron expression (\"0 3 * "
                "* *\"), a preset (@hourly, @daily, @weekly, @monthly, @yearly) or an interval "
                "(\"every 15m\"), or remove the key for a pipeline that is only triggered",
                "p.toml:4:19: pipeline.tags: tag 'a' is listed twice",
                "p.toml:7:26: tasks.a.skip_exit_codes: exit code 3 is listed twice",
                "p.toml:8:11: tasks.a.workdir: workdir is not a template; give a fixed folder "
                "(relative to the pipeline's folder), and cd into a folder that depends on the "
                "run inside the command (cd {{ run.dir }}/...)"});
}

TEST_CASE("unknown keys are named with the accepted ones and the closest") {
  CHECK(
      PipelineErrors(WithHeader("[tasks.train]\ncomand = \"python3 train.py\"\n")) ==
      Strings{"p.toml:3:8: tasks.train: no command; set command (run with /bin/sh -c) or argv (run "
              "directly)",
              "p.toml:4:1: tasks.train.comand: unknown key 'comand'; did you mean 'command'? "
              "(accepted: allow_failure, argv, cache, command, env, for_each, inputs, kind, "
              "max_parallel, max_retry_delay, metrics, needs, outputs, pool, priority, retries, "
              "retry_backoff, "
              "retry_delay, skip_exit_codes, slots, timeout, trigger_rule, workdir)"});
  CHECK(PipelineErrors("[pipeline]\nname = \"p\"\nowner = \"me\"\n[tasks.a]\ncommand = \"x\"\n") ==
        Strings{"p.toml:3:1: pipeline.owner: unknown key 'owner' (accepted: catchup, description, "
                "max_active_runs, name, overlap, paused, schedule, sla, tags, timezone, "
                "trigger_on_success)"});
  CHECK(PipelineErrors(WithHeader("[task.a]\ncommand = \"x\"\n")) ==
        Strings{"p.toml:1:1: tasks: no tasks; define at least one [tasks.<id>] table",
                "p.toml:3:2: task: unknown key 'task'; did you mean 'tasks'? (accepted: defaults, "
                "notify, params, pipeline, tasks)"});
}

TEST_CASE("wrong types say what was expected and what was found") {
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\nretries = \"3\"\n")) ==
        Strings{"p.toml:5:11: tasks.a.retries: expected an integer, got a string"});
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\nneeds = \"b\"\n")) ==
        Strings{"p.toml:5:9: tasks.a.needs: expected an array of strings, got a string"});
  CHECK(PipelineErrors(WithHeader("[tasks.a]\nargv = [\"echo\", 3]\nallow_failure = \"yes\"\n")) ==
        Strings{"p.toml:4:17: tasks.a.argv: expected a string, got an integer",
                "p.toml:5:17: tasks.a.allow_failure: expected a boolean, got a string"});
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\nretry_backoff = \"2\"\n")) ==
        Strings{"p.toml:5:17: tasks.a.retry_backoff: expected a number, got a string"});
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\ntimeout = 60\n")) ==
        Strings{"p.toml:5:11: tasks.a.timeout: expected a duration string such as \"90s\" or "
                "\"1h30m\", got an integer"});
  // A bare 0 is "none" without a unit, as "0" is.
  auto zero = kiln::config::ParsePipeline(WithHeader("[tasks.a]\ncommand = \"x\"\ntimeout = 0\n"),
                                          "p.toml");
  REQUIRE(zero.pipeline);
  CHECK(zero.pipeline->spec.tasks.at(0).timeout == kiln::Duration(0));
  CHECK(PipelineErrors(WithHeader("[params]\nwhen = 2024-01-01\n[tasks.a]\ncommand = \"x\"\n")) ==
        Strings{"p.toml:4:8: params.when: expected a string, integer, float or boolean, got a "
                "date"});
  CHECK(PipelineErrors("tasks = [1]\n[pipeline]\nname = \"p\"\n") ==
        Strings{"p.toml:1:9: tasks: expected a table, got an array"});
}

TEST_CASE("a value that is wrong is reported once, not again as missing") {
  CHECK(PipelineErrors("[pipeline]\nname = 5\n[tasks.a]\ncommand = \"x\"\n") ==
        Strings{"p.toml:2:8: pipeline.name: expected a string, got an integer"});
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = [\"x\"]\n")) ==
        Strings{"p.toml:4:11: tasks.a.command: expected a string, got an array"});
  CHECK(PipelineErrors(
            WithHeader("[params]\nx = [1]\n[tasks.a]\ncommand = \"echo {{ params.x }}\"\n")) ==
        Strings{"p.toml:4:5: params.x: expected a string, integer, float or boolean, got an "
                "array"});
  // A table that is not one: what it should have held is not missing too.
  CHECK(PipelineErrors("pipeline = \"x\"\n[tasks.a]\ncommand = \"x\"\n") ==
        Strings{"p.toml:1:12: pipeline: expected a table, got a string"});
}

TEST_CASE("integers out of the range of an int") {
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\npriority = 3000000000\n")) ==
        Strings{"p.toml:5:12: tasks.a.priority: integer 3000000000 is out of range (-2147483648 "
                "to 2147483647)"});
  CHECK(PipelineErrors(
            WithHeader("[tasks.a]\ncommand = \"x\"\nskip_exit_codes = [1, -9999999999]\n")) ==
        Strings{"p.toml:5:23: tasks.a.skip_exit_codes: integer -9999999999 is out of range "
                "(-2147483648 to 2147483647)"});
}

TEST_CASE("needs naming a missing task, the task itself, or a task twice") {
  CHECK(
      PipelineErrors(
          WithHeader("[tasks.prepare]\ncommand = \"x\"\n"
                     "[tasks.train]\nneeds = [\"prepare\", \"prepair\", \"train\", \"prepare\"]\n"
                     "command = \"y\"\n")) ==
      Strings{"p.toml:6:21: tasks.train.needs: unknown task 'prepair' (defined tasks: prepare, "
              "train)",
              "p.toml:6:32: tasks.train.needs: task 'train' needs itself; remove it from needs",
              "p.toml:6:41: tasks.train.needs: 'prepare' is listed twice; list each upstream task "
              "once"});
}

TEST_CASE("a three-task cycle is named whole at the needs of its first task") {
  CHECK(PipelineErrors(WithHeader("[tasks.train]\nneeds = [\"evaluate\"]\ncommand = \"x\"\n"
                                  "[tasks.evaluate]\nneeds = [\"promote\"]\ncommand = \"x\"\n"
                                  "[tasks.promote]\nneeds = [\"train\"]\ncommand = \"x\"\n")) ==
        Strings{"p.toml:4:9: tasks.train.needs: dependency cycle train -> evaluate -> promote -> "
                "train"});
}

TEST_CASE("bad durations and trigger rules") {
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\ntimeout = \"10 minutes\"\n")) ==
        Strings{"p.toml:5:11: tasks.a.timeout: invalid duration \"10 minutes\": unknown unit ' '; "
                "expected numbers with units ms, s, m, h, d, e.g. \"90s\", \"1h30m\", \"250ms\""});
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\ntrigger_rule = \"one_fail\"\n")) ==
        Strings{"p.toml:5:16: tasks.a.trigger_rule: unknown trigger rule 'one_fail'; did you mean "
                "'one_failed'? (accepted: all_success, all_failed, all_done, one_success, "
                "one_failed, none_failed, none_failed_min_one_success)"});
  CHECK(PipelineErrors(WithHeader("[tasks.a]\ncommand = \"x\"\ntrigger_rule = \"whenever\"\n")) ==
        Strings{"p.toml:5:16: tasks.a.trigger_rule: unknown trigger rule 'whenever' (accepted: "
                "all_success, all_failed, all_done, one_success, one_failed, none_failed, "
                "none_failed_min_one_success)"});
}

TEST_CASE("unknown template names, and catchup and overlap values") {
  CHECK(
      PipelineErrors(
          "[pipeline]\nname = \"p\"\ncatchup = \"some\"\noverlap = \"wait\"\n"
          "[params]\nepochs = 3\n[tasks.a]\ncommand = \"train --epochs {{ params.epoch }}\"\n") ==
      Strings{"p.toml:3:11: pipeline.catchup: unknown catchup 'some' (accepted: none, latest, all)",
              "p.toml:4:11: pipeline.overlap: unknown overlap 'wait' (accepted: skip, queue, "
              "cancel_running)",
              "p.toml:8:11: tasks.a.command: unknown template name 'params.epoch' (known: "
              "params.epochs, pipeline.name, run.data_interval_end, run.data_interval_start, "
              "run.dir, run.id, run.logical_date, run.triggered_by, task.attempt, task.id)"});
}

TEST_CASE("every error of a file is reported, in file order") {
  constexpr std::string_view kBroken = R"toml([pipeline]
name = "Churn"
max_active_runs = 0

[defaults]
retries = "two"
needs = ["x"]

[tasks.prepare]
command = "prepare.py"
timout = "1h"

[tasks.train]
needs = ["prepare", "check"]
command = "train.py"
slots = 0

[tasks.evaluate]
needs = ["evaluate"]
argv = ["evaluate.py"]
command = "evaluate.py"
trigger_rule = "sometimes"
)toml";
  CHECK(PipelineErrors(kBroken, "pipelines/churn.toml") ==
        Strings{
            "pipelines/churn.toml:2:8: pipeline.name: invalid pipeline name 'Churn'; use 1-64 "
            "characters from a-z, 0-9, '_', '.', '-', starting with a letter or digit "
            "(^[a-z0-9][a-z0-9_.-]{0,63}$)",
            "pipelines/churn.toml:3:19: pipeline.max_active_runs: must be at least 1, got 0",
            "pipelines/churn.toml:6:11: defaults.retries: expected an integer, got a string",
            "pipelines/churn.toml:7:1: defaults.needs: needs cannot have a default; set it on "
            "each task",
            "pipelines/churn.toml:11:1: tasks.prepare.timout: unknown key 'timout'; did you mean "
            "'timeout'? (accepted: allow_failure, argv, cache, command, env, for_each, inputs, "
            "kind, max_parallel, max_retry_delay, metrics, needs, outputs, pool, priority, "
            "retries, retry_backoff, "
            "retry_delay, skip_exit_codes, slots, timeout, trigger_rule, workdir)",
            "pipelines/churn.toml:14:21: tasks.train.needs: unknown task 'check' (defined tasks: "
            "prepare, train, evaluate)",
            "pipelines/churn.toml:16:9: tasks.train.slots: must be at least 1, got 0",
            "pipelines/churn.toml:18:8: tasks.evaluate: both command and argv are set; set "
            "exactly one",
            "pipelines/churn.toml:19:10: tasks.evaluate.needs: task 'evaluate' needs itself; "
            "remove it from needs",
            "pipelines/churn.toml:22:16: tasks.evaluate.trigger_rule: unknown trigger rule "
            "'sometimes' (accepted: all_success, all_failed, all_done, one_success, one_failed, "
            "none_failed, none_failed_min_one_success)",
        });
}

TEST_CASE("a bad schedule is an error at its value") {
  CHECK(PipelineErrors("[pipeline]\nname = \"churn\"\n\nschedule = \"61 3 * * *\"\n[tasks.a]\n"
                       "command = \"x\"\n",
                       "churn.toml") ==
        Strings{"churn.toml:4:12: pipeline.schedule: minute field '61' out of range 0-59"});
  CHECK(PipelineErrors(
            "[pipeline]\nname = \"p\"\nschedule = \"0 0 30 2 *\"\n[tasks.a]\ncommand = \"x\"\n") ==
        Strings{"p.toml:3:12: pipeline.schedule: never fires: day 30 never occurs in February"});
  CHECK(PipelineErrors(
            "[pipeline]\nname = \"p\"\nschedule = \"@daily\"\n[tasks.a]\ncommand = \"x\"\n")
            .empty());
}

TEST_CASE("a param in the script a shell runs from argv is refused, not in its arguments") {
  const std::string head = "[params]\nx = \"a\"\n[tasks.a]\nargv = ";
  const std::string why =
      ": a param or an item in the script a shell runs would be shell code, not a word; pass it "
      "as an argument after the script (\"$1\") or use command, where templates are "
      "shell-quoted";
  CHECK(PipelineErrors(WithHeader(head + "[\"sh\", \"-c\", \"echo {{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:21: tasks.a.argv" + why});
  CHECK(PipelineErrors(WithHeader(
            head + "[\"/usr/bin/bash\", \"-o\", \"pipefail\", \"-euc\", \"{{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:52: tasks.a.argv" + why});
  // As an argument after the script, or to a program that is not a shell: a word as it is.
  CHECK(
      PipelineErrors(
          WithHeader(head + "[\"sh\", \"-c\", \"echo \\\"$1\\\"\", \"sh\", \"{{ params.x }}\"]\n"))
          .empty());
  CHECK(PipelineErrors(WithHeader(head + "[\"python3\", \"-c\", \"{{ params.x }}\"]\n")).empty());
  // Options after -c, long options, -o NAME in a group, --: the script is still found.
  CHECK(
      PipelineErrors(WithHeader(
          head + "[\"bash\", \"--norc\", \"-euo\", \"pipefail\", \"-c\", \"{{ params.x }}\"]\n")) ==
      Strings{"p.toml:6:53: tasks.a.argv" + why});
  CHECK(
      PipelineErrors(WithHeader(head + "[\"sh\", \"-c\", \"-e\", \"--\", \"{{ params.x }}\"]\n")) ==
      Strings{"p.toml:6:33: tasks.a.argv" + why});
  // kiln's own values in the script stay allowed: they are the pipeline author's.
  CHECK(PipelineErrors(WithHeader(head + "[\"sh\", \"-c\", \"ls {{ run.dir }}\"]\n")).empty());
  // A script file, not -c: its words are arguments.
  CHECK(PipelineErrors(WithHeader(head + "[\"bash\", \"-e\", \"run.sh\", \"{{ params.x }}\"]\n"))
            .empty());
  // A shell started by another program, and the programs that hand their command to a shell.
  CHECK(PipelineErrors(WithHeader(head + "[\"env\", \"-i\", \"A=1\", \"sh\", \"-c\", "
                                         "\"{{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:41: tasks.a.argv" + why});
  CHECK(PipelineErrors(WithHeader(head + "[\"timeout\", \"5\", \"/bin/bash\", \"-ec\", "
                                         "\"make {{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:45: tasks.a.argv" + why});
  CHECK(
      PipelineErrors(WithHeader(head + "[\"flock\", \"/tmp/l\", \"-c\", \"{{ params.x }}\"]\n")) ==
      Strings{"p.toml:6:34: tasks.a.argv" + why});
  CHECK(PipelineErrors(WithHeader(head + "[\"su\", \"nobody\", \"--command={{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:25: tasks.a.argv" + why});
  // Through the options of the wrappers; a `-c` that is not theirs nor a shell's marks nothing.
  CHECK(PipelineErrors(
            WithHeader(head + "[\"script\", \"-qc\", \"{{ params.x }}\", \"/dev/null\"]\n")) ==
        Strings{"p.toml:6:26: tasks.a.argv" + why});
  CHECK(PipelineErrors(WithHeader(head + "[\"su\", \"-lc\", \"{{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:22: tasks.a.argv" + why});
  CHECK(PipelineErrors(WithHeader(
            head + "[\"sudo\", \"-u\", \"alice\", \"sh\", \"-c\", \"{{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:44: tasks.a.argv" + why});
  CHECK(
      PipelineErrors(WithHeader(
          head + "[\"runuser\", \"-u\", \"app\", \"--\", \"sh\", \"-c\", \"{{ params.x }}\"]\n")) ==
      Strings{"p.toml:6:51: tasks.a.argv" + why});
  CHECK(PipelineErrors(WithHeader(
            head +
            "[\"flock\", \"-w\", \"5\", \"/tmp/l\", \"bash\", \"-c\", \"{{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:53: tasks.a.argv" + why});
  CHECK(PipelineErrors(WithHeader(head + "[\"runuser\", \"-u\", \"app\", \"--\", \"grep\", \"-c\", "
                                         "\"{{ params.x }}\", \"f\"]\n"))
            .empty());
  CHECK(PipelineErrors(
            WithHeader(head +
                       "[\"flock\", \"/tmp/l\", \"head\", \"-c\", \"{{ params.x }}\", \"f\"]\n"))
            .empty());
  CHECK(PipelineErrors(
            WithHeader(
                head +
                "[\"python3\", \"tool.py\", \"--mode\", \"script\", \"-c\", \"{{ params.x }}\"]\n"))
            .empty());
  CHECK(PipelineErrors(
            WithHeader(head + "[\"timeout\", \"5\", \"python3\", \"-c\", \"{{ params.x }}\"]\n"))
            .empty());
  // A shell started by any program (its name, then -c), and a wrapper's grouped options.
  CHECK(PipelineErrors(WithHeader(
            head + "[\"docker\", \"exec\", \"c1\", \"sh\", \"-c\", \"{{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:45: tasks.a.argv" + why});
  CHECK(PipelineErrors(WithHeader(
            head +
            "[\"find\", \".\", \"-exec\", \"sh\", \"-c\", \"{{ params.x }}\", \"{}\", \";\"]\n")) ==
        Strings{"p.toml:6:43: tasks.a.argv" + why});
  CHECK(PipelineErrors(WithHeader(
            head + "[\"sudo\", \"-iu\", \"alice\", \"su\", \"-c\", \"{{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:45: tasks.a.argv" + why});
  CHECK(PipelineErrors(
            WithHeader(head + "[\"sudo\", \"FOO=1\", \"su\", \"-c\", \"{{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:38: tasks.a.argv" + why});
  CHECK(PipelineErrors(
            WithHeader(head + "[\"xargs\", \"-i\", \"sh\", \"-c\", \"{{ params.x }}\"]\n")) ==
        Strings{"p.toml:6:36: tasks.a.argv" + why});
  CHECK(PipelineErrors(
            WithHeader(head + "[\"xargs\", \"-I{}\", \"grep\", \"-c\", \"{{ params.x }}\"]\n"))
            .empty());
  // A shell's name as an argument, with no -c after it: a word as it is.
  CHECK(PipelineErrors(WithHeader(head + "[\"echo\", \"sh\", \"{{ params.x }}\"]\n")).empty());
  CHECK(PipelineErrors(WithHeader(head + "[\"timeout\", \"5\", \"sh\", \"run.sh\", "
                                         "\"{{ params.x }}\"]\n"))
            .empty());
}
