#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <variant>

#include "common/sha256.h"
#include "config/pipeline_loader.h"
#include "dag/spec.h"

using namespace std::chrono_literals;
using kiln::config::ParsePipeline;
using kiln::dag::TaskSpec;

namespace {

// The complete example of the pipeline format v1, verbatim.
constexpr std::string_view kExample = R"toml([pipeline]
name = "churn-retrain"                 # required; ^[a-z0-9][a-z0-9_.-]{0,63}$; unique per daemon
description = "Nightly retraining of the churn classifier"
schedule = "0 3 * * *"                 # optional; see Schedules
timezone = "Europe/Berlin"             # optional IANA zone; default "UTC"
catchup = "none"                       # none | latest | all  (missed fires after downtime; default none)
max_active_runs = 1                    # default 1
overlap = "skip"                       # skip | queue | cancel_running   (default skip)
tags = ["ml", "churn"]
paused = false                         # a paused pipeline is not fired by its schedule

[params]                               # defaults; a trigger may override any of them, and only them
dataset = "data/churn.csv"
min_auc = 0.85
epochs = 10

[defaults]                             # applied to every task unless the task sets the key itself
retries = 2                            # extra attempts after the first; default 0
retry_delay = "10s"                    # default "10s"
retry_backoff = 2.0                    # delay before attempt n+1 = retry_delay * retry_backoff^(n-1); default 2.0
max_retry_delay = "10m"                # cap; default "1h"
timeout = "1h"                         # per attempt; default none (0 = none)
pool = "default"                       # concurrency pool (pools and their sizes live in the daemon config)
env = { PYTHONUNBUFFERED = "1" }

[tasks.prepare]
command = "python3 prepare.py --in {{ params.dataset }} --out {{ run.dir }}/train.csv"

[tasks.check_data]
needs = ["prepare"]
argv = ["python3", "check.py", "{{ run.dir }}/train.csv"]    # argv form: no shell at all

[tasks.train]
needs = ["check_data"]
command = "python3 train.py --epochs {{ params.epochs }}"
pool = "gpu"
slots = 1                              # slots of the pool this task holds while it runs; default 1
timeout = "2h"
retries = 1

[tasks.evaluate]
needs = ["train"]
command = "python3 evaluate.py --min-auc {{ params.min_auc }}"
skip_exit_codes = [99]                 # exit 99 = "nothing to promote": the task ends skipped, not failed

[tasks.promote]
needs = ["evaluate"]
command = "python3 promote.py"

[tasks.alert]
needs = ["train", "evaluate"]
trigger_rule = "one_failed"
command = "echo 'churn retraining failed' >&2"
allow_failure = true                   # this task's own failure does not fail the run
)toml";

const TaskSpec& Find(const kiln::dag::PipelineSpec& spec, const std::string& id) {
  auto it = std::find_if(spec.tasks.begin(), spec.tasks.end(),
                         [&id](const TaskSpec& t) { return t.id == id; });
  REQUIRE(it != spec.tasks.end());
  return *it;
}

}  // namespace

TEST_CASE("the example of the format parses with the documented values") {
  auto result = ParsePipeline(kExample, "churn.toml");
  for (const auto& d : result.diagnostics) INFO(d.ToString());
  REQUIRE(result.diagnostics.empty());
  REQUIRE(result.pipeline);
  const kiln::dag::PipelineSpec& spec = result.pipeline->spec;
  CHECK(spec.name == "churn-retrain");
  CHECK(spec.description == "Nightly retraining of the churn classifier");
  CHECK(spec.schedule == "0 3 * * *");
  CHECK(spec.timezone == "Europe/Berlin");
  CHECK(spec.catchup == "none");
  CHECK(spec.max_active_runs == 1);
  CHECK(spec.overlap == "skip");
  CHECK(spec.tags == std::vector<std::string>{"ml", "churn"});
  CHECK_FALSE(spec.paused);
  CHECK(spec.file.is_absolute());
  CHECK(spec.file.filename() == "churn.toml");
  CHECK(spec.content_hash == kiln::Sha256Hex(kExample));

  REQUIRE(spec.params.size() == 3);
  CHECK(spec.params[0].name == "dataset");
  CHECK(spec.params[0].default_value == kiln::dag::ParamValue(std::string("data/churn.csv")));
  CHECK(spec.params[1].name == "min_auc");
  CHECK(spec.params[1].default_value == kiln::dag::ParamValue(0.85));
  CHECK(kiln::dag::ToText(spec.params[1].default_value) == "0.85");
  CHECK(spec.params[2].name == "epochs");
  CHECK(spec.params[2].default_value == kiln::dag::ParamValue(int64_t{10}));
  CHECK(spec.params[2].loc.line == 15);
  CHECK(spec.params[2].loc.column == 1);

  std::vector<std::string> ids;
  for (const TaskSpec& t : spec.tasks) ids.push_back(t.id);
  CHECK(ids ==
        std::vector<std::string>{"prepare", "check_data", "train", "evaluate", "promote", "alert"});
}

