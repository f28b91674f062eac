// kind = "check" through `kiln run` and `kiln validate`: a data contract stops what follows it.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon.h"
#include "harness.h"
#include "run_json.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

Ran RunIn(const TempDir& dir, const std::string& toml) {
  WriteFile(dir / "p.toml", toml);
  return RunJson(dir, {"--data-dir", (dir / "data").string()});
}

// prepare writes the data given into the run folder; check holds it to a contract; train follows.
std::string Contracted(const std::string& csv, const std::string& extra = "") {
  return R"([pipeline]
name = "contract"
[tasks.prepare]
command = "printf ')" +
         csv + R"(' > {{ run.dir }}/train.csv"
[tasks.check_data]
kind = "check"
needs = ["prepare"]
data = "{{ run.dir }}/train.csv"
rows = { min = 3 }
)" + extra +
         R"(
[tasks.check_data.columns]
age = { type = "int", min = 0, max = 120, nulls = false }
country = { type = "string", allowed = ["DE", "FR", "US"] }
id = { type = "string", unique = true }
[tasks.train]
needs = ["check_data"]
command = "echo trained"
)";
}

std::string LogOf(const TempDir& dir, const json& run, const std::string& task) {
  return ReadFile(dir / ("data/logs/contract/" + run["id"].dump() + "/" + task + ".1.log"));
}

}  // namespace

TEST_CASE("data that keeps its contract lets training run") {
  TempDir dir;
  auto ran = RunIn(dir, Contracted("id,age,country\\na1,34,DE\\na2,0,FR\\na3,120,US\\n"));
  INFO(ran.output.err);
  CHECK(ran.output.code == 0);
  CHECK(TaskStates(ran.run) == "prepare:success check_data:success train:success");
  CHECK(LogOf(dir, ran.run, "check_data") ==
        "kiln check: " + (dir / ("data/runs/contract/" + ran.run["id"].dump())).string() +
            "/train.csv: 3 data rows, 3 columns; the contract holds\n");
}

TEST_CASE("a contract violation stops training with a report naming the column and rows") {
  TempDir dir;
  auto ran = RunIn(dir, Contracted("id,age,country\\na1,34,DE\\na2,-3,FR\\na1,,UK\\na4,130,US\\n"));
  INFO(ran.output.err);
  CHECK(ran.output.code == 1);
  CHECK(TaskStates(ran.run) == "prepare:success check_data:failed train:upstream_failed");
  const std::string run_dir = (dir / ("data/runs/contract/" + ran.run["id"].dump())).string();
  const std::string log = LogOf(dir, ran.run, "check_data");
  INFO(log);
  CHECK(log.find("kiln check: " + run_dir + "/train.csv: 4 data rows, 3 columns; 5 violations\n") ==
        0);
  CHECK(log.find("  violation: age: 1 null (row 3)\n") != std::string::npos);
  CHECK(log.find("  violation: age: 1 value below min 0 (row 2)\n") != std::string::npos);
  CHECK(log.find("  violation: age: 1 value above max 120 (row 4)\n") != std::string::npos);
  CHECK(log.find("  violation: country: 1 value not allowed (accepted: DE, FR, US) (row 3)\n") !=
        std::string::npos);
  CHECK(log.find("  violation: id: 1 duplicate value (row 3)\n") != std::string::npos);
  const json report = json::parse(ReadFile(fs::path(run_dir) / ".kiln/check_data/check.json"));
  CHECK(report["passed"] == false);
  CHECK(report["rows"] == 4);
  CHECK(report["violations"].size() == 5);
  CHECK(report["violations"][0]["column"] == "age");
  CHECK(report["violations"][0]["rows"] == json::array({3}));
  CHECK(Sql("select exit_code from attempts where run_id = " + ran.run["id"].dump() +
            " and task_id = 'check_data'") == "1");
}

TEST_CASE("with severity warn a violation is reported and the task succeeds") {
  TempDir dir;
  auto ran = RunIn(
      dir, Contracted("id,age,country\\na1,34,DE\\na2,-3,FR\\na3,5,US\\n", "severity = \"warn\""));
  INFO(ran.output.err);
  CHECK(ran.output.code == 0);
  CHECK(TaskStates(ran.run) == "prepare:success check_data:success train:success");
  CHECK(LogOf(dir, ran.run, "check_data").find("  warning: age: 1 value below min 0 (row 2)\n") !=
        std::string::npos);
}

