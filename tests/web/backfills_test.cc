#include "tests/web/harness.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

namespace {

scheduler::BackfillRecord SampleBackfill() {
  scheduler::BackfillRecord b;
  b.id = 4;
  b.pipeline = "ml";
  b.from = At(kT0);
  b.to = At(kT0) + std::chrono::hours(2);
  b.max_active_runs = 2;
  b.created_by = "operator";
  b.created_at = At(kT0 + 5);
  b.total = 3;
  b.running = 1;
  b.succeeded = 2;
  return b;
}

json SampleBackfillJson() {
  return {
      {"id", 4},
      {"pipeline", "ml"},
      {"from", "2026-11-29T01:51:15.000Z"},
      {"to", "2026-11-29T03:51:15.000Z"},
      {"max_active_runs", 2},
      {"state", "running"},
      {"total", 3},
      {"done", 2},
      {"runs", {{"queued", 0}, {"running", 1}, {"success", 2}, {"failed", 0}, {"cancelled", 0}}},
      {"created_by", "operator"},
      {"created_at", "2026-11-29T01:51:15.005Z"}};
}

}  // namespace

TEST_CASE("backfills are created, listed, read and cancelled") {
  TestServer server;
  server.service.backfill = SampleBackfill();
  auto client = server.Client();
  auto r = client->Post("/api/v1/pipelines/ml/backfills", AsOperator(),
                        R"({"from": "2026-11-29T01:51:15Z", "to": "2026-11-29T05:51:15+02:00",
                            "max_active_runs": 2})",
                        "application/json");
  REQUIRE(r);
  CHECK(r->status == 201);
  CHECK(r->get_header_value("Location") == "/api/v1/backfills/4");
  json created = SampleBackfillJson();
  created["event_id"] = 0;
  CHECK(Body(r) == created);
  CHECK(Body(client->Get("/api/v1/pipelines/ml/backfills", AsViewer())) ==
        json{{"backfills", {SampleBackfillJson()}}});
  CHECK(Body(client->Get("/api/v1/backfills/4", AsViewer())) == SampleBackfillJson());
  auto cancelled = client->Post("/api/v1/backfills/4/cancel", AsOperator(), "", "application/json");
  REQUIRE(cancelled);
  CHECK(cancelled->status == 202);
  // Without max_active_runs the service picks the pipeline's.
  client->Post("/api/v1/pipelines/ml/backfills", AsOperator(),
               R"({"from": "2026-11-29T01:51:15Z", "to": "2026-11-29T01:51:15Z"})",
               "application/json");
  CHECK(server.service.Calls() ==
        std::vector<std::string>{
            "CreateBackfill ml 2026-11-29T01:51:15Z 2026-11-29T03:51:15Z 2 ops", "ListBackfills ml",
            "GetBackfill 4", "CancelBackfill 4 ops",
            "CreateBackfill ml 2026-11-29T01:51:15Z 2026-11-29T01:51:15Z - ops"});
}

TEST_CASE("bad backfill requests get 400 naming the field") {
  TestServer server;
  auto client = server.Client();
  struct Case {
    std::string body;
    std::string message;
  };
  for (
      const Case& c : {
          Case{R"({"to": "2026-11-29T01:51:15Z"})",
               "'from' is required: an RFC 3339 instant such as \"2026-11-01T00:00:00Z\""},
          Case{R"({"from": "yesterday", "to": "2026-11-29T01:51:15Z"})", "'from': "},
          Case{R"({"from": "2026-11-29T01:51:15Z", "to": 5})",
               "'to' must be a string: an RFC 3339 instant such as \"2026-11-01T00:00:00Z\""},
          Case{
              R"({"from": "2026-11-29T01:51:15Z", "to": "2026-11-29T01:51:15Z", "max_active_runs": 0})",
              "'max_active_runs' must be an integer from 1 to 1000"},
          Case{R"({"from": "2026-11-29T01:51:15Z", "to": "2026-11-29T01:51:15Z", "extra": 1})",
               "body: unknown field 'extra'; accepted: from, to, max_active_runs"},
      }) {
    auto r =
        client->Post("/api/v1/pipelines/ml/backfills", AsOperator(), c.body, "application/json");
    REQUIRE(r);
    INFO(c.body << " -> " << r->body);
    CHECK(r->status == 400);
    CHECK(Body(r)["error"]["message"].get<std::string>().rfind(c.message, 0) == 0);
  }
  CHECK(client->Get("/api/v1/backfills/zero", AsViewer())->status == 400);
  CHECK(client->Post("/api/v1/backfills/1/cancel", AsViewer(), "", "application/json")->status ==
        403);
  server.service.errors["GetBackfill"] =
      Status::Error(ErrorCode::kNotFound, "backfill 9 not found");
  auto missing = client->Get("/api/v1/backfills/9", AsViewer());
  CHECK(missing->status == 404);
  CHECK(server.service.Calls() == std::vector<std::string>{"GetBackfill 9"});
}
