// Event ids become visible in id order, every event carries its pipeline, listeners wake on
// commits, and migration 2 upgrades a database of migration 1.
#include <functional>
#include <thread>

#include "store/event_listener.h"
#include "store/migrations.h"
#include "store/pq_internal.h"
#include "tests/store/run_fixtures.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;
using Rows = std::vector<std::string>;
using dag::RunState;
using dag::TaskState;

namespace {

// Waits until some session of this database waits for an advisory lock; false if none does.
bool AdvisoryWaiter(TestDatabase& t) {
  for (int i = 0; i < 2000; ++i) {
    if (t.One("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE "
              "d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted") ==
        "1") {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

struct Fixture {
  RunId failed{};
  RunId running{};
};

using Write = std::function<Status(Database&, const Fixture&)>;

template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.ok() ? Status::Ok() : r.status();
}

}  // namespace

TEST_CASE("every transaction that appends events waits for the earlier ones to commit") {
  const std::vector<std::pair<std::string, Write>> writers = {
      {"CreateRun",
       [](Database& db, const Fixture&) { return StatusOf(db.CreateRun(SimpleRun({"a"}))); }},
      {"CommitBatches",
       [](Database& db, const Fixture& f) {
         scheduler::Batch b;
         b.tasks.push_back(StartUpdate(f.running, "d", 1, At(9)));
         const scheduler::Batch* group[] = {&b};
         return StatusOf(db.CommitBatches(group, "host:1", std::chrono::minutes(1)));
       }},
      {"SetPaused",
       [](Database& db, const Fixture&) { return db.SetPaused("train", true, "ops"); }},
      {"RecordEvent",
       [](Database& db, const Fixture& f) {
         return db.RecordEvent("cancel_requested", f.running, "ops", "{}");
       }},
      {"PrepareRetry",
       [](Database& db, const Fixture& f) {
         const std::vector<std::string> tasks = {"train"};
         return StatusOf(db.PrepareRetry(f.failed, tasks, "ops"));
       }},
      {"MarkTaskInEndedRun",
       [](Database& db, const Fixture& f) {
         return StatusOf(
             db.MarkTaskInEndedRun(f.failed, "train", TaskState::kSuccess, "", "admin",
                                   [](const RunRecord&) { return RunState::kSuccess; }));
       }},
      {"CancelOrphanedRun",
       [](Database& db, const Fixture& f) {
         return StatusOf(db.CancelOrphanedRun(f.running, "host:2", "gone"));
       }},
  };
  for (const auto& [name, write] : writers) {
    INFO("writer: " << name);
    TestDatabase t;
    auto reader = t.Open();
    auto writer = t.Open();
    Fixture f{FailedRun(*reader), RunningRun(*reader)};
    const int64_t seen = *reader->LastEventId();

    // Another writer is in the middle of its transaction: it holds the lock and took an id.
    pqxx::connection other_conn(t.url());
    pqxx::work other(other_conn);
    other.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kEventOrderLock) + ")");
    const int64_t other_id =
        other.exec1("INSERT INTO events (at, kind) VALUES (now(), 'other') RETURNING id")[0]
            .as<int64_t>();

    Status status = Status::Error("not run");
    std::thread thread([&, &write = write] { status = write(*writer, f); });
    const bool waited = AdvisoryWaiter(t);
    // Nothing new is visible yet: had the writer committed a higher id now, a reader would skip
    // `other_id` when it commits.
    auto during = reader->ListEvents(Events(seen));
    other.commit();
    thread.join();
    CHECK(waited);
    REQUIRE(during.ok());
    CHECK(during->empty());
    REQUIRE(status.message() == "");

    auto after = reader->ListEvents(Events(seen));
    REQUIRE(after.ok());
    REQUIRE(after->size() >= 2);
    CHECK((*after)[0].id == other_id);
    CHECK((*after)[0].kind == "other");
    for (size_t i = 1; i < after->size(); ++i) CHECK((*after)[i].kind != "other");
  }
}

