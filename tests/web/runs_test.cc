#include "tests/web/harness.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

TEST_CASE("runs are listed a page at a time with their filters") {
  TestServer server;
  server.service.run_page.runs = {SampleRun(12)};
  server.service.run_page.next = RunId{12};
  auto client = server.Client();
  auto r = client->Get(
      "/api/v1/runs?pipeline=ml&state=failed&created_after=2026-11-29T01:51:15.250Z"
      "&created_before=2026-11-29T03:51:15%2B02:00&backfill=4&limit=10&cursor=41",
      AsViewer());
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(Body(r) == json{{"runs", {SampleRunJson(false)}}, {"next_cursor", "12"}});
  auto f = server.service.LastRunFilter();
  CHECK(f.pipeline == "ml");
  CHECK(f.state == dag::RunState::kFailed);
  CHECK(f.created_after == At(kT0 + 250));
  CHECK(f.created_before == At(kT0));
  CHECK(f.limit == 10);
  CHECK(f.before == RunId{41});
  CHECK(f.backfill == 4);

  server.service.run_page = {};
  CHECK(Body(client->Get("/api/v1/runs", AsViewer())) ==
        json{{"runs", json::array()}, {"next_cursor", nullptr}});
  f = server.service.LastRunFilter();
  CHECK_FALSE(f.pipeline);
  CHECK_FALSE(f.state);
  CHECK_FALSE(f.created_after);
  CHECK_FALSE(f.created_before);
  CHECK_FALSE(f.before);
  CHECK_FALSE(f.backfill);
  CHECK(f.limit == 50);
}

TEST_CASE("page sizes over 100 mean 100") {
  TestServer server;
  auto client = server.Client();
  for (std::string limit : {"100", "101", "1000", "99999999999999999999"}) {
    INFO(limit);
    CHECK(client->Get(("/api/v1/runs?limit=" + limit).c_str(), AsViewer())->status == 200);
    CHECK(server.service.LastRunFilter().limit == 100);
  }
  CHECK(client->Get("/api/v1/runs?limit=1", AsViewer())->status == 200);
  CHECK(server.service.LastRunFilter().limit == 1);
}

TEST_CASE("every query value of the run listing is checked, naming it") {
  TestServer server;
  auto client = server.Client();
  struct Case {
    std::string query, message;
  };
  for (const auto& c : {
           Case{"limit=0",
                "query parameter 'limit': must be a whole number of 1 or more (above 100 means "
                "100), not '0'"},
           Case{"limit=-5",
                "query parameter 'limit': must be a whole number of 1 or more (above 100 means "
                "100), not '-5'"},
           Case{"limit=ten",
                "query parameter 'limit': must be a whole number of 1 or more (above 100 means "
                "100), not 'ten'"},
           Case{"limit=",
                "query parameter 'limit': must be a whole number of 1 or more (above 100 means "
                "100), not ''"},
           Case{"state=done",
                "query parameter 'state': must be queued, running, success, failed or "
                "cancelled, not 'done'"},
           Case{"pipeline=ML",
                "query parameter 'pipeline': pipeline name 'ML' must match "
                "^[a-z0-9][a-z0-9_.-]{0,63}$"},
           Case{"cursor=0",
                "query parameter 'cursor': must be a next_cursor from an earlier page, not '0'"},
           Case{"cursor=-1",
                "query parameter 'cursor': must be a next_cursor from an earlier page, not '-1'"},
           Case{"cursor=99999999999999999999",
                "query parameter 'cursor': must be a next_cursor from an earlier page, not "
                "'99999999999999999999'"},
           Case{"created_after=yesterday",
                "query parameter 'created_after': invalid time \"yesterday\": date must be "
                "YYYY-MM-DD; expected RFC 3339, e.g. \"2026-11-29T04:10:45Z\""},
           Case{"created_before=2026-11-29T03:51:15%2002:00",  // how an unencoded '+' arrives
                "query parameter 'created_before': invalid time \"2026-11-29T03:51:15 02:00\": "
                "time zone missing (Z or +HH:MM); expected RFC 3339, e.g. "
                "\"2026-11-29T04:10:45Z\" (write '+' as %2B in a URL)"},
           Case{"page=2",
                "query parameter 'page': unknown; accepted: pipeline, state, "
                "created_after, created_before, backfill, limit, cursor"},
           Case{"backfill=x",
                "query parameter 'backfill': must be a backfill id (a positive integer), not "
                "'x'"},
           Case{"limit=5&limit=6", "query parameter 'limit': given more than once"},
       }) {
    INFO(c.query);
    auto r = client->Get(("/api/v1/runs?" + c.query).c_str(), AsViewer());
    CHECK(r->status == 400);
    CHECK(Body(r) == ErrorBody("invalid_argument", c.message));
  }
  CHECK(server.service.Calls().empty());
}