TEST_CASE("a check whose data is missing fails with a message naming the file") {
  TempDir dir;
  auto ran = RunIn(dir, R"([pipeline]
name = "contract"
[tasks.check_data]
kind = "check"
data = "absent.csv"
rows = { min = 1 }
)");
  CHECK(ran.output.code == 1);
  CHECK(TaskStates(ran.run) == "check_data:failed");
  CHECK(LogOf(dir, ran.run, "check_data") ==
        "kiln check: absent.csv: cannot open: No such file or directory\n");
}

TEST_CASE("kiln validate reports a check task's keys at their line and column") {
  TempDir dir;
  WriteFile(dir / "p.toml", R"([pipeline]
name = "contract"
[tasks.check_data]
kind = "check"
data = "{{ run.dri }}/x.csv"
command = "true"
rows = { min = 10, mx = 5 }
severity = "fatal"
colums = 1
[tasks.check_data.columns]
age = { type = "integer", min = "0" }
country = { type = "string", min = 1, allowed = [1] }
[tasks.other]
kind = "chek"
)");
  auto out = Kiln({"validate", (dir / "p.toml").string()});
  CHECK(out.code == 1);
  const std::string p = (dir / "p.toml").string();
  CHECK(out.err ==
        p +
            ":5:8: tasks.check_data.data: unknown template name 'run.dri' (known: pipeline.name, "
            "run.data_interval_end, run.data_interval_start, run.dir, run.id, run.logical_date, "
            "run.triggered_by, task.attempt, task.id)\n" +
            p +
            ":6:11: tasks.check_data.command: command is for kind \"shell\"; a task of kind "
            "'check' runs what its kind says\n" +
            p +
            ":7:20: tasks.check_data.rows.mx: unknown key 'mx'; did you mean 'max'? (accepted: "
            "max, min)\n" +
            p +
            ":8:12: tasks.check_data.severity: unknown severity 'fatal' (accepted: error, warn)\n" +
            p +
            ":9:1: tasks.check_data.colums: unknown key 'colums'; did you mean 'columns'? "
            "(accepted: allow_failure, cache, columns, data, env, inputs, kind, max_retry_delay, "
            "metrics, needs, outputs, pool, priority, retries, retry_backoff, retry_delay, rows, "
            "severity, slots, timeout, trigger_rule)\n" +
            p +
            ":11:16: tasks.check_data.columns.age.type: unknown column type 'integer' "
            "(accepted: bool, float, int, string)\n" +
            p + ":11:33: tasks.check_data.columns.age.min: expected a number, got a string\n" + p +
            ":12:36: tasks.check_data.columns.country.min: min and max need a numeric column "
            "(type int or float)\n" +
            p +
            ":12:50: tasks.check_data.columns.country.allowed[0]: does not fit the column's "
            "type 'string'\n" +
            p +
            ":14:8: tasks.other.kind: unknown task kind 'chek'; did you mean 'check'? (known: "
            "approval, check, drift, gate, shell, wait)\n" +
            "10 errors in 1 file\n");
}

