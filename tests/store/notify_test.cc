// Database's notification outbox: queued once per (run, event, subject, webhook), claimed with a
// lease that keeps a second claimer off, finished with a run event; runs past their SLA marked
// once.
#include "tests/store/run_fixtures.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;
using Rows = std::vector<std::string>;

TEST_CASE("a notification is queued once, claimed by one claimer, and finished with an event") {
  TestDatabase t;
  auto db = t.Open();
  auto other = t.Open();
  const RunId run = FailedRun(*db);
  const std::vector<NotificationHook> hooks = {{"http://a/{{ secrets.x }}", "json"},
                                               {"http://b/", "slack"}};
  CHECK(db->QueueNotifications(run, "failed", "", hooks).value() == 2);
  CHECK(db->QueueNotifications(run, "failed", "", hooks).value() == 0);  // once
  CHECK(db->QueueNotifications(run, "retry", "train#1", {hooks[0]}).value() == 1);

  auto claimed = db->ClaimNotifications(std::chrono::seconds(60), 10);
  REQUIRE(claimed.ok());
  REQUIRE(claimed->size() == 3);
  // The lease keeps another daemon off them.
  CHECK(other->ClaimNotifications(std::chrono::seconds(60), 10)->empty());
  const DueNotification& first = (*claimed)[0];
  CHECK(first.run == run);
  CHECK(first.pipeline == "train");
  CHECK(first.tries == 1);
  CHECK(first.run_json ==
        R"({"failed_tasks":[{"exit_code":3,"state":"failed","task":"train"},{"exit_code":null,)"
        R"("state":"upstream_failed","task":"evaluate"}],"id":)" +
            std::to_string(Value(run)) +
            R"(,"logical_date":"2026-11-29T00:00:00Z","params":{},"state":"failed"})");
  // A failed try to be retried at once, one delivered, one given up.
  REQUIRE(db->FinishNotification((*claimed)[0], false, At(0), R"({"outcome":"retrying"})").ok());
  REQUIRE(
      db->FinishNotification((*claimed)[1], true, std::nullopt, R"({"outcome":"delivered"})").ok());
  REQUIRE(
      db->FinishNotification((*claimed)[2], false, std::nullopt, R"({"outcome":"gave_up"})").ok());
  CHECK(t.Rows("SELECT event || ':' || webhook || ':' || state || ':' || tries FROM "
               "notifications ORDER BY id") == Rows{"failed:http://a/{{ secrets.x }}:pending:1",
                                                    "failed:http://b/:delivered:1",
                                                    "retry:http://a/{{ secrets.x }}:failed:1"});
  CHECK(t.Rows("SELECT detail->>'outcome' FROM events WHERE kind = 'notification' ORDER BY id") ==
        Rows{"retrying", "delivered", "gave_up"});
  // Due again: the second try.
  auto again = other->ClaimNotifications(std::chrono::seconds(60), 10);
  REQUIRE(again->size() == 1);
  CHECK((*again)[0].tries == 2);
  CHECK(db->NextNotificationDue().value().has_value());
}

TEST_CASE("a run past its SLA is found and marked once, an ended one never") {
  TestDatabase t;
  auto db = t.Open();
  const RunId running = RunningRun(*db);  // logical date 2026-11-29
  const RunId ended = FailedRun(*db);
  // Created just now, of an old date (a backfill): the SLA counts from its creation.
  auto fresh = db->ScanSla("train", std::chrono::hours(2));
  REQUIRE(fresh.ok());
  CHECK(fresh->past.empty());
  REQUIRE(fresh->next.has_value());
  CHECK(*fresh->next > kiln::NowUtc() + std::chrono::minutes(119));
  // Created on its date: long past.
  t.Rows("UPDATE runs SET created_at = logical_date");
  auto scan = db->ScanSla("train", std::chrono::hours(2));
  REQUIRE(scan.ok());
  CHECK(scan->past == std::vector<RunId>{running});
  CHECK_FALSE(scan->next.has_value());
  const std::vector<NotificationHook> hooks = {{"http://a/", "json"}};
  CHECK(db->MarkSlaMissed(running, std::chrono::hours(2), hooks).value());
  CHECK_FALSE(db->MarkSlaMissed(running, std::chrono::hours(2), hooks).value());  // once
  CHECK_FALSE(db->MarkSlaMissed(ended, std::chrono::hours(2), hooks).value());
  CHECK(db->ScanSla("train", std::chrono::hours(2))->past.empty());
  CHECK(t.Rows("SELECT run_id || ':' || (detail->>'sla') FROM events WHERE kind = 'sla_missed'") ==
        Rows{std::to_string(Value(running)) + ":2h"});
  CHECK(t.Rows("SELECT event FROM notifications") == Rows{"sla_missed"});
  // A marked run is not looked at again, whatever the SLA; one still to come is when to look next.
  CHECK_FALSE(db->ScanSla("train", std::chrono::hours(24 * 365 * 20))->next.has_value());
  const RunId other = RunningRun(*db);
  t.Rows("UPDATE runs SET created_at = logical_date WHERE id = " + std::to_string(Value(other)));
  auto later = db->ScanSla("train", std::chrono::hours(24 * 365 * 20));
  REQUIRE(later->next.has_value());
  CHECK(*later->next == At(0) + std::chrono::hours(24 * 365 * 20));
}

TEST_CASE("a run whose SLA falls due while it is scanned is past or still to come, never neither") {
  TestDatabase t;
  auto db = t.Open();
  RunningRun(*db);
  // Due soon; scanned back to back until it is past. Each scan sees the run on one side of its
  // due time: a scan whose statements straddled it lost the run for good (the notifier slept
  // with nothing to wake it). A machine so busy that the first scan already came after the due
  // time proves nothing: the run is then made due again, twice as far ahead.
  int scans = 0;
  for (int ahead_ms = 30; scans < 2 && ahead_ms < 30 * 256; ahead_ms *= 2) {
    t.Rows("UPDATE runs SET created_at = clock_timestamp() + interval '" +
           std::to_string(ahead_ms - 1) + " milliseconds'");
    scans = 0;
    while (true) {
      auto scan = db->ScanSla("train", std::chrono::milliseconds(1));
      REQUIRE(scan.ok());
      ++scans;
      if (!scan->past.empty()) {
        CHECK_FALSE(scan->next.has_value());
        break;
      }
      REQUIRE(scan->next.has_value());
      REQUIRE(scans < 1000000);
    }
  }
  CHECK(scans > 1);
}
