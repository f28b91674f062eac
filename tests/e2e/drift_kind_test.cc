// kind = "drift" through `kiln run`: the current data against a reference, per numeric column.
#include <signal.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon.h"
#include "harness.h"
#include "run_json.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

// 40 rows: age 20..59 (or shifted by `shift`), income constant-ish, a text column.
std::string Data(int shift) {
  std::string csv = "age,income,city\n";
  for (int i = 0; i < 40; ++i) {
    csv += std::to_string(20 + i + shift) + "," + std::to_string(1000 + (i % 4)) + ",c" +
           std::to_string(i % 3) + "\n";
  }
  return csv;
}

Ran RunWith(const TempDir& dir, const std::string& input, const std::string& extra = "") {
  WriteFile(dir / "data/reference.csv", Data(0));
  WriteFile(dir / "data/same.csv", Data(0));
  WriteFile(dir / "data/older.csv", Data(40));
  WriteFile(dir / "p.toml", R"([pipeline]
name = "monitor"
[params]
input = "data/same.csv"
[tasks.drift]
kind = "drift"
reference = "data/reference.csv"
current = "{{ params.input }}"
method = "ks"
threshold = 0.5
)" + extra + R"(
[tasks.report]
needs = ["drift"]
command = "echo reported"
)");
  return RunJson(dir, {"--data-dir", (dir / "data-dir").string(), "-p", "input=" + input});
}

std::string LogOf(const TempDir& dir, const json& run) {
  return ReadFile(dir / ("data-dir/logs/monitor/" + run["id"].dump() + "/drift.1.log"));
}

}  // namespace

TEST_CASE("data like its reference does not drift") {
  TempDir dir;
  auto ran = RunWith(dir, "data/same.csv");
  INFO(ran.output.err);
  CHECK(ran.output.code == 0);
  CHECK(TaskStates(ran.run) == "drift:success report:success");
  CHECK(LogOf(dir, ran.run) ==
        "kiln drift: data/same.csv against data/reference.csv, ks above 0.5000: no column drifted\n"
        "  age: ks 0.0000 (40 reference values, 40 current)\n"
        "  income: ks 0.0000 (40 reference values, 40 current)\n");
}

TEST_CASE("data that moved away from its reference drifts and fails the task") {
  TempDir dir;
  auto ran = RunWith(dir, "data/older.csv");
  INFO(ran.output.err);
  CHECK(ran.output.code == 1);
  CHECK(TaskStates(ran.run) == "drift:failed report:upstream_failed");
  CHECK(LogOf(dir, ran.run) ==
        "kiln drift: data/older.csv against data/reference.csv, ks above 0.5000: 1 of 2 columns "
        "drifted\n"
        "  age: ks 1.0000 drifted (40 reference values, 40 current)\n"
        "  income: ks 0.0000 (40 reference values, 40 current)\n");
  const json report = json::parse(ReadFile(
      dir / ("data-dir/runs/monitor/" + ran.run["id"].dump() + "/.kiln/drift/drift.json")));
  CHECK(report["columns"][0]["column"] == "age");
  CHECK(report["columns"][0]["drifted"] == true);
  CHECK(report["columns"][0]["statistic"] == 1.0);
}

TEST_CASE("with on_drift warn a drift is reported and the task succeeds") {
  TempDir dir;
  auto ran = RunWith(dir, "data/older.csv", "on_drift = \"warn\"\ncolumns = [\"age\"]");
  INFO(ran.output.err);
  CHECK(ran.output.code == 0);
  CHECK(TaskStates(ran.run) == "drift:success report:success");
  CHECK(LogOf(dir, ran.run) ==
        "kiln drift: data/older.csv against data/reference.csv, ks above 0.5000: 1 of 1 column "
        "drifted\n"
        "  age: ks 1.0000 drifted (40 reference values, 40 current)\n");
}

TEST_CASE("a drift task naming a column the data lacks fails saying which") {
  TempDir dir;
  auto ran = RunWith(dir, "data/same.csv", "columns = [\"age\", \"height\"]");
  CHECK(ran.output.code == 1);
  CHECK(TaskStates(ran.run) == "drift:failed report:upstream_failed");
  CHECK(LogOf(dir, ran.run) ==
        "kiln drift: data/reference.csv: no column 'height' (found: age, income, city)\n");
}

TEST_CASE("kiln validate reports a drift task's keys at their line and column") {
  TempDir dir;
  WriteFile(dir / "p.toml", R"([pipeline]
name = "monitor"
[tasks.drift]
kind = "drift"
current = "x.csv"
method = "chi2"
threshold = 0
on_drift = "trigger"
columns = "age"
)");
  auto out = Kiln({"validate", (dir / "p.toml").string()});
  CHECK(out.code == 1);
  const std::string p = (dir / "p.toml").string();
  CHECK(out.err ==
        p + ":3:8: tasks.drift: no reference; set reference to a CSV or JSON lines file\n" + p +
            ":6:10: tasks.drift.method: unknown method 'chi2' (accepted: ks, psi)\n" + p +
            ":7:13: tasks.drift.threshold: must be above 0\n" + p +
            ":8:12: tasks.drift.on_drift: on_drift = \"trigger\" needs trigger: the name of the "
            "pipeline to run\n" +
            p + ":9:11: tasks.drift.columns: expected an array of column names, got a string\n" +
            "5 errors in 1 file\n");
}

