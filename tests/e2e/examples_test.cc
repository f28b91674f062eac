// Every example runs through the binary and ends exactly as its expected*.json says.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

// Runs the example's pipeline ("file" in the expected file, else pipeline.toml); returns the
// run's JSON and leaves its data folder in `data`.
json CheckExample(const std::string& example, const std::string& expected_file,
                  const TempDir& data = TempDir()) {
  fs::path dir = SourceDir() / "examples" / example;
  json expected = json::parse(ReadFile(dir / expected_file));
  const std::string file = expected.value("file", "pipeline.toml");
  std::vector<std::string> args = {"run",  (dir / file).string(), "--output",
                                   "json", "--data-dir",          data.path().string()};
  if (expected.contains("params")) {
    for (const auto& [k, v] : expected["params"].items()) {
      args.push_back("-p");
      args.push_back(k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
    }
  }
  auto r = Kiln(args, SourceDir());
  INFO(r.err);
  std::string want_run = expected["run"];
  CHECK(r.code == (want_run == "success" ? 0 : 1));
  json got = json::parse(r.out);
  CHECK(got["state"] == want_run);
  std::map<std::string, json> tasks;
  for (const auto& t : got["tasks"]) tasks[t["id"]] = t;
  REQUIRE(tasks.size() == expected["tasks"].size());
  for (const auto& [id, want] : expected["tasks"].items()) {
    INFO("task " << id);
    REQUIRE(tasks.count(id));
    CHECK(tasks[id]["state"] == want["state"]);
    CHECK(tasks[id]["attempts"] == want["attempts"]);
  }
  // The same outcome is what PostgreSQL holds.
  CHECK(Sql("select state from runs where id = " + got["id"].dump()) == want_run);
  return got;
}

}  // namespace

TEST_CASE("example ml-lifecycle trains, evaluates and registers a model") {
  CheckExample("ml-lifecycle", "expected.json");
}

TEST_CASE("example ml-lifecycle's sweep trains one model per grid point and gates the best") {
  TempDir data;
  const json run = CheckExample("ml-lifecycle", "expected-sweep.json", data);
  // pick chose the most accurate trial (the first of equals), and the gate read its metrics.
  const fs::path folder = data / "runs/ml-sweep" / run["id"].dump();
  const json sweep = json::parse(ReadFile(folder / "sweep.json"));
  REQUIRE(sweep["trials"].size() == 6);
  size_t best = 0;
  for (size_t i = 0; i < 6; ++i) {
    CHECK(sweep["trials"][i]["trial"] == i);
    if (sweep["trials"][i]["metrics"]["accuracy"] > sweep["trials"][best]["metrics"]["accuracy"]) {
      best = i;
    }
  }
  CHECK(sweep["chosen"] == best);
  CHECK(json::parse(ReadFile(folder / "metrics.json")) == sweep["trials"][best]["metrics"]);
  CHECK(sweep["trials"][4]["model"]["model"] == "random_forest");
  CHECK(sweep["trials"][4]["model"]["hyperparameters"]["n_estimators"] == 50);
}

TEST_CASE("example ml-lifecycle skips promotion below the accuracy gate") {
  CheckExample("ml-lifecycle", "expected-gate.json");
}

TEST_CASE("example ml-lifecycle fails at the data check on a corrupted input") {
  CheckExample("ml-lifecycle", "expected-corrupted.json");
}

TEST_CASE("example retries") { CheckExample("retries", "expected.json"); }
TEST_CASE("example trigger-rules") { CheckExample("trigger-rules", "expected.json"); }
TEST_CASE("example timeouts") { CheckExample("timeouts", "expected.json"); }
TEST_CASE("example params") { CheckExample("params", "expected.json"); }
TEST_CASE("example pools-priority") { CheckExample("pools-priority", "expected.json"); }
TEST_CASE("example pytorch-train trains on the gpu pool and passes its gate") {
  CheckExample("pytorch-train", "expected.json");
}

TEST_CASE("example pytorch-train skips promotion below the accuracy gate") {
  CheckExample("pytorch-train", "expected-gate.json");
}

TEST_CASE("example faiss-retrieval builds an index and passes its recall gate") {
  CheckExample("faiss-retrieval", "expected.json");
}

TEST_CASE("example faiss-retrieval skips promotion of an index with too little recall") {
  CheckExample("faiss-retrieval", "expected-gate.json");
}

