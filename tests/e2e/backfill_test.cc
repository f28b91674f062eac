// Backfills through a real daemon, from the CLI and the API: every fire of a range, oldest
// first under their own limit, progress, cancellation, scheduled runs never held back.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

TEST_CASE("a backfill from the CLI runs every fire of the range, oldest first, one at a time") {
  TempDir dir;
  const std::string name = Unique("bf");
  WriteFile(dir / "pipelines/bf.toml",
            "[pipeline]\nname = \"" + name +
                "\"\nschedule = \"0 */2 * * *\"\ntimezone = \"Europe/Berlin\"\n[tasks.t]\n"
                "command = \"echo {{ run.logical_date }} {{ run.data_interval_start }} "
                "$KILN_DATA_INTERVAL_END\"\n");
  Daemon daemon(dir, dir / "pipelines");
  const std::map<std::string, std::string> env = {
      {"KILN_SERVER", "http://127.0.0.1:" + std::to_string(daemon.port())},
      {"KILN_TOKEN", kOperatorToken}};
  // Berlin's fall-back night: 02:00 local happens twice and fires once.
  auto out = Kiln({"backfill", name, "--from", "2026-10-24T22:00:00Z", "--to",
                   "2026-10-25T04:00:00Z", "--max-active-runs", "1", "--wait"},
                  {}, env);
  INFO(out.err);
  CHECK(out.code == 0);
  const std::string id = Sql("select max(id) from backfills where pipeline = '" + name + "'");
  CHECK(out.out == "backfill " + id + " of " + name +
                       ": 3 runs for the fires from 2026-10-24T22:00:00.000Z to "
                       "2026-10-25T04:00:00.000Z, at most 1 at a time\nbackfill " +
                       id + " of " + name +
                       ": success, 3/3 runs done (3 succeeded, 0 failed, 0 cancelled, 0 running, "
                       "0 waiting)\n");
  // 00:00 +02:00, 02:00 +02:00 (the first of two), 04:00 +01:00 local; 06:00 +01:00 is 05:00Z,
  // after the range.
  CHECK(Sql("select string_agg(to_char(logical_date at time zone 'UTC', 'DD HH24:MI') || '<-' || "
            "to_char(data_interval_start at time zone 'UTC', 'DD HH24:MI'), ' ' order by id) "
            "from runs where backfill_id = " +
            id) == "24 22:00<-24 20:00 25 00:00<-24 22:00 25 03:00<-25 00:00");
  CHECK(Sql("select string_agg(trigger || ':' || state, ',') from runs where backfill_id = " +
            id) == "backfill:success,backfill:success,backfill:success");
  // Oldest first, one at a time: each started after the one before ended.
  CHECK(Sql("select count(*) from runs a join runs b on b.backfill_id = a.backfill_id and "
            "b.id = a.id + 1 where a.backfill_id = " +
            id + " and b.started_at < a.ended_at") == "0");
  const std::string second = Sql("select min(id) + 1 from runs where backfill_id = " + id);
  auto log = daemon.Client(kViewerToken)
                 .Get(("/api/v1/runs/" + second + "/tasks/t/attempts/1/log").c_str());
  REQUIRE(log);
  CHECK(log->body == "2026-10-25T00:00:00Z 2026-10-24T22:00:00Z 2026-10-25T00:00:00Z\n");
  json listed = Body(daemon.Client(kViewerToken).Get(("/api/v1/runs?backfill=" + id).c_str()));
  REQUIRE(listed["runs"].size() == 3);
  CHECK(listed["runs"][0]["logical_date"] == "2026-10-25T03:00:00.000Z");
  CHECK(listed["runs"][0]["backfill"] == std::stoll(id));
  auto status = Kiln({"backfill", "--status", id, "--output", "json"}, {}, env);
  CHECK(json::parse(status.out)["done"] == 3);
}