TEST_CASE("the example's tasks take [defaults] unless they set the key") {
  auto result = ParsePipeline(kExample, "churn.toml");
  REQUIRE(result.pipeline);
  const kiln::dag::PipelineSpec& spec = result.pipeline->spec;
  for (const TaskSpec& t : spec.tasks) {
    INFO(t.id);
    CHECK(t.kind == "shell");
    CHECK(t.retry.retry_delay == 10s);
    CHECK(t.retry.retry_backoff == 2.0);
    CHECK(t.retry.max_retry_delay == 10min);
    REQUIRE(t.env.size() == 1);
    CHECK(t.env[0].name == "PYTHONUNBUFFERED");
    CHECK(t.env[0].value == "1");
    CHECK(t.slots == 1);
    CHECK(t.workdir.empty());
    CHECK(t.priority == 0);
  }
  const TaskSpec& prepare = Find(spec, "prepare");
  CHECK(prepare.command ==
        "python3 prepare.py --in {{ params.dataset }} --out {{ run.dir }}/train.csv");
  CHECK_FALSE(prepare.argv.has_value());
  CHECK(prepare.needs.empty());
  CHECK(prepare.retry.retries == 2);
  CHECK(prepare.timeout == 1h);
  CHECK(prepare.pool == "default");
  CHECK(prepare.trigger_rule == kiln::dag::TriggerRule::kAllSuccess);
  CHECK(prepare.loc.line == 26);
  CHECK(prepare.loc.column == 8);

  const TaskSpec& check = Find(spec, "check_data");
  CHECK_FALSE(check.command.has_value());
  CHECK(check.argv == std::vector<std::string>{"python3", "check.py", "{{ run.dir }}/train.csv"});
  CHECK(check.needs == std::vector<std::string>{"prepare"});
  CHECK(check.needs_loc.line == 30);
  CHECK(check.needs_loc.column == 9);

  const TaskSpec& train = Find(spec, "train");
  CHECK(train.command == "python3 train.py --epochs {{ params.epochs }}");
  CHECK(train.needs == std::vector<std::string>{"check_data"});
  CHECK(train.pool == "gpu");
  CHECK(train.timeout == 2h);
  CHECK(train.retry.retries == 1);

  const TaskSpec& evaluate = Find(spec, "evaluate");
  CHECK(evaluate.command == "python3 evaluate.py --min-auc {{ params.min_auc }}");
  CHECK(evaluate.skip_exit_codes == std::vector<int>{99});
  CHECK_FALSE(evaluate.allow_failure);

  const TaskSpec& promote = Find(spec, "promote");
  CHECK(promote.command == "python3 promote.py");
  CHECK(promote.needs == std::vector<std::string>{"evaluate"});

  const TaskSpec& alert = Find(spec, "alert");
  CHECK(alert.needs == std::vector<std::string>{"train", "evaluate"});
  CHECK(alert.trigger_rule == kiln::dag::TriggerRule::kOneFailed);
  CHECK(alert.command == "echo 'churn retraining failed' >&2");
  CHECK(alert.allow_failure);
  CHECK(alert.retry.retries == 2);
}

TEST_CASE("the example's graph") {
  auto result = ParsePipeline(kExample, "churn.toml");
  REQUIRE(result.pipeline);
  const kiln::dag::Dag& dag = result.pipeline->dag;
  CHECK(dag.size() == 6);
  REQUIRE(dag.roots().size() == 1);
  CHECK(result.pipeline->task(dag.roots()[0]).id == "prepare");
  auto alert = dag.Find("alert");
  REQUIRE(alert);
  CHECK(dag.upstream(*alert).size() == 2);
}
