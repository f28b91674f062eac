// The model registry through `kiln serve`: a gate that passes registers a version and makes it
// champion; a worse model is not promoted; rollback and promote over the API and the CLI; the
// card and the lineage of a registered model.
#include <signal.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/sha256.h"
#include "daemon.h"
#include "harness.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

constexpr const char* kChurn = R"([pipeline]
name = "churn"
[params]
accuracy = "0.80"
[tasks.train]
command = '''printf 'model %s' "$KILN_PARAM_ACCURACY" > "$KILN_RUN_DIR/model.pkl"; printf '{"accuracy": %s, "epochs": 40}' "$KILN_PARAM_ACCURACY" > "$KILN_RUN_DIR/metrics.json"'''
inputs = ["data/train.csv"]
outputs = ["{{ run.dir }}/model.pkl"]
[tasks.gate]
kind = "gate"
needs = ["train"]
metrics = "{{ run.dir }}/metrics.json"
model = "churn"
artifact = "{{ run.dir }}/model.pkl"
require = ["accuracy >= 0.5", "accuracy >= champion.accuracy + 0.01"]
promote = true
[tasks.deploy]
needs = ["gate"]
command = "echo deployed"
# A daemon killed between committing this start and sending it loses the attempt: retried.
retries = 1
retry_delay = "0s"
)";

int64_t Train(Daemon& daemon, const std::string& accuracy) {
  auto client = daemon.Client(kOperatorToken);
  const int64_t run =
      Trigger(client, "churn", R"({"params": {"accuracy": ")" + accuracy + R"("}})");
  REQUIRE(WaitForRunEnd(daemon, run) == "success");
  return run;
}

// Waits until the model has `versions` versions.
json WaitForVersions(Daemon& daemon, size_t versions) {
  auto client = daemon.Client(kViewerToken);
  json model;
  WaitFor(
      [&] {
        auto res = client.Get("/api/v1/models/churn");
        if (!res || res->status != 200) return false;
        model = json::parse(res->body);
        return model["versions"].size() == versions;
      },
      "model churn to have " + std::to_string(versions) + " versions");
  return model;
}

std::string StatesByName(int64_t run) {
  return Sql(
      "select string_agg(task_id || ':' || state, ' ' order by task_id) from "
      "task_instances where run_id = " +
      std::to_string(run));
}

}  // namespace