TEST_CASE("a backfill never holds back scheduled runs, shows its progress and can be cancelled") {
  TempDir dir;
  const std::string name = Unique("bf-slow");
  const std::string release = (dir / "release").string();
  // Runs for November 2025 (the backfill) wait for the release file; scheduled ones do not.
  WriteFile(dir / "pipelines/slow.toml",
            "[pipeline]\nname = \"" + name +
                "\"\nschedule = \"every 1s\"\nmax_active_runs = 1\n[tasks.t]\ncommand = \"case "
                "{{ run.logical_date }} in 2025-11-*) while [ ! -e " +
                release + " ]; do sleep 0.02; done;; esac\"\n");
  DaemonOptions options(dir / "pipelines");
  options.extra_config = "[executor]\nkill_grace = \"1s\"\n";
  Daemon daemon(dir, options);
  auto op = daemon.Client(kOperatorToken);
  auto created = op.Post(("/api/v1/pipelines/" + name + "/backfills").c_str(),
                         R"({"from": "2025-11-01T00:00:00Z", "to": "2025-11-01T00:00:02Z",
                             "max_active_runs": 1})",
                         kJson);
  REQUIRE(created);
  CHECK(created->status == 201);
  json b = json::parse(created->body);
  const int64_t id = b["id"];
  CHECK(b["total"] == 3);
  CHECK(b["state"] == "running");
  // While the first backfill run is blocked, scheduled runs go on.
  int scheduled = 0;
  ReadEvents(
      daemon, "pipeline=" + name,
      [&](const json& e) {
        return e["kind"] == "run_state" && e["to"] == "success" && ++scheduled == 2;
      },
      b["event_id"]);
  json progress = Body(op.Get(("/api/v1/backfills/" + std::to_string(id)).c_str()));
  CHECK(progress["runs"]["running"] == 1);
  CHECK(progress["runs"]["queued"] == 2);
  CHECK(progress["done"] == 0);
  json listed = Body(op.Get(("/api/v1/pipelines/" + name + "/backfills").c_str()));
  CHECK(listed["backfills"][0]["id"] == id);

  auto cancel = op.Post(("/api/v1/backfills/" + std::to_string(id) + "/cancel").c_str(), "", kJson);
  REQUIRE(cancel);
  CHECK(cancel->status == 202);
  int ended = 0;
  ReadEvents(
      daemon, "pipeline=" + name,
      [&](const json& e) {
        return e["kind"] == "run_state" && e["to"] == "cancelled" && ++ended == 3;
      },
      b["event_id"]);
  progress = Body(op.Get(("/api/v1/backfills/" + std::to_string(id)).c_str()));
  CHECK(progress["state"] == "cancelled");
  CHECK(progress["runs"]["cancelled"] == 3);
  // The two that waited never started.
  CHECK(Sql("select count(*) from runs where backfill_id = " + std::to_string(id) +
            " and started_at is null") == "2");
  auto again = op.Post(("/api/v1/backfills/" + std::to_string(id) + "/cancel").c_str(), "", kJson);
  CHECK(again->status == 409);

  // Bad ranges are explained.
  auto bad = [&](const std::string& pipeline, const std::string& body) {
    auto r = op.Post(("/api/v1/pipelines/" + pipeline + "/backfills").c_str(), body, kJson);
    REQUIRE(r);
    CHECK(r->status == 400);
    return Body(r)["error"]["message"].get<std::string>();
  };
  CHECK(bad(name, R"({"from": "2025-11-02T00:00:00Z", "to": "2025-11-01T00:00:00Z"})") ==
        "'from' (2025-11-02T00:00:00Z) is after 'to' (2025-11-01T00:00:00Z)");
  CHECK(bad(name, R"({"from": "2025-11-01T00:00:00.200Z", "to": "2025-11-01T00:00:00.300Z"})") ==
        "no fire of 'every 1s' (UTC) from 2025-11-01T00:00:00.200Z to 2025-11-01T00:00:00.300Z");
  CHECK(bad(name, R"({"from": "2025-11-01T00:00:00Z", "to": "2025-11-02T00:00:00Z"})") ==
        "the range holds more than 10000 fires of 'every 1s'; backfill a shorter range at a "
        "time");
  // The first fire's interval would start before the year 1, which no timestamp holds.
  CHECK(bad(name, R"({"from": "0001-01-01T00:00:00Z", "to": "0001-01-01T00:00:02Z"})") ==
        "the fire at 0001-01-01T00:00:00Z would have a data interval starting before the year "
        "0001; start the backfill later");
  CHECK(daemon.Stop() == 0);
}
