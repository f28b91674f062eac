#include "dag/graph.h"
#include "tests/web/harness.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

namespace {

dag::PipelinePtr SamplePipeline() {
  dag::PipelineSpec spec;
  spec.name = "ml";
  spec.description = "train <and> promote";
  spec.schedule = "0 3 * * *";
  spec.timezone = "Europe/Paris";
  spec.tags = {"ml", "nightly"};
  spec.params = {{"epochs", int64_t{10}, {}},
                 {"lr", 0.5, {}},
                 {"dry", false, {}},
                 {"dataset", std::string("data.csv"), {}}};
  dag::TaskSpec prepare;
  prepare.id = "prepare";
  prepare.command = "python prep.py";
  dag::TaskSpec train;
  train.id = "train";
  train.argv = std::vector<std::string>{"python", "train.py"};
  train.needs = {"prepare"};
  train.trigger_rule = dag::TriggerRule::kAllDone;
  train.pool = "gpu";
  train.slots = 2;
  train.priority = 7;
  train.retry.retries = 3;
  train.timeout = std::chrono::minutes(90);
  spec.tasks = {prepare, train};
  spec.content_hash = "3f2a";
  spec.source = "[pipeline]\nname = \"ml\"\n";
  dag::Dag graph(spec);
  auto schedule = dag::MakeSchedule(spec.schedule, spec.timezone);
  REQUIRE(schedule.ok());
  return std::make_shared<dag::Pipeline>(dag::Pipeline{spec, std::move(graph), *schedule});
}

std::vector<scheduler::PipelineInfo> SamplePipelines() {
  scheduler::PipelineInfo ml;
  ml.name = "ml";
  ml.file = "pipelines/ml.toml";
  ml.pipeline = SamplePipeline();
  ml.last_run = RunId{12};
  ml.last_run_state = dag::RunState::kSuccess;
  ml.recent_runs = {{RunId{12}, dag::RunState::kSuccess}, {RunId{9}, dag::RunState::kFailed}};
  ml.next_fires = {At(kT0), At(kT0 + 3600000)};
  ml.last_fire = At(kT0) - std::chrono::hours(24);
  ml.fires_skipped = 3;
  scheduler::PipelineInfo broken;
  broken.name = "broken";
  broken.file = "pipelines/broken.toml";
  broken.load_error = "broken.toml:3:1: tasks: at least one task is needed";
  broken.paused = true;
  return {ml, broken};
}

json MlJson() {
  return {{"name", "ml"},
          {"description", "train <and> promote"},
          {"tags", {"ml", "nightly"}},
          {"schedule", "0 3 * * *"},
          {"schedule_text", "at 03:00 every day"},
          {"timezone", "Europe/Paris"},
          {"paused", false},
          {"file", "pipelines/ml.toml"},
          {"version", "3f2a"},
          {"load_error", nullptr},
          {"last_run", {{"id", 12}, {"state", "success"}}},
          {"recent_runs", {{{"id", 12}, {"state", "success"}}, {{"id", 9}, {"state", "failed"}}}},
          {"catchup", "none"},
          {"overlap", "skip"},
          {"max_active_runs", 1},
          {"next_fire", "2026-11-29T01:51:15.000Z"},
          {"next_fires", json::array({"2026-11-29T01:51:15.000Z", "2026-11-29T02:51:15.000Z"})},
          {"last_fire", "2026-11-28T01:51:15.000Z"},
          {"fires_skipped", 3}};
}

json BrokenJson() {
  return {{"name", "broken"},
          {"description", ""},
          {"tags", json::array()},
          {"schedule", nullptr},
          {"schedule_text", nullptr},
          {"timezone", nullptr},
          {"paused", true},
          {"file", "pipelines/broken.toml"},
          {"version", nullptr},
          {"load_error", "broken.toml:3:1: tasks: at least one task is needed"},
          {"last_run", nullptr},
          {"recent_runs", json::array()},
          {"catchup", nullptr},
          {"overlap", nullptr},
          {"max_active_runs", nullptr},
          {"next_fire", nullptr},
          {"next_fires", json::array()},
          {"last_fire", nullptr},
          {"fires_skipped", 0}};
}

}  // namespace

TEST_CASE("pipelines are listed, loaded or broken") {
  TestServer server;
  server.service.pipelines = SamplePipelines();
  auto client = server.Client();
  auto r = client->Get("/api/v1/pipelines", AsViewer());
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "application/json");
  CHECK(r->get_header_value("X-Content-Type-Options") == "nosniff");
  CHECK(Body(r) == json{{"pipelines", {MlJson(), BrokenJson()}}});
}

