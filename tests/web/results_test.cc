#include "tests/web/harness.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

TEST_CASE("a pipeline's metrics are listed by run with a cursor") {
  TestServer server;
  scheduler::MetricsPoint p;
  p.run = RunId{12};
  p.task_id = "evaluate";
  p.attempt = 2;
  p.logical_date = At(kT0);
  p.ended_at = At(kT0 + 5);
  p.values = R"({"accuracy": 0.93})";
  scheduler::MetricsPoint skipped = p;
  skipped.run = RunId{11};
  skipped.skipped = true;
  server.service.metrics_page.points = {p, skipped};
  server.service.metrics_page.next = RunId{12};
  auto client = server.Client();
  auto r = client->Get("/api/v1/pipelines/ml/metrics?task=evaluate&limit=1&cursor=20", AsViewer());
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(Body(r) == json{{"pipeline", "ml"},
                        {"points",
                         {{{"run", 12},
                           {"task", "evaluate"},
                           {"attempt", 2},
                           {"logical_date", "2026-11-29T01:51:15.000Z"},
                           {"ended_at", "2026-11-29T01:51:15.005Z"},
                           {"state", "success"},
                           {"metrics", {{"accuracy", 0.93}}}},
                          {{"run", 11},
                           {"task", "evaluate"},
                           {"attempt", 2},
                           {"logical_date", "2026-11-29T01:51:15.000Z"},
                           {"ended_at", "2026-11-29T01:51:15.005Z"},
                           {"state", "skipped"},
                           {"metrics", {{"accuracy", 0.93}}}}}},
                        {"next_cursor", "12"}});
  CHECK(server.service.Calls() == std::vector<std::string>{"PipelineMetrics ml evaluate 20 1"});
  auto bad = client->Get("/api/v1/pipelines/ml/metrics?task=no%20such", AsViewer());
  REQUIRE(bad);
  CHECK(bad->status == 400);
}

TEST_CASE("the lineage of a file is asked by path or by content, exactly one of them") {
  TestServer server;
  auto step = std::make_shared<scheduler::LineageStep>();
  step->run = RunId{7};
  step->pipeline = "ml";
  step->version_hash = "abc";
  step->trigger = "manual";
  step->logical_date = At(kT0);
  step->params = {{"c", dag::ParamValue(0.5)}};
  step->task_id = "train";
  step->attempt = 1;
  step->ended_at = At(kT0 + 5);
  scheduler::LineageFile raw;
  raw.path = "/data/raw.csv";
  raw.sha256 = std::string(64, 'b');
  raw.bytes = 10;
  step->inputs = {raw};
  server.service.lineage.path = "/runs/7/model.pkl";
  server.service.lineage.sha256 = std::string(64, 'a');
  server.service.lineage.bytes = 3;
  server.service.lineage.produced_by = step;
  auto client = server.Client();
  auto r = client->Get("/api/v1/lineage?path=%2Fruns%2F7%2Fmodel.pkl", AsViewer());
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(Body(r) == json{{"path", "/runs/7/model.pkl"},
                        {"sha256", std::string(64, 'a')},
                        {"bytes", 3},
                        {"produced_by",
                         {{"run", 7},
                          {"pipeline", "ml"},
                          {"version", "abc"},
                          {"trigger", "manual"},
                          {"logical_date", "2026-11-29T01:51:15.000Z"},
                          {"params", {{"c", 0.5}}},
                          {"task", "train"},
                          {"attempt", 1},
                          {"ended_at", "2026-11-29T01:51:15.005Z"},
                          {"inputs",
                           {{{"path", "/data/raw.csv"},
                             {"sha256", std::string(64, 'b')},
                             {"bytes", 10},
                             {"produced_by", nullptr}}}}}}});
  // Upper-case hex is read as lower case.
  auto by_hash = client->Get("/api/v1/lineage?sha256=" + std::string(64, 'A'), AsViewer());
  REQUIRE(by_hash);
  CHECK(by_hash->status == 200);
  CHECK(server.service.Calls() == std::vector<std::string>{"Lineage /runs/7/model.pkl -",
                                                           "Lineage - " + std::string(64, 'a')});
  const std::vector<std::string> bad_queries = {"", "?path=/a&sha256=" + std::string(64, 'a'),
                                                "?path=rel/x", "?sha256=xyz", "?file=/a"};
  for (const std::string& query : bad_queries) {
    auto bad = client->Get("/api/v1/lineage" + query, AsViewer());
    REQUIRE(bad);
    INFO(query);
    CHECK(bad->status == 400);
  }
  auto anonymous = client->Get("/api/v1/lineage?path=/a");
  REQUIRE(anonymous);
  CHECK(anonymous->status == 401);
}