TEST_CASE("a better model is promoted, a worse one is not, and an operator rolls back") {
  TempDir dir;
  WriteFile(dir / "pipelines/data/train.csv", "x,y\n1,0\n");
  WriteFile(dir / "pipelines/churn.toml", kChurn);
  Daemon daemon(dir, dir / "pipelines");
  auto viewer = daemon.Client(kViewerToken);
  auto operator_ = daemon.Client(kOperatorToken);
  CHECK(GetJson(viewer, "/api/v1/models") == json::parse(R"({"models": []})"));

  // The first passes against no champion and becomes version 1, the champion.
  const int64_t first = Train(daemon, "0.80");
  json model = WaitForVersions(daemon, 1);
  CHECK(model["champion"] == 1);
  const std::string sha1 = kiln::Sha256Hex("model 0.80");
  const json& v1 = model["versions"][0];
  CHECK(v1["version"] == 1);
  CHECK(v1["sha256"] == sha1);
  CHECK(v1["bytes"] == 10);
  CHECK(v1["metrics"] == json::parse(R"({"accuracy": 0.8, "epochs": 40})"));
  CHECK(v1["run"] == first);
  CHECK(v1["task"] == "gate");
  CHECK(v1["pipeline"] == "churn");
  CHECK(v1["params"] == json::parse(R"({"accuracy": "0.80"})"));
  CHECK(v1["champion"] == true);
  CHECK(v1["promoted_how"] == "gate");
  CHECK(ReadFile(daemon.data_dir() / "models" / sha1) == "model 0.80");
  CHECK(Sql("select detail->>'version' from events where kind = 'model_registered' and run_id = " +
            std::to_string(first)) == "1");

  // A worse one: the gate is skipped, so is deploy; nothing is registered.
  const int64_t worse = Train(daemon, "0.805");
  CHECK(StatesByName(worse) == "deploy:skipped gate:skipped train:success");
  CHECK(ReadFile(daemon.data_dir() / ("logs/churn/" + std::to_string(worse) + "/gate.1.log"))
            .starts_with("kiln gate: model churn, champion version 1: 1 of 2 conditions hold; "
                         "not passed: the task is skipped\n"));
  CHECK(GetJson(viewer, "/api/v1/models/churn")["versions"].size() == 1);
  // Its decision and metrics are kept all the same: why it did not pass, from the API.
  const json points = GetJson(viewer, "/api/v1/pipelines/churn/metrics?task=gate")["points"];
  REQUIRE(points.size() == 2);
  CHECK(points[0]["run"] == worse);
  CHECK(points[0]["state"] == "skipped");
  CHECK(points[0]["metrics"] == json::parse(R"({"accuracy": 0.805, "epochs": 40})"));
  CHECK(points[1]["run"] == first);
  CHECK(points[1]["state"] == "success");
  const json attempts =
      GetJson(viewer, "/api/v1/runs/" + std::to_string(worse) + "/tasks/gate/attempts");
  INFO(attempts.dump());
  CHECK(attempts["attempts"][0]["results"]["report"]["decision"] == "fail");
  CHECK(attempts["attempts"][0]["results"]["report"]["conditions"][1]["holds"] == false);

  // A better one becomes version 2 and the champion.
  Train(daemon, "0.90");
  model = WaitForVersions(daemon, 2);
  CHECK(model["champion"] == 2);
  CHECK(model["versions"][0]["decision"]["champion"]["version"] == 1);

  // An operator rolls back to version 1, then promotes 2 again; a viewer may do neither.
  auto denied = viewer.Post("/api/v1/models/churn/rollback", "{}", kJson);
  REQUIRE(denied);
  CHECK(denied->status == 403);
  auto rolled = operator_.Post("/api/v1/models/churn/rollback", "{}", kJson);
  REQUIRE(rolled);
  CHECK(rolled->status == 200);
  model = json::parse(rolled->body);
  CHECK(model["champion"] == 1);
  CHECK(model["versions"][1]["promoted_how"] == "rollback");
  CHECK(model["versions"][1]["promoted_by"] == "operator");
  auto again = operator_.Post("/api/v1/models/churn/rollback", "{}", kJson);
  REQUIRE(again);
  CHECK(again->status == 409);
  auto promoted = operator_.Post("/api/v1/models/churn/promote", R"({"version": 2})", kJson);
  REQUIRE(promoted);
  CHECK(json::parse(promoted->body)["champion"] == 2);
  auto missing = operator_.Post("/api/v1/models/churn/promote", R"({"version": 7})", kJson);
  REQUIRE(missing);
  CHECK(missing->status == 404);

  // The card says where version 2 came from and why it was registered.
  auto card = viewer.Get("/api/v1/models/churn/versions/2/card");
  REQUIRE(card);
  CHECK(card->status == 200);
  CHECK(card->get_header_value("Content-Type") == "text/markdown; charset=utf-8");
  INFO(card->body);
  CHECK(card->body.starts_with("# churn, version 2\n\n**The champion.**\n"));
  CHECK(card->body.find("| accuracy | 0.9 |") != std::string::npos);
  CHECK(card->body.find("| `accuracy >= champion.accuracy + 0.01` | 0.9 | 0.81 | yes |") !=
        std::string::npos);
  CHECK(card->body.find("| `" + (dir / "pipelines/data/train.csv").string() + "` | `" +
                        kiln::Sha256Hex("x,y\n1,0\n") + "` | 8 |") != std::string::npos);

  // The registered file's lineage names the run that trained it and what it read.
  const json lineage = GetJson(viewer, "/api/v1/lineage?sha256=" + kiln::Sha256Hex("model 0.90"));
  CHECK(lineage["produced_by"]["task"] == "train");
  CHECK(lineage["produced_by"]["inputs"][0]["path"] == (dir / "pipelines/data/train.csv").string());

  // The CLI.
  const std::map<std::string, std::string> env = {
      {"KILN_SERVER", "http://127.0.0.1:" + std::to_string(daemon.port())},
      {"KILN_TOKEN", kOperatorToken}};
  auto list = Kiln({"models"}, {}, env);
  CHECK(list.code == 0);
  CHECK(list.out ==
        "MODEL                            CHAMPION   VERSIONS\n"
        "churn                            2          2\n");
  // A whole number is shown as written, as `kiln metrics` shows it (the registry holds doubles).
  auto versions = Kiln({"models", "churn"}, {}, env);
  CHECK(versions.code == 0);
  CHECK(versions.out.find(" accuracy=0.9  epochs=40\n") != std::string::npos);
  auto metrics = Kiln({"metrics", "churn"}, {}, env);
  CHECK(metrics.code == 0);
  CHECK(metrics.out.find(" accuracy=0.9  epochs=40\n") != std::string::npos);
  CHECK(metrics.out.find("\n" + std::to_string(worse) + " ") != std::string::npos);
  CHECK(metrics.out.find("gate (skipped)") != std::string::npos);
  auto back = Kiln({"models", "rollback", "churn"}, {}, env);
  CHECK(back.code == 0);
  CHECK(back.out.starts_with("model churn: champion version 1\n"));
  auto forward = Kiln({"models", "promote", "churn", "2"}, {}, env);
  CHECK(forward.code == 0);
  CHECK(forward.out.starts_with("model churn: champion version 2\n"));
  auto unknown = Kiln({"models", "nosuch"}, {}, env);
  CHECK(unknown.code == 1);
  CHECK(unknown.err.find("model 'nosuch' not found") != std::string::npos);
}

TEST_CASE("a daemon killed before registering a passed gate registers it once at its start") {
  TempDir dir;
  WriteFile(dir / "pipelines/data/train.csv", "x,y\n1,0\n");
  WriteFile(dir / "pipelines/churn.toml", kChurn);
  int64_t run = 0;
  {
    DaemonOptions o(dir / "pipelines");
    o.on_stop = "leave";
    o.env["KILN_CRASH_AT"] = "gate.register";
    Daemon first(dir, o);
    auto client = first.Client(kOperatorToken);
    // Better than any champion an earlier test of this process registered.
    run = Trigger(client, "churn", R"({"params": {"accuracy": "0.99"}})");
    CHECK(first.Wait() == 128 + SIGKILL);
  }
  CHECK(Sql("select state from task_instances where task_id = 'gate' and run_id = " +
            std::to_string(run)) == "success");
  CHECK(Sql("select count(*) from model_versions where run_id = " + std::to_string(run)) == "0");
  DaemonOptions o(dir / "pipelines");
  o.on_stop = "leave";
  Daemon second(dir, o);
  WaitFor(
      [&] {
        return Sql("select count(*) from model_versions where run_id = " + std::to_string(run)) ==
               "1";
      },
      "the version to be registered");
  const std::string end = WaitForRunEnd(second, run);
  INFO(
      Sql("select string_agg(task_id || '#' || attempt || ':' || state || ' ' || reason, ', ') "
          "from attempts where run_id = " +
          std::to_string(run)));
  CHECK(end == "success");
  CHECK(Sql("select count(*) from events where kind = 'model_registered' and run_id = " +
            std::to_string(run)) == "1");
}
