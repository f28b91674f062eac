// examples/ml-lifecycle through `kiln serve`, as an ML team would run it: the first model is
// registered as the champion with its card; the same model again does not beat it and is not
// promoted; the corrupted copy is stopped by the contract; the drift monitor fed the drifted copy
// starts one retraining run, and only one within its cooldown.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

int64_t RunOf(Daemon& daemon, const std::string& pipeline, const std::string& body,
              const std::string& end) {
  auto client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, pipeline, body);
  INFO(pipeline << " " << body << ": " << States(run));
  REQUIRE(WaitForRunEnd(daemon, run) == end);
  return run;
}

}  // namespace

TEST_CASE(
    "the ml-lifecycle example registers a champion, keeps it, stops bad data and retrains "
    "on drift") {
  TempDir dir;
  fs::copy(SourceDir() / "examples/ml-lifecycle", dir / "pipelines", fs::copy_options::recursive);
  Daemon daemon(dir, dir / "pipelines");
  auto viewer = daemon.Client(kViewerToken);

  // The first model passes the gate and becomes version 1, the champion, with its card.
  const int64_t first = RunOf(daemon, "ml-lifecycle", "{}", "success");
  CHECK(States(first) ==
        "prepare:success check_data:success train:success evaluate:success gate:success "
        "alert:skipped");
  WaitFor(
      [&] {
        auto res = viewer.Get("/api/v1/models/breast-cancer");
        return res && res->status == 200 && json::parse(res->body)["champion"] == 1;
      },
      "version 1 to be the champion");
  json model = Body(viewer.Get("/api/v1/models/breast-cancer"));
  const json& v1 = model["versions"][0];
  CHECK(v1["run"] == first);
  CHECK(v1["metrics"]["accuracy"].get<double>() > 0.9);
  CHECK(v1["sha256"] == Sql("select sha256 from artifacts where role = 'output' and run_id = " +
                            std::to_string(first) + " and task_id = 'train'"));
  auto card = viewer.Get("/api/v1/models/breast-cancer/versions/1/card");
  REQUIRE(card);
  CHECK(card->status == 200);
  CHECK(card->body.starts_with("# breast-cancer, version 1\n"));
  CHECK(card->body.find("`accuracy > champion.accuracy`") != std::string::npos);

  // The same data and seed train the same model: not better than the champion, not promoted.
  const int64_t again = RunOf(daemon, "ml-lifecycle", "{}", "success");
  CHECK(States(again) ==
        "prepare:success check_data:success train:success evaluate:success gate:skipped "
        "alert:skipped");
  CHECK(Body(viewer.Get("/api/v1/models/breast-cancer"))["versions"].size() == 1);

  // The corrupted copy is stopped by the contract, naming the columns and rows.
  const int64_t bad =
      RunOf(daemon, "ml-lifecycle", R"({"params": {"input": "corrupted.csv"}})", "failed");
  CHECK(States(bad) ==
        "prepare:success check_data:failed train:upstream_failed evaluate:upstream_failed "
        "gate:upstream_failed alert:success");
  const std::string check_log = ReadFile(
      daemon.data_dir() / ("logs/ml-lifecycle/" + std::to_string(bad) + "/check_data.1.log"));
  CHECK(check_log.find("  violation: mean_texture: 1 null (row 3)\n") != std::string::npos);
  CHECK(check_log.find("  violation: worst_area: 1 value below min 0 (row 7)\n") !=
        std::string::npos);

  // The monitor on today's data: no drift, no retraining.
  const int64_t calm = RunOf(daemon, "ml-lifecycle-monitor", "{}", "success");
  CHECK(Sql("select count(*) from events where kind like 'drift_trigger%' and run_id = " +
            std::to_string(calm)) == "0");

  // On the drifted copy: one retraining run of ml-lifecycle, triggered by drift; a second drift
  // within the hour's cooldown starts none.
  const int64_t drifted = RunOf(daemon, "ml-lifecycle-monitor",
                                R"({"params": {"current": "data/drifted.csv"}})", "success");
  // The drift's answer is written after the task's end, in a transaction of its own.
  const std::string drift_query =
      "select detail->>'run' from events where kind = 'drift_triggered' and run_id = " +
      std::to_string(drifted);
  WaitFor([&] { return !Sql(drift_query).empty(); }, "the drift to trigger a run");
  const std::string retrain_id = Sql(drift_query);
  const int64_t retrain = std::stoll(retrain_id);
  CHECK(Sql("select pipeline || ' ' || trigger || ' ' || triggered_by from runs where id = " +
            retrain_id) == "ml-lifecycle drift " + std::to_string(drifted));
  CHECK(WaitForRunEnd(daemon, retrain) == "success");
  const int64_t within = RunOf(daemon, "ml-lifecycle-monitor",
                               R"({"params": {"current": "data/drifted.csv"}})", "success");
  const std::string within_query =
      "select string_agg(kind, ',') from events where kind like 'drift_trigger%' and run_id = " +
      std::to_string(within);
  WaitFor([&] { return !Sql(within_query).empty(); }, "the second drift to be answered");
  CHECK(Sql(within_query) == "drift_trigger_skipped");
  CHECK(Sql("select count(*) from runs where pipeline = 'ml-lifecycle' and trigger = 'drift'") ==
        "1");
}