TEST_CASE("kiln serve runs a check task under supervision, its data named by a param") {
  TempDir dir;
  WriteFile(dir / "pipelines/data/good.csv", "id,label\nx,0\ny,1\n");
  WriteFile(dir / "pipelines/data/bad.csv", "id,label\nx,0\ny,2\nx,1\n");
  WriteFile(dir / "pipelines/contract.toml", R"([pipeline]
name = "contract"
[params]
input = "data/good.csv"
[tasks.check_data]
kind = "check"
data = "{{ params.input }}"
[tasks.check_data.columns]
label = { type = "int", allowed = [0, 1] }
id = { unique = true }
[tasks.train]
needs = ["check_data"]
command = "echo trained"
)");
  Daemon daemon(dir, dir / "pipelines");
  httplib::Client client = daemon.Client(kOperatorToken);
  auto trigger = [&](const std::string& body) {
    auto created = client.Post("/api/v1/pipelines/contract/runs", body, "application/json");
    REQUIRE(created);
    REQUIRE(created->status == 201);
    return json::parse(created->body)["id"].get<int64_t>();
  };
  const int64_t good = trigger("{}");
  CHECK(WaitForRunEnd(daemon, good) == "success");
  const int64_t bad = trigger(R"({"params": {"input": "data/bad.csv"}})");
  CHECK(WaitForRunEnd(daemon, bad) == "failed");
  CHECK(Sql("select string_agg(task_id || ':' || state, ' ' order by task_id) from task_instances "
            "where run_id = " +
            std::to_string(bad)) == "check_data:failed train:upstream_failed");
  auto log = client.Get("/api/v1/runs/" + std::to_string(bad) + "/tasks/check_data/attempts/1/log");
  REQUIRE(log);
  CHECK(log->status == 200);
  CHECK(log->body ==
        "kiln check: data/bad.csv: 3 data rows, 2 columns; 2 violations\n"
        "  violation: label: 1 value not allowed (accepted: 0, 1) (row 2)\n"
        "  violation: id: 1 duplicate value (row 3)\n");
}

TEST_CASE("a check task takes no shell key from [defaults], and runs whatever they say") {
  TempDir dir;
  auto ran = RunIn(dir, R"([pipeline]
name = "contract"
[defaults]
command = "echo hi"
skip_exit_codes = [1, 2]
workdir = "elsewhere"
[tasks.check_data]
kind = "check"
data = "absent.csv"
rows = { min = 1000 }
)");
  CHECK(ran.output.code == 1);
  CHECK(TaskStates(ran.run) == "check_data:failed");
  CHECK(LogOf(dir, ran.run, "check_data") ==
        "kiln check: absent.csv: cannot open: No such file or directory\n");
}

TEST_CASE("a check task's report replaces a link planted in its place, never what it points to") {
  TempDir dir;
  auto ran = RunIn(dir, R"([pipeline]
name = "contract"
[tasks.plant]
command = "echo precious > {{ run.dir }}/victim; mkdir -p {{ run.dir }}/.kiln/check_data; ln -s {{ run.dir }}/victim {{ run.dir }}/.kiln/check_data/check.json"
[tasks.check_data]
kind = "check"
needs = ["plant"]
data = "{{ run.dir }}/victim"
rows = { min = 1 }
)");
  CHECK(ran.output.code == 1);
  CHECK(TaskStates(ran.run) == "plant:success check_data:failed");
  const fs::path run_dir = dir / ("data/runs/contract/" + ran.run["id"].dump());
  CHECK(ReadFile(run_dir / "victim") == "precious\n");
  CHECK_FALSE(fs::is_symlink(run_dir / ".kiln/check_data/check.json"));
  const json report = json::parse(ReadFile(run_dir / ".kiln/check_data/check.json"));
  REQUIRE(report["violations"].size() == 1);
  CHECK(report["violations"][0]["message"] == "rows: 0 data rows, fewer than min 1");
}

TEST_CASE("kiln validate refuses shell keys, infinities and oversized keys on a check task") {
  TempDir dir;
  std::string allowed;
  for (int i = 0; i < 7000; ++i)
    allowed += (i ? ", \"" : "\"") + std::string("value") + std::to_string(i) + "\"";
  WriteFile(dir / "p.toml", R"([pipeline]
name = "contract"
[tasks.a]
kind = "check"
data = "x.csv"
workdir = "sub"
[tasks.a.columns]
x = { type = "float", max = inf }
[tasks.b]
kind = "check"
data = "x.csv"
[tasks.b.columns]
x = { allowed = [)" + allowed + R"(] }
)");
  auto out = Kiln({"validate", (dir / "p.toml").string()});
  CHECK(out.code == 1);
  const std::string p = (dir / "p.toml").string();
  CHECK(out.err ==
        p +
            ":6:11: tasks.a.workdir: workdir is for kind \"shell\"; a task of kind 'check' runs "
            "what its kind says\n" +
            p + ":8:29: tasks.a.columns.x.max: expected a finite number, got an infinity\n" + p +
            ":9:8: tasks.b: the task's keys take 82974 bytes; at most 65536 (put long lists in a "
            "file the task reads)\n" +
            "3 errors in 1 file\n");
}