TEST_CASE("the model registry is read by viewers and changed by operators") {
  TestServer server;
  scheduler::ModelVersionRecord v;
  v.model = "churn";
  v.version = 2;
  v.sha256 = std::string(64, 'c');
  v.bytes = 10;
  v.metrics = R"({"accuracy": 0.9})";
  v.decision = R"({"decision": "pass"})";
  v.run = RunId{14};
  v.task_id = "gate";
  v.pipeline = "churn";
  v.version_hash = "abc";
  v.params = {{"c", dag::ParamValue(int64_t{3})}};
  v.created_at = At(kT0);
  v.champion = true;
  v.promoted_at = At(kT0 + 5);
  v.promoted_by = "gate";
  v.promoted_how = "gate";
  server.service.model.name = "churn";
  server.service.model.champion = 2;
  server.service.model.versions = 1;
  server.service.model.created_at = At(kT0);
  server.service.model.history = {v};
  auto client = server.Client();
  auto list = client->Get("/api/v1/models", AsViewer());
  REQUIRE(list);
  CHECK(Body(list) == json{{"models",
                            {{{"name", "churn"},
                              {"champion", 2},
                              {"created_at", "2026-11-29T01:51:15.000Z"},
                              {"versions", 1}}}}});
  auto one = client->Get("/api/v1/models/churn", AsViewer());
  REQUIRE(one);
  CHECK(Body(one)["versions"][0] == json{{"version", 2},
                                         {"sha256", std::string(64, 'c')},
                                         {"bytes", 10},
                                         {"metrics", {{"accuracy", 0.9}}},
                                         {"decision", {{"decision", "pass"}}},
                                         {"run", 14},
                                         {"task", "gate"},
                                         {"pipeline", "churn"},
                                         {"pipeline_version", "abc"},
                                         {"params", {{"c", 3}}},
                                         {"created_at", "2026-11-29T01:51:15.000Z"},
                                         {"champion", true},
                                         {"promoted_at", "2026-11-29T01:51:15.005Z"},
                                         {"promoted_by", "gate"},
                                         {"promoted_how", "gate"}});
  auto viewer = client->Post("/api/v1/models/churn/promote", AsViewer(), R"({"version": 2})",
                             "application/json");
  REQUIRE(viewer);
  CHECK(viewer->status == 403);
  for (const char* body : {"{}", R"({"version": 0})", R"({"version": "2"})", R"({"v": 2})"}) {
    auto bad = client->Post("/api/v1/models/churn/promote", AsOperator(), body, "application/json");
    REQUIRE(bad);
    INFO(body);
    CHECK(bad->status == 400);
  }
  auto promoted = client->Post("/api/v1/models/churn/promote", AsOperator(), R"({"version": 2})",
                               "application/json");
  REQUIRE(promoted);
  CHECK(promoted->status == 200);
  auto rolled =
      client->Post("/api/v1/models/churn/rollback", AsOperator(), "{}", "application/json");
  REQUIRE(rolled);
  CHECK(rolled->status == 200);
  auto card = client->Get("/api/v1/models/churn/versions/2/card", AsViewer());
  REQUIRE(card);
  CHECK(card->status == 200);
  CHECK(card->get_header_value("Content-Type") == "text/markdown; charset=utf-8");
  CHECK(card->body == "# churn, version 2\n");
  auto bad_name = client->Get("/api/v1/models/Bad%20Name", AsViewer());
  REQUIRE(bad_name);
  CHECK(bad_name->status == 400);
  auto bad_version = client->Get("/api/v1/models/churn/versions/x/card", AsViewer());
  REQUIRE(bad_version);
  CHECK(bad_version->status == 400);
  CHECK(server.service.Calls() ==
        std::vector<std::string>{"ListModels", "GetModel churn", "PromoteModel churn 2 ops",
                                 "RollbackModel churn ops", "ModelCard churn 2"});
}
