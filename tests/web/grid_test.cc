// What the page draws from: a pipeline's grid, its graph laid out, and a run's attempts.
#include "dag/graph.h"
#include "tests/web/harness.h"
#include "web/graph_layout.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

namespace {

// tasks: id -> needs, in pipeline order.
dag::PipelinePtr Pipeline(
    const std::string& hash,
    const std::vector<std::pair<std::string, std::vector<std::string>>>& tasks) {
  dag::PipelineSpec spec;
  spec.name = "ml";
  spec.content_hash = hash;
  for (const auto& [id, needs] : tasks) {
    dag::TaskSpec t;
    t.id = id;
    t.command = "true";
    t.needs = needs;
    spec.tasks.push_back(t);
  }
  dag::Dag graph(spec);
  return std::make_shared<dag::Pipeline>(dag::Pipeline{spec, std::move(graph), std::nullopt});
}

const std::string kV1(64, 'a');
const std::string kV2(64, 'b');
const std::string kV3(64, 'd');

scheduler::GridRun GridRun(int64_t id, dag::RunState state,
                           std::shared_ptr<const std::vector<std::string>> tasks,
                           std::string letters) {
  scheduler::GridRun g;
  g.run = SampleRun(id);
  g.run.tasks.clear();
  g.run.state = state;
  g.task_ids = std::move(tasks);
  g.states = std::move(letters);
  return g;
}

}  // namespace

TEST_CASE("the grid has a column per task of the version in use, then of older versions") {
  TestServer server;
  scheduler::PipelineInfo ml = NamedPipeline("ml");
  ml.pipeline = Pipeline(kV2, {{"prepare", {}}, {"train", {"prepare"}}, {"report", {"train"}}});
  server.service.pipelines = {ml};
  auto now = std::make_shared<const std::vector<std::string>>(
      std::vector<std::string>{"prepare", "train", "report"});
  auto before = std::make_shared<const std::vector<std::string>>(
      std::vector<std::string>{"legacy", "prepare", "train"});
  server.service.grid.runs = {GridRun(14, dag::RunState::kRunning, now, "srp"),
                              GridRun(13, dag::RunState::kFailed, before, "sfx"),
                              GridRun(12, dag::RunState::kSuccess, before, "sss")};
  server.service.grid.next = RunId{12};
  auto client = server.Client();
  auto r = client->Get("/api/v1/pipelines/ml/grid?limit=3", AsViewer());
  REQUIRE(r);
  CHECK(r->status == 200);
  json body = Body(r);
  CHECK(body["tasks"] == json{"prepare", "train", "report", "legacy"});
  REQUIRE(body["runs"].size() == 3);
  CHECK(body["runs"][0]["id"] == 14);
  CHECK(body["runs"][0]["state"] == "running");
  CHECK(body["runs"][0]["tasks"] == "srp.");
  CHECK(body["runs"][1]["tasks"] == "fx.s");
  CHECK(body["runs"][2]["tasks"] == "ss.s");
  CHECK(body["runs"][0]["pipeline"] == "ml");
  CHECK(body["next_cursor"] == "12");
  CHECK(server.service.Calls().back() == "PipelineVersion ml -");

  client->Get("/api/v1/pipelines/ml/grid?cursor=12", AsViewer());
  CHECK(server.service.Calls()[server.service.Calls().size() - 2] == "Grid ml 12 25");
  client->Get("/api/v1/pipelines/ml/grid?limit=1000", AsViewer());
  CHECK(server.service.Calls()[server.service.Calls().size() - 2] == "Grid ml - 100");
  CHECK(Body(client->Get("/api/v1/pipelines/ml/grid?limit=0", AsViewer())) ==
        ErrorBody("invalid_argument",
                  "query parameter 'limit': must be a whole number of 1 or more (above 100 means "
                  "100), not '0'"));
  CHECK(Body(client->Get("/api/v1/pipelines/ml/grid?cursor=x", AsViewer())) ==
        ErrorBody("invalid_argument",
                  "query parameter 'cursor': must be a next_cursor from an earlier page, not 'x'"));
  CHECK(client->Get("/api/v1/pipelines/ml/grid?runs=3", AsViewer())->status == 400);
  server.service.errors["Grid"] = Status::Error(ErrorCode::kNotFound, "no pipeline named 'ml'");
  CHECK(client->Get("/api/v1/pipelines/ml/grid", AsViewer())->status == 404);
}

TEST_CASE("the graph is laid out by dot, left to right, and kept per version") {
  auto pipeline = Pipeline(kV1, {{"prepare", {}},
                                 {"train", {"prepare"}},
                                 {"evaluate", {"train"}},
                                 {"report", {"prepare", "evaluate"}}});
  auto layout = LayoutOf(*pipeline);
  REQUIRE(layout.ok());
  const GraphLayout& g = **layout;
  CHECK(g.version == kV1);
  REQUIRE(g.nodes.size() == 4);
  std::map<std::string, GraphLayout::Node> at;
  for (const auto& n : g.nodes) {
    at[n.id] = n;
    CHECK(n.width > 0);
    CHECK(n.height > 0);
    CHECK(n.x >= 0);
    CHECK(n.y >= 0);
    CHECK(n.x + n.width <= g.width + 1);
    CHECK(n.y + n.height <= g.height + 1);
  }
  CHECK(g.nodes[0].id == "prepare");  // pipeline order
  CHECK(at["prepare"].x + at["prepare"].width < at["train"].x);
  CHECK(at["train"].x + at["train"].width < at["evaluate"].x);
  CHECK(at["evaluate"].x + at["evaluate"].width < at["report"].x);
  CHECK(at["evaluate"].width > at["train"].width);  // sized for its name
  std::set<std::string> edges;
  for (const auto& e : g.edges) {
    edges.insert(e.from + ">" + e.to);
    CHECK(e.path.starts_with("M"));
    CHECK(e.path.find(" C") != std::string::npos);
  }
  CHECK(edges == std::set<std::string>{"prepare>train", "train>evaluate", "prepare>report",
                                       "evaluate>report"});
  // The same version is laid out once.
  auto again = LayoutOf(*Pipeline(kV1, {{"x", {}}}));
  REQUIRE(again.ok());
  CHECK(again->get() == layout->get());
}