TEST_CASE("every event records its pipeline") {
  TestDatabase t;
  auto db = t.Open();
  const RunId failed = FailedRun(*db);
  NewRun etl = SimpleRun({"a"});
  etl.pipeline = "etl";
  const RunId other = CreateOrFail(*db, etl);
  scheduler::Batch b;
  b.runs.push_back({other, RunState::kRunning, At(1), ""});
  b.tasks.push_back(PlainUpdate(RunId(999), "x", TaskState::kQueued, At(1)));  // fenced
  const scheduler::Batch* group[] = {&b};
  REQUIRE(db->CommitBatches(group, "host:1", std::chrono::minutes(1)).ok());
  REQUIRE(db->SetPaused("etl", true, "ops").ok());
  CHECK(t.Rows("SELECT pipeline, run_id, kind, count(*) FROM events GROUP BY 1, 2, 3 ORDER BY 1, "
               "2, 3") ==
        Rows{"etl|" + ToString(other) + "|run_created|1", "etl|" + ToString(other) + "|run_state|1",
             "etl|NULL|pipeline_paused|1", "train|" + ToString(failed) + "|run_created|1",
             "train|" + ToString(failed) + "|run_state|2",
             "train|" + ToString(failed) + "|task_state|7", "NULL|999|fenced|1"});
}

TEST_CASE("an EventListener wakes when another connection commits events") {
  TestDatabase t;
  auto db = t.Open();
  auto listener = EventListener::Connect(t.url());
  REQUIRE(listener.ok());
  auto quiet = (*listener)->Wait(std::chrono::milliseconds(0));
  REQUIRE(quiet.ok());
  CHECK_FALSE(*quiet);

  const RunId run = CreateOrFail(*db, SimpleRun({"a"}));
  auto woken = (*listener)->Wait(std::chrono::seconds(60));
  REQUIRE(woken.ok());
  CHECK(*woken);
  // Consumed: the next wait has nothing.
  quiet = (*listener)->Wait(std::chrono::milliseconds(0));
  REQUIRE(quiet.ok());
  CHECK_FALSE(*quiet);

  // Committed between two waits: the next wait returns at once.
  REQUIRE(db->RecordEvent("cancel_requested", run, "ops", "{}").ok());
  REQUIRE(db->SetPaused("train", true, "ops").ok());
  woken = (*listener)->Wait(std::chrono::seconds(60));
  REQUIRE(woken.ok());
  CHECK(*woken);
}

TEST_CASE("a Wakeup ends an EventListener's wait, from another thread too, and is taken") {
  TestDatabase t;
  auto db = t.Open();
  auto listener = EventListener::Connect(t.url());
  REQUIRE(listener.ok());
  kiln::store::Wakeup wakeup;
  REQUIRE(wakeup.fd() >= 0);
  // Notified before the wait: it returns at once, with no notification (an hour otherwise).
  wakeup.Notify();
  auto woken = (*listener)->Wait(std::chrono::hours(1), &wakeup);
  REQUIRE(woken.ok());
  CHECK_FALSE(*woken);
  // Notified while it waits, from another thread.
  std::thread other([&] { wakeup.Notify(); });
  woken = (*listener)->Wait(std::chrono::hours(1), &wakeup);
  other.join();
  REQUIRE(woken.ok());
  CHECK_FALSE(*woken);
  // Taken: a notification, not the wake-up, ends the next wait; and it is reported as one.
  CreateOrFail(*db, SimpleRun({"a"}));
  woken = (*listener)->Wait(std::chrono::hours(1), &wakeup);
  REQUIRE(woken.ok());
  CHECK(*woken);
  CHECK((*listener)->Take().size() == 1);
  auto quiet = (*listener)->Wait(std::chrono::milliseconds(0), &wakeup);
  REQUIRE(quiet.ok());
  CHECK_FALSE(*quiet);
}