TEST_CASE("a pipeline shows its params, tasks and source") {
  TestServer server;
  server.service.pipelines = SamplePipelines();
  auto client = server.Client();
  json expected = MlJson();
  expected["params"] = {{{"name", "epochs"}, {"type", "integer"}, {"default", 10}},
                        {{"name", "lr"}, {"type", "float"}, {"default", 0.5}},
                        {{"name", "dry"}, {"type", "boolean"}, {"default", false}},
                        {{"name", "dataset"}, {"type", "string"}, {"default", "data.csv"}}};
  expected["tasks"] = {{{"id", "prepare"},
                        {"needs", json::array()},
                        {"trigger_rule", "all_success"},
                        {"pool", "default"},
                        {"slots", 1},
                        {"priority", 0},
                        {"retries", 0},
                        {"timeout_ms", nullptr},
                        {"command", "python prep.py"}},
                       {{"id", "train"},
                        {"needs", {"prepare"}},
                        {"trigger_rule", "all_done"},
                        {"pool", "gpu"},
                        {"slots", 2},
                        {"priority", 7},
                        {"retries", 3},
                        {"timeout_ms", 5400000},
                        {"argv", {"python", "train.py"}}}};
  expected["source"] = "[pipeline]\nname = \"ml\"\n";
  CHECK(Body(client->Get("/api/v1/pipelines/ml", AsViewer())) == expected);

  json broken = BrokenJson();
  broken["params"] = json::array();
  broken["tasks"] = json::array();
  broken["source"] = nullptr;
  CHECK(Body(client->Get("/api/v1/pipelines/broken", AsViewer())) == broken);

  auto missing = client->Get("/api/v1/pipelines/nope", AsViewer());
  CHECK(missing->status == 404);
  CHECK(Body(missing) == ErrorBody("not_found", "no pipeline named 'nope'"));
}

TEST_CASE("pause and unpause answer with the pipeline and record the actor") {
  TestServer server;
  server.service.pipelines = SamplePipelines();
  auto client = server.Client();
  auto paused = client->Post("/api/v1/pipelines/ml/pause", AsOperator(), "", "application/json");
  CHECK(paused->status == 200);
  json expected = MlJson();
  expected["paused"] = true;
  CHECK(Body(paused) == expected);
  auto unpaused = client->Post("/api/v1/pipelines/ml/unpause", AsAdmin(), "{}", "application/json");
  CHECK(unpaused->status == 200);
  CHECK(Body(unpaused) == MlJson());
  CHECK(server.service.Calls() ==
        std::vector<std::string>{"SetPaused ml true ops", "GetPipeline ml",
                                 "SetPaused ml false root", "GetPipeline ml"});
  auto extra =
      client->Post("/api/v1/pipelines/ml/pause", AsOperator(), R"({"why": 1})", "application/json");
  CHECK(extra->status == 400);
  CHECK(Body(extra) ==
        ErrorBody("invalid_argument", "body: unknown field 'why'; send no body or {}"));
  server.service.errors["SetPaused"] = Status::Error(ErrorCode::kNotFound, "no pipeline named 'x'");
  auto missing = client->Post("/api/v1/pipelines/x/pause", AsOperator(), "", "application/json");
  CHECK(missing->status == 404);
  CHECK(Body(missing) == ErrorBody("not_found", "no pipeline named 'x'"));
}

TEST_CASE("a reload is asked of every daemon by an operator, not a viewer") {
  TestServer server;
  auto client = server.Client();
  auto viewer = client->Post("/api/v1/reload", AsViewer(), "", "application/json");
  CHECK(viewer->status == 403);
  auto asked = client->Post("/api/v1/reload", AsOperator(), "{}", "application/json");
  CHECK(asked->status == 202);
  CHECK(Body(asked) == json::parse(R"({"reload": "asked of every daemon on the database",
      "config": {"file": null, "applied": [], "restart_needed": [], "refused": []}})"));
  CHECK(server.service.Calls() == std::vector<std::string>{"ReloadPipelines ops"});
  server.service.config_reload = {"/etc/kiln/kiln.toml",
                                  {"auth.tokens", "pools"},
                                  {"server.listen"},
                                  {{"retention", "why it was refused"}}};
  auto changed = client->Post("/api/v1/reload", AsOperator(), "{}", "application/json");
  CHECK(changed->status == 202);
  CHECK(Body(changed)["config"] == json::parse(R"({"file": "/etc/kiln/kiln.toml",
      "applied": ["auth.tokens", "pools"], "restart_needed": ["server.listen"],
      "refused": [{"key": "retention", "why": "why it was refused"}]})"));
  server.service.errors["ReloadPipelines"] =
      Status::Error(ErrorCode::kConflict, "kiln.toml: 3:1: x: unknown key");
  auto broken = client->Post("/api/v1/reload", AsOperator(), "", "application/json");
  CHECK(broken->status == 409);
  CHECK(Body(broken)["error"]["message"] == "kiln.toml: 3:1: x: unknown key");
  server.service.errors["ReloadPipelines"] =
      Status::Error(ErrorCode::kUnavailable, "database: asking the daemons: gone");
  auto down = client->Post("/api/v1/reload", AsOperator(), "", "application/json");
  CHECK(down->status == 503);
}