TEST_CASE("example heartbeat") { CheckExample("heartbeat", "expected.json"); }

TEST_CASE("every example validates") {
  auto r = Kiln({"validate", (SourceDir() / "examples").string()});
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK(r.out.starts_with("ok: "));
}

TEST_CASE("example pools-priority starts waiting tasks by priority when slots are scarce") {
  fs::path dir = SourceDir() / "examples" / "pools-priority";
  TempDir data;
  auto r = Kiln({"run", (dir / "pipeline.toml").string(), "-j", "1", "--output", "json",
                 "--data-dir", data.path().string()},
                SourceDir());
  INFO(r.err);
  REQUIRE(r.code == 0);
  std::string id = json::parse(r.out)["id"].dump();
  CHECK(ReadFile(data / ("runs/pools-priority/" + id + "/order.txt")) ==
        "urgent\nhigh\nnormal\nlow\n");
}

// examples/nightly-retrain through `kiln serve`, its webhook pointed at a receiver on loopback:
// the wait holds until the marker lands, then it trains; on malformed data the run fails and
// the receiver is told which task failed.
TEST_CASE("example nightly-retrain waits for its data and alerts its webhook on failure") {
  TempDir dir;
  fs::create_directories(dir / "pipelines");
  fs::copy(SourceDir() / "examples" / "nightly-retrain", dir / "pipelines/nightly-retrain",
           fs::copy_options::recursive);
  std::mutex mu;
  std::vector<json> alerts;
  httplib::Server receiver;
  receiver.Post("/kiln-alerts", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    alerts.push_back(json::parse(req.body));
    res.status = 204;
  });
  const int port = receiver.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { receiver.listen_after_bind(); });
  const fs::path file = dir / "pipelines/nightly-retrain/pipeline.toml";
  std::string text = ReadFile(file);
  const std::string address = "127.0.0.1:9099";
  REQUIRE(text.find(address) != std::string::npos);
  text.replace(text.find(address), address.size(), "127.0.0.1:" + std::to_string(port));
  WriteFile(file, text);
  {
    Daemon daemon(dir, dir / "pipelines");
    auto client = daemon.Client(kOperatorToken);
    REQUIRE(client.Post("/api/v1/pipelines/nightly-retrain/unpause", "{}", kJson)->status == 200);
    const int64_t good = Trigger(client, "nightly-retrain");
    WaitFor(
        [&] {
          return Sql("select state from task_instances where task_id = 'wait_data' and run_id = " +
                     std::to_string(good)) == "waiting";
        },
        "the wait");
    WriteFile(dir / "pipelines/nightly-retrain/landing/_SUCCESS", "");
    const std::string state = WaitForRunEnd(daemon, good);
    INFO(
        Sql("select string_agg(coalesce(task_id, '') || ': ' || coalesce(detail->>'reason', ''), "
            "E'\\n' order by id) from events where run_id = " +
            std::to_string(good)));
    REQUIRE(state == "success");
    const json metrics = json::parse(ReadFile(
        daemon.data_dir() / ("runs/nightly-retrain/" + std::to_string(good) + "/metrics.json")));
    CHECK(metrics["rows"] == 200);
    CHECK(metrics["accuracy"].get<double>() > 0.8);
    // Malformed data: train fails, the webhook hears which task.
    WriteFile(dir / "bad/data.csv", "tenure,spend,label\n1,2,3\n");
    WriteFile(dir / "bad/_SUCCESS", "");
    auto r = client.Post("/api/v1/pipelines/nightly-retrain/runs",
                         json{{"params", {{"landing", (dir / "bad").string()}}}}.dump(), kJson);
    REQUIRE(r);
    REQUIRE(r->status == 201);
    const int64_t bad = json::parse(r->body)["id"];
    CHECK(WaitForRunEnd(daemon, bad) == "failed");
    WaitFor(
        [&] {
          std::lock_guard lock(mu);
          return alerts.size() == 1;
        },
        "the alert");
  }
  receiver.stop();
  serving.join();
  REQUIRE(alerts.size() == 1);  // the successful run was not announced
  CHECK(alerts[0]["event"] == "failed");
  CHECK(alerts[0]["pipeline"] == "nightly-retrain");
  CHECK(alerts[0]["run"]["failed_tasks"] ==
        json::array({{{"task", "train"}, {"state", "failed"}, {"exit_code", 1}}}));
}
