// A task's declared inputs, outputs and metrics: hashed and recorded when it succeeds, a missing
// output or a bad metrics file failing it, the metrics over time and the lineage of a file over
// the API and the CLI.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/sha256.h"
#include "daemon.h"
#include "harness.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

constexpr const char* kLineagePipeline = R"([pipeline]
name = "lineage"
[params]
epochs = 3
[tasks.prepare]
command = "tr a-z A-Z < data/raw.csv > {{ run.dir }}/clean.csv"
inputs = ["data/raw.csv"]
outputs = ["{{ run.dir }}/clean.csv"]
[tasks.train]
needs = ["prepare"]
command = '''cat "$KILN_RUN_DIR/clean.csv" > "$KILN_RUN_DIR/model.bin" && printf '{"accuracy": 0.93, "epochs": %s}' "$KILN_PARAM_EPOCHS" > "$KILN_RUN_DIR/metrics.json"'''
inputs = ["{{ run.dir }}/clean.csv"]
outputs = ["{{ run.dir }}/model.bin"]
metrics = "{{ run.dir }}/metrics.json"
)";

}  // namespace

TEST_CASE("kiln serve records a task's file hashes and metrics, and the lineage of its outputs") {
  TempDir dir;
  WriteFile(dir / "pipelines/data/raw.csv", "a,b\nx,y\n");
  WriteFile(dir / "pipelines/lineage.toml", kLineagePipeline);
  Daemon daemon(dir, dir / "pipelines");
  httplib::Client client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, "lineage", R"({"params": {"epochs": 5}})");
  REQUIRE(WaitForRunEnd(daemon, run) == "success");

  const fs::path run_dir = daemon.data_dir() / "runs/lineage" / std::to_string(run);
  const std::string raw = (dir / "pipelines/data/raw.csv").string();
  const std::string clean = (run_dir / "clean.csv").string();
  const std::string model = (run_dir / "model.bin").string();
  const std::string upper = kiln::Sha256Hex("A,B\nX,Y\n");
  const std::string lower = kiln::Sha256Hex("a,b\nx,y\n");

  const json attempts =
      GetJson(client, "/api/v1/runs/" + std::to_string(run) + "/tasks/train/attempts");
  CHECK(attempts["attempts"][0]["results"] ==
        json::parse(R"({"inputs": [{"path": ")" + clean + R"(", "sha256": ")" + upper +
                    R"(", "bytes": 8}], "outputs": [{"path": ")" + model + R"(", "sha256": ")" +
                    upper + R"(", "bytes": 8}], "metrics": {"accuracy": 0.93, "epochs": 5}})"));

  const json metrics = GetJson(client, "/api/v1/pipelines/lineage/metrics");
  REQUIRE(metrics["points"].size() == 1);
  CHECK(metrics["points"][0]["run"] == run);
  CHECK(metrics["points"][0]["task"] == "train");
  CHECK(metrics["points"][0]["metrics"] == json::parse(R"({"accuracy": 0.93, "epochs": 5})"));
  CHECK(metrics["next_cursor"].is_null());

  const json lineage = GetJson(client, "/api/v1/lineage?path=" + model);
  CHECK(lineage["sha256"] == upper);
  const json& train = lineage["produced_by"];
  CHECK(train["run"] == run);
  CHECK(train["pipeline"] == "lineage");
  CHECK(train["task"] == "train");
  CHECK(train["params"] == json::parse(R"({"epochs": 5})"));
  CHECK(train["version"] == Sql("select version_hash from runs where id = " + std::to_string(run)));
  REQUIRE(train["inputs"].size() == 1);
  CHECK(train["inputs"][0]["path"] == clean);
  const json& prepare = train["inputs"][0]["produced_by"];
  CHECK(prepare["task"] == "prepare");
  REQUIRE(prepare["inputs"].size() == 1);
  CHECK(prepare["inputs"][0]["path"] == raw);
  CHECK(prepare["inputs"][0]["sha256"] == lower);
  CHECK(prepare["inputs"][0]["produced_by"].is_null());

  // By content: the same answer.
  CHECK(GetJson(client, "/api/v1/lineage?sha256=" + upper)["produced_by"]["task"] == "train");

  // The CLI prints the same tree.
  const std::map<std::string, std::string> env = {
      {"KILN_SERVER", "http://127.0.0.1:" + std::to_string(daemon.port())},
      {"KILN_TOKEN", kViewerToken}};
  auto out = Kiln({"lineage", model}, {}, env);
  CHECK(out.code == 0);
  CHECK(out.out.find("written by run " + std::to_string(run) + " of lineage") != std::string::npos);
  CHECK(out.out.find("params: epochs=5") != std::string::npos);
  CHECK(out.out.find("        " + raw + "\n") != std::string::npos);
  CHECK(out.out.find("not written by any run: a source") != std::string::npos);
  auto shown = Kiln({"metrics", "lineage"}, {}, env);
  CHECK(shown.code == 0);
  CHECK(shown.out.find("accuracy=0.93  epochs=5") != std::string::npos);

  auto unknown = client.Get("/api/v1/lineage?path=/nowhere/file.bin");
  REQUIRE(unknown);
  CHECK(unknown->status == 404);
  auto both = client.Get("/api/v1/lineage?path=/a&sha256=" + upper);
  REQUIRE(both);
  CHECK(both->status == 400);
  auto none = client.Get("/api/v1/pipelines/nosuch/metrics");
  REQUIRE(none);
  CHECK(none->status == 404);
  // A task the pipeline does not have: not "no metrics yet". Bytes that are not UTF-8: a 400.
  auto typo = Kiln({"metrics", "lineage", "--task", "trian"}, {}, env);
  CHECK(typo.code == 1);
  CHECK(typo.err.starts_with("kiln: pipeline 'lineage' has no task 'trian' (its tasks: "));
  auto bytes = client.Get("/api/v1/lineage?path=/%FF");
  REQUIRE(bytes);
  CHECK(bytes->status == 400);
  CHECK(bytes->body.find("must be UTF-8 text without NUL characters") != std::string::npos);
}