TEST_CASE("a run is shown with its tasks") {
  TestServer server;
  server.service.runs[12] = SampleRun();
  server.service.runs[12].idempotency_key = "k1";
  server.service.runs[12].tasks[1].retry_at = At(kT0 + 60000);
  server.service.runs[12].tasks[1].signal = 9;
  auto client = server.Client();
  json expected = SampleRunJson();
  expected["idempotency_key"] = "k1";
  expected["tasks"][1]["retry_at"] = "2026-11-29T01:52:15.000Z";
  expected["tasks"][1]["signal"] = 9;
  CHECK(Body(client->Get("/api/v1/runs/12", AsViewer())) == expected);
  auto missing = client->Get("/api/v1/runs/13", AsViewer());
  CHECK(missing->status == 404);
  CHECK(Body(missing) == ErrorBody("not_found", "no run 13"));
}

TEST_CASE("a run's decisions are listed oldest first, for a viewer") {
  TestServer server;
  scheduler::DecisionRecord d;
  d.event_id = 40;
  d.task_id = "approve";
  d.at = At(kT0 + 250);
  d.decision = "rejected";
  d.by = "timeout";
  server.service.decisions.push_back(d);
  d.event_id = 57;
  d.decision = "approved";
  d.by = "ops";
  d.note = "metrics look right";
  server.service.decisions.push_back(d);
  auto client = server.Client();
  auto r = client->Get("/api/v1/runs/12/decisions", AsViewer());
  CHECK(r->status == 200);
  CHECK(Body(r) == json{{"decisions",
                         {{{"task", "approve"},
                           {"decision", "rejected"},
                           {"by", "timeout"},
                           {"note", ""},
                           {"at", "2026-11-29T01:51:15.250Z"},
                           {"event_id", 40}},
                          {{"task", "approve"},
                           {"decision", "approved"},
                           {"by", "ops"},
                           {"note", "metrics look right"},
                           {"at", "2026-11-29T01:51:15.250Z"},
                           {"event_id", 57}}}}});
  CHECK(server.service.Calls() == std::vector<std::string>{"ListDecisions 12"});
  server.service.errors["ListDecisions"] = Status::Error(ErrorCode::kNotFound, "run 13 not found");
  auto missing = client->Get("/api/v1/runs/13/decisions", AsViewer());
  CHECK(missing->status == 404);
  CHECK(Body(missing) == ErrorBody("not_found", "run 13 not found"));
  auto bad = client->Get("/api/v1/runs/x/decisions", AsViewer());
  CHECK(bad->status == 400);
}

TEST_CASE("cancel answers 202 with the run") {
  TestServer server;
  server.service.runs[12] = SampleRun();
  auto client = server.Client();
  auto r = client->Post("/api/v1/runs/12/cancel", AsOperator(), "", "application/json");
  CHECK(r->status == 202);
  CHECK(Body(r) == SampleRunJson());
  CHECK(server.service.Calls() == std::vector<std::string>{"CancelRun 12 ops", "GetRun 12"});
  server.service.errors["CancelRun"] =
      Status::Error(ErrorCode::kConflict, "run 12 has already ended (success)");
  auto ended = client->Post("/api/v1/runs/12/cancel", AsOperator(), "", "application/json");
  CHECK(ended->status == 409);
  CHECK(Body(ended) == ErrorBody("conflict", "run 12 has already ended (success)"));
}

