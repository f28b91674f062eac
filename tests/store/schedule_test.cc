// Database::FireSchedule: cursors, skipped fires, and scheduled runs created exactly once, also
// when two daemons check the same pipeline at once or a check dies halfway.
#include <atomic>
#include <thread>

#include "tests/store/test_support.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;

namespace {

using Rows = std::vector<std::string>;

const std::string kSource = "[pipeline]\nname = \"hourly\"\n";
const Instant kNoon = Instant(std::chrono::hours(24 * 20786 + 12));  // 2026-11-29T12:00:00Z

NewRun Scheduled(Instant logical, Instant start) {
  NewRun run;
  run.pipeline = "hourly";
  run.version_hash = "v1";
  run.source = kSource;
  run.trigger = "schedule";
  run.logical_date = logical;
  run.data_interval_start = start;
  run.data_interval_end = logical;
  run.created_by = "schedule";
  run.tasks = {{"a", "default", 0}};
  return run;
}

// The next hour after the cursor, as one run (a stand-in for the fire planner).
FireDecision NextHour(const ScheduleState& state) {
  FireDecision d;
  Instant cursor = state.cursor.value_or(kNoon);
  Instant next = cursor + std::chrono::hours(1);
  d.runs.push_back(Scheduled(next, cursor));
  d.cursor = next;
  return d;
}

}  // namespace

TEST_CASE("a schedule's cursor, skipped fires and runs are kept per pipeline") {
  TestDatabase t;
  auto db = t.Open();
  // First sight: no cursor; the decision sets it.
  auto first = db->FireSchedule("hourly", "v1", kSource, [](const ScheduleState& s) {
    CHECK_FALSE(s.cursor);
    CHECK(s.fires_skipped == 0);
    CHECK_FALSE(s.paused);
    CHECK(s.active.empty());
    FireDecision d;
    d.cursor = kNoon;
    return d;
  });
  REQUIRE(first.ok());
  CHECK(first->runs.empty());
  // Two fires skipped, one run.
  auto second = db->FireSchedule("hourly", "v1", kSource, [](const ScheduleState& s) {
    CHECK(s.cursor == kNoon);
    FireDecision d;
    d.runs.push_back(Scheduled(kNoon + std::chrono::hours(3), kNoon + std::chrono::hours(2)));
    d.cursor = kNoon + std::chrono::hours(3);
    d.skipped = 2;
    d.skipped_details.push_back(R"({"reason": "catchup", "count": 2})");
    return d;
  });
  REQUIRE(second.ok());
  REQUIRE(second->runs.size() == 1);
  CHECK_FALSE(second->runs[0].existing);
  CHECK(t.Rows("SELECT trigger, logical_date, data_interval_start, state FROM runs") ==
        Rows{"schedule|2026-11-29 15:00:00+00|2026-11-29 14:00:00+00|queued"});
  CHECK(t.Rows("SELECT pipeline, kind, actor, detail::text FROM events WHERE run_id IS NULL") ==
        Rows{R"(hourly|fire_skipped|schedule|{"count": 2, "reason": "catchup"})"});
  auto states = db->ScheduleStates();
  REQUIRE(states.ok());
  REQUIRE(states->count("hourly") == 1);
  CHECK(states->at("hourly").cursor == kNoon + std::chrono::hours(3));
  CHECK(states->at("hourly").fires_skipped == 2);
  // The run is active; creating the same logical date again returns it.
  auto again = db->FireSchedule("hourly", "v1", kSource, [](const ScheduleState& s) {
    CHECK(s.active.size() == 1);
    FireDecision d;
    d.runs.push_back(Scheduled(kNoon + std::chrono::hours(3), kNoon + std::chrono::hours(2)));
    d.cursor = kNoon + std::chrono::hours(1);  // behind: the cursor never moves back
    return d;
  });
  REQUIRE(again.ok());
  CHECK(again->runs[0].existing);
  CHECK(again->runs[0].id == second->runs[0].id);
  CHECK(t.One("SELECT count(*) FROM runs") == "1");
  CHECK(t.One("SELECT fire_cursor FROM pipelines") == "2026-11-29 15:00:00+00");
  // A pipeline row made for its schedule has no pause state: the file's applies.
  auto paused = db->PausedPipelines();
  REQUIRE(paused.ok());
  CHECK(paused->empty());
}

TEST_CASE("two daemons checking one pipeline at once create each fire once") {
  TestDatabase t;
  auto a = t.Open();
  auto b = t.Open();
  constexpr int kChecks = 40;
  std::atomic<int> failures{0};
  auto checker = [&](Database& db) {
    for (int i = 0; i < kChecks; ++i) {
      if (!db.FireSchedule("hourly", "v1", kSource, NextHour).ok()) ++failures;
    }
  };
  std::thread ta(checker, std::ref(*a));
  std::thread tb(checker, std::ref(*b));
  ta.join();
  tb.join();
  CHECK(failures == 0);
  // Every check saw the cursor the one before moved: 80 consecutive hours, none twice.
  CHECK(t.One("SELECT count(*) FROM runs") == std::to_string(2 * kChecks));
  CHECK(t.One("SELECT count(DISTINCT logical_date) FROM runs") == std::to_string(2 * kChecks));
  CHECK(t.One("SELECT max(logical_date) - min(logical_date) FROM runs") == "3 days 07:00:00");
}