TEST_CASE(
    "a declared output that is missing or a metrics file that is not numbers fails the task") {
  TempDir dir;
  WriteFile(dir / "p.toml", R"([pipeline]
name = "broken"
[tasks.forgets]
command = "echo done"
outputs = ["{{ run.dir }}/model.bin"]
[tasks.words]
command = '''printf '{"accuracy": "high"}' > metrics.json'''
metrics = "metrics.json"
[tasks.after]
needs = ["forgets"]
command = "echo never"
)");
  auto ran = Kiln({"run", "p.toml", "--output", "json", "--data-dir", (dir / "data").string()},
                  dir.path());
  CHECK(ran.code == 1);
  const json run = json::parse(ran.out);
  const std::string id = run["id"].dump();
  CHECK(Sql("select string_agg(task_id || ':' || state, ' ' order by task_id) from "
            "task_instances where run_id = " +
            id) == "after:upstream_failed forgets:failed words:failed");
  const std::string model = (dir / "data/runs/broken" / id / "model.bin").string();
  CHECK(Sql("select reason from attempts where run_id = " + id + " and task_id = 'forgets'") ==
        "output '" + model + "' does not exist");
  CHECK(ReadFile(dir / ("data/logs/broken/" + id + "/forgets.1.log")) ==
        "done\n[kiln: output '" + model + "' does not exist]\n");
  CHECK(Sql("select reason from attempts where run_id = " + id + " and task_id = 'words'") ==
        "metrics file 'metrics.json' (" + (dir / "metrics.json").string() +
            ") key 'accuracy' is a string; expected a number (a flat JSON object of numbers)");
  CHECK(Sql("select count(*) from attempts where run_id = " + id + " and results is not null") ==
        "0");
}

TEST_CASE("kiln validate reports bad inputs, outputs, metrics and cache keys where they are") {
  TempDir dir;
  WriteFile(dir / "p.toml", R"([pipeline]
name = "bad"
[tasks.a]
command = "true"
inputs = ["../outside.csv", ""]
outputs = ["x.bin", "x.bin"]
metrics = "{{ nope }}"
[tasks.b]
command = "true"
cache = true
[defaults]
outputs = ["y"]
)");
  auto out = Kiln({"validate", "p.toml"}, dir.path());
  CHECK(out.code == 1);
  CHECK(out.err ==
        "p.toml:5:11: tasks.a.inputs: path '../outside.csv' leaves the pipeline's folder; use a "
        "path inside it or under {{ run.dir }}\n"
        "p.toml:5:29: tasks.a.inputs: empty path; expected a file, relative to the pipeline's "
        "folder or under {{ run.dir }}\n"
        "p.toml:6:21: tasks.a.outputs: 'x.bin' is listed twice; list each file once\n"
        "p.toml:7:11: tasks.a.metrics: unknown template name 'nope' (known: pipeline.name, "
        "run.data_interval_end, run.data_interval_start, run.dir, run.id, run.logical_date, "
        "run.triggered_by, task.attempt, task.id)\n"
        "p.toml:10:9: tasks.b.cache: cache = true needs outputs: a cached task is skipped only "
        "when the files it wrote earlier are still there; list them in outputs\n"
        "p.toml:12:1: defaults.outputs: unknown key 'outputs' (accepted: allow_failure, argv, "
        "command, env, kind, max_retry_delay, pool, priority, retries, retry_backoff, "
        "retry_delay, skip_exit_codes, slots, timeout, trigger_rule, workdir)\n"
        "6 errors in 1 file\n");
}