TEST_CASE(
    "tokens replaced while the server runs: a removed token and its sessions end, and a "
    "changed role applies to open sessions") {
  TestServer server;
  auto client = server.Client();
  // A browser session of the viewer token, and an event stream of the operator's.
  auto signed_in =
      client->Post("/api/v1/session", R"({"token": ")" + std::string(kViewerSecret) + R"("})",
                   "application/json");
  REQUIRE(signed_in);
  REQUIRE(signed_in->status == 200);
  const std::string cookie = signed_in->get_header_value("Set-Cookie")
                                 .substr(0, signed_in->get_header_value("Set-Cookie").find(';'));
  httplib::Headers by_cookie = {{"Cookie", cookie}};
  CHECK(Body(client->Get("/api/v1/session", by_cookie))["role"] == "viewer");

  // The viewer token becomes an operator; the operator token is removed; a new admin token.
  std::vector<Token> next = {{"viewers", Role::kOperator, Sha256Hex(kViewerSecret)},
                             {"fresh", Role::kAdmin, Sha256Hex("kiln_fresh_secret")}};
  REQUIRE(server.SetTokens(next).ok());
  auto who = client->Get("/api/v1/session", by_cookie);
  CHECK(who->status == 200);
  CHECK(Body(who) == json{{"name", "viewers"}, {"role", "operator"}});
  auto gone = client->Get("/api/v1/pipelines", AsOperator());
  CHECK(gone->status == 401);
  CHECK(Body(gone)["error"]["message"] ==
        "the token is not known: check it, or ask an admin for a new one");
  auto fresh = client->Get("/api/v1/pipelines", {{"Authorization", "Bearer kiln_fresh_secret"}});
  CHECK(fresh->status == 200);

  // A bad table changes nothing.
  CHECK(server.SetTokens({{"a", Role::kAdmin, "nothex"}}).code() == ErrorCode::kInvalidArgument);
  CHECK(client->Get("/api/v1/pipelines", {{"Authorization", "Bearer kiln_fresh_secret"}})->status ==
        200);

  // The viewer token removed: its session ends, and signing in again with it fails.
  REQUIRE(server.SetTokens({next[1]}).ok());
  auto ended = client->Get("/api/v1/session", by_cookie);
  CHECK(ended->status == 401);
  CHECK(Body(ended)["error"]["message"] ==
        "the session has ended (signed out, its token removed, or the daemon restarted): sign in "
        "again with /?token=<token>");
  // Added back, the session stays ended: it was closed when its token went.
  REQUIRE(server.SetTokens(next).ok());
  CHECK(client->Get("/api/v1/session", by_cookie)->status == 401);
}

TEST_CASE("a trigger creates a run and answers with it") {
  TestServer server;
  server.service.runs[12] = SampleRun();
  auto client = server.Client();
  auto r = client->Post("/api/v1/pipelines/ml/runs", AsOperator(),
                        R"({"params": {"epochs": 20, "lr": 0.25, "dataset": "b.csv", "dry": true},
                            "idempotency_key": "nightly-2026-11-29", "note": "more epochs"})",
                        "application/json");
  REQUIRE(r);
  CHECK(r->status == 201);
  CHECK(r->get_header_value("Location") == "/api/v1/runs/12");
  CHECK(Body(r) == SampleRunJson());
  CHECK(server.service.Calls() ==
        std::vector<std::string>{"Trigger ml epochs=20 lr=0.25 dataset=b.csv dry=true "
                                 "key=nightly-2026-11-29 note=more epochs actor=ops",
                                 "GetRun 12"});
}