TEST_CASE("a check that dies halfway leaves nothing, the next one creates every run once") {
  TestDatabase t;
  auto db = t.Open();
  REQUIRE(db->FireSchedule("hourly", "v1", kSource, [](const ScheduleState&) {
              FireDecision d;
              d.cursor = kNoon;
              return d;
            }).ok());
  // Catch-up of three hours; the connection is killed while the decision is being made (as if
  // the daemon died in the middle of its catch-up).
  auto catchup = [](const ScheduleState& s) {
    FireDecision d;
    for (int h = 1; h <= 3; ++h) {
      d.runs.push_back(
          Scheduled(*s.cursor + std::chrono::hours(h), *s.cursor + std::chrono::hours(h - 1)));
    }
    d.cursor = *s.cursor + std::chrono::hours(3);
    return d;
  };
  auto dying = db->FireSchedule("hourly", "v1", kSource, [&](const ScheduleState& s) {
    // Every other connection to this database: only `db`'s.
    t.Rows(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()");
    return catchup(s);
  });
  CHECK_FALSE(dying.ok());
  CHECK(t.One("SELECT count(*) FROM runs") == "0");
  CHECK(t.One("SELECT fire_cursor FROM pipelines") == "2026-11-29 12:00:00+00");
  auto fresh = t.Open();
  auto done = fresh->FireSchedule("hourly", "v1", kSource, catchup);
  REQUIRE(done.ok());
  CHECK(done->runs.size() == 3);
  CHECK(t.Rows("SELECT logical_date FROM runs ORDER BY id") ==
        Rows{"2026-11-29 13:00:00+00", "2026-11-29 14:00:00+00", "2026-11-29 15:00:00+00"});
  CHECK(t.One("SELECT fire_cursor FROM pipelines") == "2026-11-29 15:00:00+00");
}

TEST_CASE("a backfill's runs, progress and cancellation") {
  TestDatabase t;
  auto db = t.Open();
  NewBackfill b;
  b.pipeline = "hourly";
  b.from = kNoon;
  b.to = kNoon + std::chrono::hours(2);
  b.max_active_runs = 2;
  b.created_by = "ops";
  std::vector<NewRun> runs;
  for (int h = 0; h <= 2; ++h) {
    NewRun run = Scheduled(kNoon + std::chrono::hours(h), kNoon + std::chrono::hours(h - 1));
    run.trigger = "backfill";
    runs.push_back(run);
  }
  auto made = db->CreateBackfill(b, runs);
  REQUIRE(made.ok());
  const int64_t* id = &made->first;
  CHECK(t.One("SELECT kind FROM events WHERE id = " + std::to_string(made->second)) ==
        "backfill_created");
  CHECK(t.Rows("SELECT trigger, backfill_id, logical_date FROM runs ORDER BY id") ==
        Rows{"backfill|" + std::to_string(*id) + "|2026-11-29 12:00:00+00",
             "backfill|" + std::to_string(*id) + "|2026-11-29 13:00:00+00",
             "backfill|" + std::to_string(*id) + "|2026-11-29 14:00:00+00"});
  auto got = db->GetBackfill(*id);
  REQUIRE(got.ok());
  CHECK(got->total == 3);
  CHECK(got->queued == 3);
  CHECK(got->done() == 0);
  CHECK(got->state() == "running");
  CHECK(got->max_active_runs == 2);
  CHECK(got->from == kNoon);
  auto run = db->GetRun(RunId(std::stoll(t.One("SELECT min(id) FROM runs"))));
  REQUIRE(run.ok());
  CHECK(run->backfill == *id);
  // Backfill runs are not among the active runs a schedule's overlap policy counts.
  REQUIRE(db->FireSchedule("hourly", "v1", kSource, [](const ScheduleState& s) {
              CHECK(s.active.empty());
              return FireDecision{};
            }).ok());
  auto cancelled = db->CancelBackfill(*id, "ops");
  REQUIRE(cancelled.ok());
  CHECK(cancelled->size() == 3);
  for (RunId r : *cancelled) REQUIRE(db->CancelOrphanedRun(r, "ops", "backfill cancelled").ok());
  got = db->GetBackfill(*id);
  CHECK(got->state() == "cancelled");
  CHECK(got->cancelled == 3);
  auto again = db->CancelBackfill(*id, "ops");
  REQUIRE_FALSE(again.ok());
  CHECK(again.message() == "backfill " + std::to_string(*id) + " has already ended (cancelled)");
  CHECK(db->GetBackfill(999).status().code() == ErrorCode::kNotFound);
  auto list = db->ListBackfills("hourly", 10);
  REQUIRE(list.ok());
  CHECK(list->size() == 1);
}

TEST_CASE("a queued run is claimed by one daemon only") {
  TestDatabase t;
  auto db = t.Open();
  auto created = db->CreateRun(Scheduled(kNoon, kNoon - std::chrono::hours(1)));
  REQUIRE(created.ok());
  const RunId run = created->id;
  CHECK(db->ClaimRun(run, "host:/a").value());
  CHECK(db->ClaimRun(run, "host:/a").value());  // its own claim again (a restart)
  CHECK_FALSE(db->ClaimRun(run, "host:/b").value());
  CHECK(t.One("SELECT lease_owner FROM runs") == "host:/a");
  // Created with an owner: only that daemon may start it.
  NewRun owned = Scheduled(kNoon + std::chrono::hours(1), kNoon);
  owned.lease_owner = "host:/b";
  auto second = db->CreateRun(owned);
  REQUIRE(second.ok());
  CHECK_FALSE(db->ClaimRun(second->id, "host:/a").value());
  CHECK(db->ClaimRun(second->id, "host:/b").value());
  // A run that is not queued cannot be claimed.
  REQUIRE(db->CancelOrphanedRun(second->id, "ops", "no").ok());
  CHECK_FALSE(db->ClaimRun(second->id, "host:/b").value());
}