TEST_CASE("an EventListener reports a lost connection") {
  TestDatabase t;
  auto listener = EventListener::Connect(t.url());
  REQUIRE(listener.ok());
  CHECK(t.One("SELECT bool_and(pg_terminate_backend(pid, 30000)) FROM pg_stat_activity WHERE "
              "datname = current_database() AND query LIKE 'LISTEN%'") == "t");
  // The server's goodbye may take one wait to read; each wait returns as soon as the socket
  // has something.
  Result<bool> waited = true;
  for (int i = 0; i < 5 && waited.ok(); ++i) waited = (*listener)->Wait(std::chrono::seconds(60));
  REQUIRE_FALSE(waited.ok());
  CHECK(waited.status().code() == ErrorCode::kUnavailable);
  CHECK_THAT(waited.message(), Catch::StartsWith("database: waiting for events: "));
  // It stays lost (libpqxx would otherwise reconnect behind our back).
  auto again = (*listener)->Wait(std::chrono::milliseconds(0));
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().code() == ErrorCode::kUnavailable);
  CHECK(again.message() == "database: waiting for events: the connection was lost; listen again");
}

TEST_CASE("EventListener::Connect to an unreachable server names the redacted URL") {
  auto listener = EventListener::Connect("postgresql://kiln:s3cretpw@127.0.0.1:1/kiln");
  REQUIRE_FALSE(listener.ok());
  CHECK(listener.status().code() == ErrorCode::kUnavailable);
  CHECK_THAT(listener.message(), Catch::StartsWith("postgresql://kiln:***@127.0.0.1:1/kiln: "));
  CHECK(listener.message().find("s3cretpw") == std::string::npos);
}

TEST_CASE("later migrations upgrade a database of migration 1 with rows") {
  TestDatabase t;
  t.Rows(
      "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at "
      "timestamptz NOT NULL DEFAULT now())");
  t.Rows(std::string(Migrations()[0].sql));
  t.Rows("INSERT INTO schema_migrations (version, name) VALUES (1, 'initial schema')");
  t.Rows(
      "INSERT INTO pipeline_versions (pipeline, content_hash, source) VALUES ('train', 'h1', ''), "
      "('etl', 'h2', '')");
  const std::string train = t.One(
      "INSERT INTO runs (pipeline, version_hash, trigger, logical_date) VALUES ('train', 'h1', "
      "'manual', now()) RETURNING id");
  const std::string etl = t.One(
      "INSERT INTO runs (pipeline, version_hash, trigger, logical_date) VALUES ('etl', 'h2', "
      "'manual', now()) RETURNING id");
  t.Rows("INSERT INTO events (at, run_id, kind) VALUES (now(), " + train +
         ", 'run_created'), (now(), " + etl + ", 'run_created'), (now(), " + train +
         ", 'run_state'), (now(), 999, 'fenced')");

  auto db = Database::Connect(t.url());
  REQUIRE(db.ok());
  REQUIRE((*db)->Migrate().ok());
  CHECK(t.Rows("SELECT version FROM schema_migrations ORDER BY 1") ==
        Rows{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"});
  CHECK(t.Rows("SELECT run_id, pipeline, kind FROM events ORDER BY id") ==
        Rows{train + "|train|run_created", etl + "|etl|run_created", train + "|train|run_state",
             "999|NULL|fenced"});
  CHECK(t.One("SELECT indexdef FROM pg_indexes WHERE indexname = 'events_by_pipeline'") ==
        "CREATE INDEX events_by_pipeline ON public.events USING btree (pipeline, id)");
  CHECK(t.One("SELECT count(*) FROM pipelines") == "0");

  // The upgraded database works with this kiln.
  REQUIRE((*db)->PrepareStatements().ok());
  REQUIRE((*db)->SetPaused("etl", true, "ops").ok());
  auto events = (*db)->ListEvents(Events(0, "etl"));
  REQUIRE(events.ok());
  REQUIRE(events->size() == 2);
  CHECK((*events)[0].run == RunId(std::stoll(etl)));
  CHECK((*events)[1].kind == "pipeline_paused");
}
