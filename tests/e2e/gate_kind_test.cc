// kind = "gate" through `kiln run`: conditions on a metrics file, against thresholds and the
// champion (none yet: no model was ever promoted).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "harness.h"
#include "run_json.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

// evaluate writes {"accuracy": <param>, "latency_ms": 40}; the gate decides; deploy follows it.
Ran RunGate(const TempDir& dir, const std::string& accuracy, const std::string& extra = "") {
  WriteFile(dir / "p.toml", R"([pipeline]
name = "churn"
[params]
accuracy = "0.95"
[tasks.evaluate]
command = '''printf '{"accuracy": %s, "latency_ms": 40}' "$KILN_PARAM_ACCURACY" > "$KILN_RUN_DIR/metrics.json"'''
[tasks.gate]
kind = "gate"
needs = ["evaluate"]
metrics = "{{ run.dir }}/metrics.json"
model = "churn"
require = ["accuracy >= 0.9", "accuracy >= champion.accuracy - 0.005", "latency_ms <= 50"]
)" + extra + R"(
[tasks.deploy]
needs = ["gate"]
command = "echo deployed"
)");
  return RunJson(dir, {"--data-dir", (dir / "data").string(), "-p", "accuracy=" + accuracy});
}

std::string GateLog(const TempDir& dir, const json& run) {
  return ReadFile(dir / ("data/logs/churn/" + run["id"].dump() + "/gate.1.log"));
}

}  // namespace

TEST_CASE("a gate whose conditions hold lets what follows it run") {
  TempDir dir;
  auto ran = RunGate(dir, "0.95");
  INFO(ran.output.err);
  CHECK(ran.output.code == 0);
  CHECK(TaskStates(ran.run) == "evaluate:success gate:success deploy:success");
  CHECK(GateLog(dir, ran.run) ==
        "kiln gate: model churn, no champion yet: 3 of 3 conditions hold; passed\n"
        "  accuracy >= 0.9: 0.95 >= 0.9 holds\n"
        "  accuracy >= champion.accuracy - 0.005: 0.95 >= (no champion yet) holds\n"
        "  latency_ms <= 50: 40 <= 50 holds\n");
  const json report = json::parse(
      ReadFile(dir / ("data/runs/churn/" + ran.run["id"].dump() + "/.kiln/gate/gate.json")));
  CHECK(report["decision"] == "pass");
  CHECK(report["metrics"] == json::parse(R"({"accuracy": 0.95, "latency_ms": 40})"));
  CHECK(report["champion"].is_null());
  CHECK(report["conditions"][0] ==
        json::parse(
            R"({"condition": "accuracy >= 0.9", "value": 0.95, "against": 0.9, "holds": true})"));
}

TEST_CASE("a gate that does not pass is skipped, and so is what follows it") {
  TempDir dir;
  auto ran = RunGate(dir, "0.85");
  INFO(ran.output.err);
  CHECK(ran.output.code == 0);
  CHECK(TaskStates(ran.run) == "evaluate:success gate:skipped deploy:skipped");
  CHECK(GateLog(dir, ran.run) ==
        "kiln gate: model churn, no champion yet: 2 of 3 conditions hold; not passed: the task "
        "is skipped\n"
        "  accuracy >= 0.9: 0.85 >= 0.9 fails\n"
        "  accuracy >= champion.accuracy - 0.005: 0.85 >= (no champion yet) holds\n"
        "  latency_ms <= 50: 40 <= 50 holds\n");
  // Its decision is kept with the attempt like a pass's: the report and the metrics it read.
  CHECK(Sql("select results->'report'->>'decision' || ' ' || (results->'metrics')::text from "
            "attempts where task_id = 'gate' and run_id = " +
            ran.run["id"].dump()) == "fail {\"accuracy\": 0.85, \"latency_ms\": 40}");
}

TEST_CASE("a gate fails on metrics that are not numbers, naming the file and key") {
  TempDir dir;
  auto ran = RunGate(dir, "\"high\"");
  CHECK(ran.output.code == 1);
  // The evaluate task declares no metrics: the gate is the one that reads them.
  CHECK(TaskStates(ran.run) == "evaluate:success gate:failed deploy:upstream_failed");
  const std::string file =
      (dir / ("data/runs/churn/" + ran.run["id"].dump() + "/metrics.json")).string();
  CHECK(GateLog(dir, ran.run) ==
        "kiln gate: metrics file '" + file +
            "' key 'accuracy' is a string; expected a number (a flat JSON object of numbers)\n");
}

TEST_CASE("kiln validate reports a gate's keys at their line and column") {
  TempDir dir;
  WriteFile(dir / "p.toml", R"([pipeline]
name = "churn"
[tasks.gate]
kind = "gate"
model = "Churn Model"
require = ["accuracy >= 0.9", "accuracy => champion.accuracy"]
promote = "yes"
)");
  auto out = Kiln({"validate", "p.toml"}, dir.path());
  CHECK(out.code == 1);
  CHECK(out.err ==
        "p.toml:3:8: tasks.gate: no metrics; set metrics to the JSON file of numbers the gate "
        "decides on\n"
        "p.toml:5:9: tasks.gate.model: invalid model name 'Churn Model'; use 1-64 characters "
        "from a-z, 0-9, '_', '.', '-', starting with a letter or digit\n"
        "p.toml:6:31: tasks.gate.require[1]: invalid condition 'accuracy => "
        "champion.accuracy': no comparison after 'accuracy'; expected NAME OP VALUE with OP one "
        "of >=, >, <=, <, ==, != and VALUE a number or champion.NAME, optionally + or - a "
        "number, e.g. \"accuracy >= champion.accuracy - 0.005\"\n"
        "p.toml:7:11: tasks.gate.promote: expected true or false, got a string\n"
        "4 errors in 1 file\n");
}