TEST_CASE("retry takes a mode or a task, exactly one") {
  TestServer server;
  server.service.runs[12] = SampleRun();
  auto client = server.Client();
  server.service.retry_result.event_id = 4321;
  json expected = {{"run", SampleRunJson()}, {"tasks", {"train", "evaluate"}}, {"event_id", 4321}};
  auto failed = client->Post("/api/v1/runs/12/retry", AsOperator(), R"({"mode":"failed"})",
                             "application/json");
  CHECK(failed->status == 200);
  CHECK(Body(failed) == expected);
  auto from =
      client->Post("/api/v1/runs/12/retry", AsAdmin(), R"({"from":"train"})", "application/json");
  CHECK(from->status == 200);
  CHECK(server.service.Calls() == std::vector<std::string>{"RetryRun 12 failed ops", "GetRun 12",
                                                           "RetryRun 12 from=train root",
                                                           "GetRun 12"});
  std::string either = "body must be {\"mode\": \"failed\"} or {\"from\": \"<task>\"}";
  struct Case {
    std::string body, message;
  };
  for (const auto& c :
       {Case{"", either}, Case{"{}", either}, Case{R"({"mode":"failed","from":"train"})", either},
        Case{R"({"mode":"all"})", "'mode' must be \"failed\""},
        Case{R"({"mode":1})", "'mode' must be \"failed\""},
        Case{R"({"from":7})", "'from' must be a task id"},
        Case{R"({"from":"Train"})",
             "'from': task id 'Train' must match ^[a-z0-9][a-z0-9_-]{0,63}$, or name an instance: "
             "train[3]"},
        Case{R"({"mode":"failed","force":true})",
             "body: unknown field 'force'; accepted: mode, from"}}) {
    INFO(c.body);
    auto r = client->Post("/api/v1/runs/12/retry", AsOperator(), c.body, "application/json");
    CHECK(r->status == 400);
    CHECK(Body(r) == ErrorBody("invalid_argument", c.message));
  }
  server.service.errors["RetryRun"] = Status::Error(ErrorCode::kConflict, "run 12 is still active");
  auto active = client->Post("/api/v1/runs/12/retry", AsOperator(), R"({"mode":"failed"})",
                             "application/json");
  CHECK(active->status == 409);
}

TEST_CASE("an admin marks a task's state") {
  TestServer server;
  server.service.runs[12] = SampleRun();
  auto client = server.Client();
  auto r = client->Post("/api/v1/runs/12/tasks/train/mark", AsAdmin(),
                        R"({"state": "success", "reason": "checked by hand"})", "application/json");
  CHECK(r->status == 200);
  CHECK(Body(r) == SampleRunJson());
  auto failed = client->Post("/api/v1/runs/12/tasks/train/mark", AsAdmin(),
                             R"({"state": "failed"})", "application/json");
  CHECK(failed->status == 200);
  CHECK(server.service.Calls() ==
        std::vector<std::string>{"MarkTask 12 train success checked by hand root", "GetRun 12",
                                 "MarkTask 12 train failed  root", "GetRun 12"});
  for (std::string body :
       {R"({"state": "running"})", R"({"reason": "x"})", "", R"({"state": 1})"}) {
    INFO(body);
    auto bad =
        client->Post("/api/v1/runs/12/tasks/train/mark", AsAdmin(), body, "application/json");
    CHECK(bad->status == 400);
    CHECK(Body(bad) == ErrorBody("invalid_argument", "'state' must be \"success\" or \"failed\""));
  }
  auto reason = client->Post("/api/v1/runs/12/tasks/train/mark", AsAdmin(),
                             R"({"state": "failed", "reason": 5})", "application/json");
  CHECK(Body(reason) ==
        ErrorBody("invalid_argument", "'reason' must be a string of at most 2000 bytes"));
  server.service.errors["MarkTask"] = Status::Error(ErrorCode::kNotFound, "run 12 has no task 'x'");
  auto unknown = client->Post("/api/v1/runs/12/tasks/x/mark", AsAdmin(), R"({"state": "failed"})",
                              "application/json");
  CHECK(unknown->status == 404);
}