namespace {

// A monitor that asks for a run of "retrain" when its data drifts, and "retrain" itself.
void WriteMonitor(const TempDir& dir, const std::string& cooldown) {
  WriteFile(dir / "pipelines/data/reference.csv", Data(0));
  WriteFile(dir / "pipelines/data/same.csv", Data(0));
  WriteFile(dir / "pipelines/data/older.csv", Data(40));
  WriteFile(dir / "pipelines/monitor.toml", R"([pipeline]
name = "monitor"
[params]
input = "data/same.csv"
[tasks.drift]
kind = "drift"
reference = "data/reference.csv"
current = "{{ params.input }}"
columns = ["age"]
method = "ks"
threshold = 0.5
on_drift = "trigger"
trigger = "retrain"
cooldown = ")" + cooldown + R"("
)");
  WriteFile(dir / "pipelines/retrain.toml", R"([pipeline]
name = "retrain"
[tasks.train]
command = "echo retrained"
)");
}

int64_t TriggerMonitor(httplib::Client& client, const std::string& input) {
  return Trigger(client, "monitor", R"({"params": {"input": ")" + input + R"("}})");
}

std::string DriftEvents(int64_t run) {
  return Sql("select coalesce(string_agg(kind, ' ' order by id), '') from events where run_id = " +
             std::to_string(run) + " and kind like 'drift%'");
}

}  // namespace

TEST_CASE("a drift triggers exactly one run of its pipeline within the cooldown") {
  TempDir dir;
  WriteMonitor(dir, "1h");
  Daemon daemon(dir, dir / "pipelines");
  httplib::Client client = daemon.Client(kOperatorToken);

  const int64_t calm = TriggerMonitor(client, "data/same.csv");
  REQUIRE(WaitForRunEnd(daemon, calm) == "success");
  CHECK(DriftEvents(calm) == "");

  const int64_t moved = TriggerMonitor(client, "data/older.csv");
  REQUIRE(WaitForRunEnd(daemon, moved) == "success");
  WaitFor([&] { return DriftEvents(moved) == "drift_triggered"; }, "the drift to trigger a run");
  const std::string retrain =
      Sql("select id from runs where triggered_by = " + std::to_string(moved));
  CHECK(
      Sql("select trigger || ' ' || triggered_by || ' ' || idempotency_key from runs where id = " +
          retrain) ==
      "drift " + std::to_string(moved) + " drift:" + std::to_string(moved) + ":drift");
  CHECK(Sql("select note from runs where id = " + retrain) ==
        "drift in task 'drift': age ks 1.0000 (run " + std::to_string(moved) + ")");
  auto show = Kiln({"show", retrain}, {},
                   {{"KILN_SERVER", "http://127.0.0.1:" + std::to_string(daemon.port())},
                    {"KILN_TOKEN", kViewerToken}});
  CHECK(show.out.find("\nstarted by the drift check of run " + std::to_string(moved) +
                      "\nnote: drift in task 'drift': age ks 1.0000 (run " + std::to_string(moved) +
                      ")\n") != std::string::npos);
  CHECK(Sql("select detail->>'run' from events where run_id = " + std::to_string(moved) +
            " and kind = 'drift_triggered'") == retrain);
  CHECK(WaitForRunEnd(daemon, std::stoll(retrain)) == "success");
  // The statistics are kept with the attempt.
  CHECK(Sql("select results->'report'->'drifted'::text from attempts where run_id = " +
            std::to_string(moved)) == "[\"age\"]");

  // Drifting again within the hour: no second run.
  const int64_t again = TriggerMonitor(client, "data/older.csv");
  REQUIRE(WaitForRunEnd(daemon, again) == "success");
  WaitFor([&] { return DriftEvents(again) == "drift_trigger_skipped"; },
          "the second drift to be skipped");
  CHECK(Sql("select detail->>'recent_run' from events where run_id = " + std::to_string(again) +
            " and kind = 'drift_trigger_skipped'") == retrain);
  CHECK(Sql("select count(*) from runs where pipeline = 'retrain' and trigger = 'drift' and id > " +
            retrain) == "0");
}

TEST_CASE("a drift asking for a pipeline that is not loaded records why") {
  TempDir dir;
  WriteMonitor(dir, "0s");
  fs::remove(dir / "pipelines/retrain.toml");
  Daemon daemon(dir, dir / "pipelines");
  httplib::Client client = daemon.Client(kOperatorToken);
  const int64_t moved = TriggerMonitor(client, "data/older.csv");
  REQUIRE(WaitForRunEnd(daemon, moved) == "success");
  WaitFor([&] { return DriftEvents(moved) == "drift_trigger_failed"; }, "the failure to be noted");
  CHECK(Sql("select detail->>'error' from events where run_id = " + std::to_string(moved) +
            " and kind = 'drift_trigger_failed'") == "no pipeline named 'retrain'");
}

TEST_CASE("a daemon killed before answering a drift answers it once at its next start") {
  TempDir dir;
  WriteMonitor(dir, "0s");
  int64_t moved = 0;
  {
    DaemonOptions o(dir / "pipelines");
    o.on_stop = "leave";
    o.env["KILN_CRASH_AT"] = "drift.ask";
    Daemon first(dir, o);
    auto client = first.Client(kOperatorToken);
    moved = TriggerMonitor(client, "data/older.csv");
    CHECK(first.Wait() == 128 + SIGKILL);
  }
  CHECK(Sql("select state from task_instances where task_id = 'drift' and run_id = " +
            std::to_string(moved)) == "success");
  const std::string asked =
      "select count(*) from runs where triggered_by = " + std::to_string(moved);
  CHECK(Sql(asked) == "0");
  DaemonOptions o(dir / "pipelines");
  o.on_stop = "leave";
  Daemon second(dir, o);
  WaitFor([&] { return DriftEvents(moved) == "drift_triggered"; }, "the ask to be answered");
  CHECK(Sql(asked) == "1");
  CHECK(WaitForRunEnd(second, moved) == "success");
}