TEST_CASE("a trigger answers with the run the service created, without reading it back") {
  TestServer server;
  server.service.trigger_result.run = SampleRun();
  auto client = server.Client();
  auto r = client->Post("/api/v1/pipelines/ml/runs", AsOperator(), "{}", "application/json");
  REQUIRE(r);
  CHECK(r->status == 201);
  CHECK(Body(r) == SampleRunJson());
  CHECK(server.service.Calls() == std::vector<std::string>{"Trigger ml actor=ops"});
}

TEST_CASE("a trigger without a body uses the defaults, and a known key answers 200") {
  TestServer server;
  server.service.runs[12] = SampleRun();
  server.service.trigger_result.existing = true;
  auto client = server.Client();
  auto r = client->Post("/api/v1/pipelines/ml/runs", AsOperator(), "", "application/json");
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Location") == "/api/v1/runs/12");
  CHECK(server.service.Calls().front() == "Trigger ml actor=ops");
  auto nulls = client->Post("/api/v1/pipelines/ml/runs", AsOperator(),
                            R"({"params": null, "idempotency_key": null, "note": null})",
                            "application/json");
  CHECK(nulls->status == 200);
}

TEST_CASE("trigger errors map to their statuses") {
  TestServer server;
  auto client = server.Client();
  struct Case {
    ErrorCode code;
    int status;
    std::string name;
  };
  for (const auto& c :
       {Case{ErrorCode::kInvalidArgument, 400, "invalid_argument"},
        Case{ErrorCode::kNotFound, 404, "not_found"}, Case{ErrorCode::kConflict, 409, "conflict"},
        Case{ErrorCode::kUnavailable, 503, "unavailable"},
        Case{ErrorCode::kInternal, 500, "internal"}}) {
    server.service.errors["Trigger"] = Status::Error(c.code, "param 'epochs' expects an integer");
    auto r = client->Post("/api/v1/pipelines/ml/runs", AsOperator(), "", "application/json");
    CHECK(r->status == c.status);
    CHECK(Body(r) == ErrorBody(c.name, "param 'epochs' expects an integer"));
  }
}

TEST_CASE("a run that cannot be read back after its trigger still says where it is") {
  TestServer server;
  server.service.errors["GetRun"] = Status::Error(ErrorCode::kUnavailable, "database is down");
  auto client = server.Client();
  auto r = client->Post("/api/v1/pipelines/ml/runs", AsOperator(), "", "application/json");
  CHECK(r->status == 503);
  CHECK(r->get_header_value("Location") == "/api/v1/runs/12");
  CHECK(Body(r) ==
        ErrorBody("unavailable", "run 12 was created but cannot be read: database is down"));
}

TEST_CASE("trigger bodies are checked field by field") {
  TestServer server;
  auto client = server.Client();
  struct Case {
    std::string body, code, message;
  };
  for (const auto& c : {
           Case{R"({"params": []})", "invalid_argument", "'params' must be an object"},
           Case{R"({"params": {"a": [1]}})", "invalid_argument",
                "param 'a' must be a string, number or boolean"},
           Case{R"({"params": {"a": {"b": 1}}})", "invalid_argument",
                "param 'a' must be a string, number or boolean"},
           Case{R"({"params": {"a": null}})", "invalid_argument",
                "param 'a' must be a string, number or boolean"},
           Case{R"({"idempotency_key": 5})", "invalid_argument",
                "'idempotency_key' must be a string of 1-255 bytes"},
           Case{R"({"idempotency_key": ""})", "invalid_argument",
                "'idempotency_key' must be a string of 1-255 bytes"},
           Case{R"({"idempotency_key": ")" + std::string(256, 'k') + R"("})", "invalid_argument",
                "'idempotency_key' must be a string of 1-255 bytes"},
           Case{R"({"note": true})", "invalid_argument",
                "'note' must be a string of at most 2000 bytes"},
           Case{R"({"note": ")" + std::string(2001, 'n') + R"("})", "invalid_argument",
                "'note' must be a string of at most 2000 bytes"},
           Case{R"({"param": {}})", "invalid_argument",
                "body: unknown field 'param'; accepted: params, idempotency_key, note"},
           Case{R"([])", "invalid_argument", "body must be a JSON object"},
           Case{R"("x")", "invalid_argument", "body must be a JSON object"},
       }) {
    INFO(c.body);
    auto r = client->Post("/api/v1/pipelines/ml/runs", AsOperator(), c.body, "application/json");
    CHECK(r->status == 400);
    CHECK(Body(r) == ErrorBody(c.code, c.message));
  }
  CHECK(server.service.Calls().empty());
}