TEST_CASE("the graph route serves the version in use or a run's version") {
  TestServer server;
  scheduler::PipelineInfo ml = NamedPipeline("ml");
  ml.pipeline = Pipeline(kV2, {{"a", {}}, {"b", {"a"}}});
  server.service.pipelines = {ml};
  {
    auto v3 =
        std::make_shared<dag::Pipeline>(*Pipeline(kV3, {{"a", {}}, {"c", {"a"}}, {"d", {"c"}}}));
    v3->spec.tasks[1].kind = "approval";
    server.service.versions[kV3] = v3;
  }
  auto client = server.Client();
  auto now = Body(client->Get("/api/v1/pipelines/ml/graph", AsViewer()));
  CHECK(now["version"] == kV2);
  CHECK(now["nodes"].size() == 2);
  CHECK(now["nodes"][1]["id"] == "b");
  CHECK(now["nodes"][1]["kind"] == "shell");
  CHECK(now["edges"] == json{{{"from", "a"}, {"to", "b"}, {"path", now["edges"][0]["path"]}}});
  auto old = Body(client->Get(("/api/v1/pipelines/ml/graph?version=" + kV3).c_str(), AsViewer()));
  CHECK(old["version"] == kV3);
  CHECK(old["nodes"].size() == 3);
  CHECK(old["nodes"][1]["id"] == "c");
  CHECK(old["nodes"][1]["kind"] == "approval");
  CHECK(Body(client->Get(("/api/v1/pipelines/ml/graph?version=" + std::string(64, 'c')).c_str(),
                         AsViewer())) ==
        ErrorBody("not_found", "pipeline 'ml' version cccccccccccc is not kept"));
  CHECK(Body(client->Get("/api/v1/pipelines/ml/graph?version=<b>", AsViewer())) ==
        ErrorBody("invalid_argument",
                  "query parameter 'version': must be a pipeline version: 64 lower-case hex "
                  "digits, as in a run's 'version'"));
  CHECK(client->Get("/api/v1/pipelines/nope/graph", AsViewer())->status == 404);
}

TEST_CASE("a run's attempts come with their task, by task then attempt") {
  TestServer server;
  scheduler::AttemptRecord a;
  a.run = RunId{12};
  a.task_id = "train";
  a.attempt = 2;
  a.state = "failed";
  a.started_at = At(kT0);
  a.ended_at = At(kT0 + 1500);
  a.exit_code = 3;
  a.cpu = std::chrono::milliseconds(1200);
  a.max_rss_kb = 2048;
  a.reason = "exit code 3";
  scheduler::AttemptRecord first = a;
  first.attempt = 1;
  first.started_at = At(kT0 - 4000);
  first.ended_at = At(kT0 - 3000);
  scheduler::AttemptRecord prepare = a;
  prepare.task_id = "prepare";
  prepare.attempt = 1;
  prepare.started_at = At(kT0 - 6000);
  prepare.ended_at = At(kT0 - 5000);
  scheduler::AttemptRecord lint = prepare;
  lint.task_id = "lint";
  lint.ended_at = At(kT0 - 900);  // 5.1 s: longer than train's 4 s, shorter than both together
  server.service.attempts = {lint, prepare, first, a};
  server.service.runs[12] = SampleRun();  // version 3f2a
  server.service.versions["3f2a"] =
      Pipeline("3f2a", {{"prepare", {}}, {"train", {"prepare"}}, {"lint", {}}});
  auto client = server.Client();
  auto r = client->Get("/api/v1/runs/12/attempts", AsViewer());
  REQUIRE(r);
  CHECK(r->status == 200);
  json body = Body(r);
  REQUIRE(body["attempts"].size() == 4);
  const json& last = body["attempts"][3];
  CHECK(last["task"] == "train");
  CHECK(last["attempt"] == 2);
  CHECK(last["exit_code"] == 3);
  CHECK(last["cpu_ms"] == 1200);
  CHECK(last["started_at"] == "2026-11-29T01:51:15.000Z");
  // train ran from its first attempt's start to its second's end (5.5 s) after prepare (1 s).
  CHECK(body["critical_path"] == json{"prepare", "train"});
  server.service.attempts[0].ended_at = At(kT0 + 2000);  // lint: 8 s
  CHECK(Body(client->Get("/api/v1/runs/12/attempts", AsViewer()))["critical_path"] == json{"lint"});
  // Without the run's version at hand, the attempts still come.
  server.service.versions.clear();
  CHECK(Body(client->Get("/api/v1/runs/12/attempts", AsViewer()))["critical_path"] ==
        json::array());
  CHECK(client->Get("/api/v1/runs/x/attempts", AsViewer())->status == 400);
  server.service.errors["RunAttempts"] = Status::Error(ErrorCode::kNotFound, "run 12 not found");
  CHECK(Body(client->Get("/api/v1/runs/12/attempts", AsViewer())) ==
        ErrorBody("not_found", "run 12 not found"));
}
