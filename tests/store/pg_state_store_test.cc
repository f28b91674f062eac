#include "store/pg_state_store.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "tests/store/test_support.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;
using scheduler::Batch;
using scheduler::TaskUpdate;
using Rows = std::vector<std::string>;
using dag::RunState;
using dag::TaskState;

namespace {

TaskUpdate Start(RunId run, const std::string& task, int attempt, Instant at) {
  TaskUpdate u;
  u.run = run;
  u.task_id = task;
  u.attempt = attempt;
  u.state = TaskState::kRunning;
  u.at = at;
  u.start = scheduler::AttemptStart{"/logs/" + task + "." + std::to_string(attempt), "worker-1",
                                    std::nullopt};
  return u;
}

TaskUpdate End(RunId run, const std::string& task, int attempt, TaskState state, Instant at,
               int exit_code) {
  TaskUpdate u;
  u.run = run;
  u.task_id = task;
  u.attempt = attempt;
  u.state = state;
  u.at = at;
  scheduler::AttemptEnd end;
  end.exit_code = exit_code;
  end.cpu = Duration(1500);
  end.max_rss_kb = 2048;
  if (exit_code != 0) end.reason = "exit code " + std::to_string(exit_code);
  u.end = end;
  u.reason = end.reason;
  return u;
}

Batch Tasks(std::vector<TaskUpdate> updates) {
  Batch b;
  b.tasks = std::move(updates);
  return b;
}

Batch RunTo(RunId run, RunState state, Instant at, std::string reason = "") {
  Batch b;
  b.runs.push_back(scheduler::RunUpdate{run, state, at, std::move(reason)});
  return b;
}

// Commits one batch and waits for its callback.
Status CommitAndWait(PgStateStore& store, Inbox& inbox, Batch batch) {
  Status result = Status::Error("callback not called");
  store.Commit(std::move(batch), [&](scheduler::CommitResult r) { result = r.status; });
  inbox.RunAll(1);
  return result;
}

// Holds a row lock on the task so that the store thread's next transaction waits for it.
struct RowLock {
  RowLock(TestDatabase& t, const std::string& task) : conn(t.url()), txn(conn) {
    txn.exec("SELECT 1 FROM task_instances WHERE task_id = " + txn.quote(task) + " FOR UPDATE");
  }
  // Waits until some other session is blocked on a lock in this database.
  void WaitForWaiter(TestDatabase& t) {
    for (int i = 0; i < 1000; ++i) {
      if (t.One("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                "wait_event_type = 'Lock'") == "1") {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    FAIL("the store thread never waited for the row lock");
  }
  pqxx::connection conn;
  pqxx::work txn;
};

const std::string kEventColumns =
    "SELECT kind, task_id, attempt, from_state, to_state, actor, detail::text, at FROM events "
    "ORDER BY id";

}  // namespace

TEST_CASE("PgStateStore writes retries with exact rows, one transaction per group") {
  TestDatabase t;
  auto db = t.Open();
  auto created = db->CreateRun(SimpleRun({"train"}));
  REQUIRE(created.ok());
  const RunId run = created->id;
  Inbox inbox;
  PgStateStore store(t.url(), "host:1", inbox.Poster(), std::chrono::minutes(5));
  REQUIRE(store.Open().ok());

  Batch first = Tasks({Start(run, "train", 1, At(1))});
  first.runs.push_back({run, RunState::kRunning, At(1), "started"});
  TaskUpdate failed = End(run, "train", 1, TaskState::kUpForRetry, At(2), 3);
  failed.retry_at = At(12);
  std::vector<Batch> rest = {Tasks({failed}), Tasks({Start(run, "train", 2, At(12))}),
                             Tasks({End(run, "train", 2, TaskState::kSuccess, At(20), 0)}),
                             RunTo(run, RunState::kSuccess, At(21))};

  std::vector<std::string> calls;
  {
    RowLock lock(t, "train");
    store.Commit(first,
                 [&](scheduler::CommitResult r) { calls.push_back("1:" + r.status.message()); });
    lock.WaitForWaiter(t);
    for (size_t i = 0; i < rest.size(); ++i) {
      store.Commit(rest[i], [&, i](scheduler::CommitResult r) {
        calls.push_back(std::to_string(i + 2) + ":" + r.status.message());
      });
    }
    lock.txn.abort();
  }
  inbox.RunAll(5);
  CHECK(calls == std::vector<std::string>{"1:", "2:", "3:", "4:", "5:"});

  // The first batch alone, the four queued behind it together.
  CHECK(t.Rows("SELECT id < 4, count(DISTINCT xmin::text) FROM events WHERE kind <> "
               "'run_created' GROUP BY 1 ORDER BY 1") == Rows{"f|1", "t|1"});
  CHECK(t.One("SELECT count(DISTINCT xmin::text) FROM events WHERE kind <> 'run_created'") == "2");

  CHECK(t.Rows("SELECT state, started_at, ended_at FROM runs") ==
        Rows{"success|2026-11-29 00:00:01+00|2026-11-29 00:00:21+00"});
  CHECK(t.Rows("SELECT state, attempt, lease_owner, lease_expires_at, retry_at, exit_code, signal, "
               "started_at, ended_at FROM task_instances") ==
        Rows{"success|2|worker-1|NULL|NULL|0|NULL|2026-11-29 00:00:12+00|2026-11-29 00:00:20+00"});
  CHECK(t.Rows("SELECT attempt, state, log_path, lease_owner, started_at, ended_at, exit_code, "
               "signal, timed_out, cpu_ms, max_rss_kb, reason FROM attempts ORDER BY attempt") ==
        Rows{"1|failed|/logs/train.1|worker-1|2026-11-29 00:00:01+00|2026-11-29 00:00:02+00|3|"
             "NULL|f|1500|2048|exit code 3",
             "2|success|/logs/train.2|worker-1|2026-11-29 00:00:12+00|2026-11-29 00:00:20+00|0|"
             "NULL|f|1500|2048|"});
  CHECK(
      t.Rows(kEventColumns + " OFFSET 1") ==
      Rows{
          R"(run_state|NULL|NULL|queued|running|host:1|{"reason": "started"}|2026-11-29 00:00:01+00)",
          "task_state|train|1|pending|running|host:1|{}|2026-11-29 00:00:01+00",
          R"(task_state|train|1|running|up_for_retry|host:1|{"reason": "exit code 3"}|2026-11-29 00:00:02+00)",
          "task_state|train|2|up_for_retry|running|host:1|{}|2026-11-29 00:00:12+00",
          "task_state|train|2|running|success|host:1|{}|2026-11-29 00:00:20+00",
          "run_state|NULL|NULL|running|success|host:1|{}|2026-11-29 00:00:21+00"});

  auto record = db->GetRun(run);
  REQUIRE(record.ok());
  CHECK(record->state == RunState::kSuccess);
  CHECK(record->last_event == std::stoll(t.One("SELECT max(id) FROM events")));
  CHECK(record->started_at == At(1));
  REQUIRE(record->tasks.size() == 1);
  CHECK(record->tasks[0].state == TaskState::kSuccess);
  CHECK(record->tasks[0].attempt == 2);
  CHECK(record->tasks[0].exit_code == 0);
  CHECK(record->tasks[0].duration == Duration(8000));
  auto attempts = db->ListAttempts(run, "train");
  REQUIRE(attempts.ok());
  REQUIRE(attempts->size() == 2);
  CHECK((*attempts)[0].state == "failed");
  CHECK((*attempts)[0].exit_code == 3);
  CHECK((*attempts)[0].cpu == Duration(1500));
  CHECK((*attempts)[0].ended_at == At(2));
  CHECK((*attempts)[1].log_path == "/logs/train.2");
  auto events = db->ListEvents(run);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 7);
  CHECK((*events)[3].from_state == "running");
  CHECK((*events)[3].to_state == "up_for_retry");
  CHECK((*events)[3].attempt == 1);
  CHECK((*events)[3].detail == R"({"reason": "exit code 3"})");
  CHECK((*events)[3].at == At(2));
}

TEST_CASE("a late report for an attempt that was given up changes nothing") {
  TestDatabase t;
  auto db = t.Open();
  auto created = db->CreateRun(SimpleRun({"train"}));
  REQUIRE(created.ok());
  const RunId run = created->id;
  Inbox inbox;
  PgStateStore store(t.url(), "host:1", inbox.Poster(), std::chrono::minutes(5));
  REQUIRE(store.Open().ok());
  REQUIRE(CommitAndWait(store, inbox, Tasks({Start(run, "train", 1, At(1))})).ok());
  REQUIRE(
      CommitAndWait(store, inbox, Tasks({End(run, "train", 1, TaskState::kUpForRetry, At(2), 3)}))
          .ok());
  REQUIRE(CommitAndWait(store, inbox, Tasks({Start(run, "train", 2, At(5))})).ok());
  const Rows task_before = t.Rows("SELECT * FROM task_instances");
  const Rows attempts_before = t.Rows("SELECT * FROM attempts ORDER BY attempt");
  CHECK(t.One("SELECT state, attempt, lease_expires_at FROM task_instances") ==
        "running|2|2026-11-29 00:05:05+00");

  TaskUpdate late = End(run, "train", 1, TaskState::kFailed, At(6), 9);
  TaskUpdate unknown;
  unknown.run = run;
  unknown.task_id = "nope";
  unknown.state = TaskState::kQueued;
  unknown.at = At(7);
  Batch batch = Tasks({late, Start(run, "train", 2, At(7)), unknown});
  CHECK(CommitAndWait(store, inbox, std::move(batch)).ok());

  CHECK(t.Rows("SELECT * FROM task_instances") == task_before);
  CHECK(t.Rows("SELECT * FROM attempts ORDER BY attempt") == attempts_before);
  CHECK(
      t.Rows(kEventColumns + " OFFSET 4") ==
      Rows{
          R"(fenced|train|1|running|failed|host:1|{"reason": "exit code 9", "found_attempt": 2}|2026-11-29 00:00:06+00)",
          R"(fenced|train|2|running|running|host:1|{"found_attempt": 2}|2026-11-29 00:00:07+00)",
          R"(fenced|nope|0|NULL|queued|host:1|{"found_attempt": null}|2026-11-29 00:00:07+00)"});

  // Terminal rows refuse plain updates; a finished run refuses state changes.
  REQUIRE(CommitAndWait(store, inbox, Tasks({End(run, "train", 2, TaskState::kSuccess, At(8), 0)}))
              .ok());
  TaskUpdate reset;
  reset.run = run;
  reset.task_id = "train";
  reset.state = TaskState::kQueued;
  reset.at = At(9);
  REQUIRE(CommitAndWait(store, inbox, Tasks({reset})).ok());
  REQUIRE(CommitAndWait(store, inbox, RunTo(run, RunState::kFailed, At(10))).ok());
  REQUIRE(CommitAndWait(store, inbox, RunTo(run, RunState::kRunning, At(11))).ok());
  CHECK(t.One("SELECT state FROM task_instances") == "success");
  CHECK(t.One("SELECT state, ended_at FROM runs") == "failed|2026-11-29 00:00:10+00");
  CHECK(t.Rows("SELECT kind, from_state, to_state FROM events ORDER BY id OFFSET 8") ==
        Rows{"fenced|success|queued", "run_state|queued|failed", "fenced|failed|running"});
}

TEST_CASE("an update the database refuses is rejected alone and the rest of the group commits") {
  TestDatabase t;
  auto db = t.Open();
  auto created = db->CreateRun(SimpleRun({"train", "eval", "report"}));
  REQUIRE(created.ok());
  const RunId run = created->id;
  Inbox inbox;
  PgStateStore store(t.url(), "host:1", inbox.Poster());
  REQUIRE(store.Open().ok());

  std::vector<scheduler::CommitResult> results(3);
  {
    RowLock lock(t, "train");
    store.Commit(Tasks({Start(run, "train", 1, At(1))}),
                 [&](scheduler::CommitResult r) { results[0] = r; });
    lock.WaitForWaiter(t);
    // Far beyond the year 294276: no timestamptz holds it, so no retry could ever write it.
    Batch bad = Tasks({Start(run, "eval", 1, At(1)), Start(run, "report", 1, At(1))});
    bad.tasks[0].at = Instant(std::chrono::milliseconds(int64_t{1} << 60));
    store.Commit(bad, [&](scheduler::CommitResult r) { results[1] = r; });
    store.Commit(Tasks({Start(run, "bad\xff", 1, At(1))}),
                 [&](scheduler::CommitResult r) { results[2] = r; });
    lock.txn.abort();
  }
  inbox.RunAll(3);
  for (const auto& r : results) CHECK(r.status.ok());
  CHECK(results[0].refused.empty());
  REQUIRE(results[1].refused.size() == 1);
  const scheduler::Refusal& refusal = results[1].refused[0];
  CHECK_FALSE(refusal.run);
  CHECK(refusal.index == 0);
  CHECK(refusal.rejected);
  CHECK_THAT(refusal.message, Catch::Contains("out of range"));
  // Not UTF-8: stored safely as U+FFFD; there is no such task, so the update is fenced.
  REQUIRE(results[2].refused.size() == 1);
  CHECK_FALSE(results[2].refused[0].rejected);
  CHECK(t.Rows("SELECT task_id, state FROM task_instances ORDER BY position") ==
        Rows{"train|running", "eval|pending", "report|running"});
  CHECK(t.One("SELECT count(*) FROM attempts") == "2");
  CHECK(t.One("SELECT task_id FROM events WHERE kind = 'fenced'") == "bad\xef\xbf\xbd");
}

TEST_CASE("a group lost with its connection writes nothing and the next group reconnects") {
  TestDatabase t;
  auto db = t.Open();
  auto created = db->CreateRun(SimpleRun({"train", "eval"}));
  REQUIRE(created.ok());
  const RunId run = created->id;
  Inbox inbox;
  PgStateStore store(t.url(), "host:1", inbox.Poster());
  REQUIRE(store.Open().ok());

  std::vector<Status> results(2);
  {
    RowLock lock(t, "train");
    store.Commit(Tasks({Start(run, "train", 1, At(1))}),
                 [&](scheduler::CommitResult r) { results[0] = r.status; });
    lock.WaitForWaiter(t);
    store.Commit(Tasks({Start(run, "eval", 1, At(1))}),
                 [&](scheduler::CommitResult r) { results[1] = r.status; });
    // The server ends the session while its group is written: nothing of it commits.
    t.One(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
        "current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'");
    lock.txn.abort();
  }
  inbox.RunAll(2);
  CHECK_FALSE(results[0].ok());
  CHECK(results[0].code() == ErrorCode::kUnavailable);
  // The next group connects again.
  CHECK(results[1].ok());
  CHECK(t.Rows("SELECT task_id, state FROM task_instances ORDER BY position") ==
        Rows{"train|pending", "eval|running"});
  CHECK(t.One("SELECT count(*) FROM attempts") == "1");

  // The caller retries: a new connection writes them.
  CHECK(CommitAndWait(store, inbox, Tasks({Start(run, "train", 1, At(1))})).ok());
  CHECK(t.One("SELECT state FROM task_instances WHERE task_id = 'train'") == "running");
}

TEST_CASE("the destructor commits what is queued and posts every callback") {
  TestDatabase t;
  auto db = t.Open();
  auto created = db->CreateRun(SimpleRun({"a", "b", "c"}));
  REQUIRE(created.ok());
  Inbox inbox;
  int ok = 0;
  {
    PgStateStore store(t.url(), "host:1", inbox.Poster());
    REQUIRE(store.Open().ok());
    for (const char* task : {"a", "b", "c"}) {
      store.Commit(Tasks({Start(created->id, task, 1, At(1))}),
                   [&](scheduler::CommitResult r) { ok += r.status.ok(); });
    }
  }
  CHECK(inbox.Size() == 3);
  inbox.RunAll(3);
  CHECK(ok == 3);
  CHECK(t.One("SELECT count(*) FROM task_instances WHERE state = 'running'") == "3");
}

TEST_CASE("PgStateStore::Open on an unreachable database names the redacted URL") {
  Inbox inbox;
  PgStateStore store("postgresql://kiln:hunter22@127.0.0.1:1/kiln", "host:1", inbox.Poster());
  Status s = store.Open();
  CHECK_THAT(s.message(), Catch::StartsWith("postgresql://kiln:***@127.0.0.1:1/kiln: "));
  CHECK(s.message().find("hunter22") == std::string::npos);
}

TEST_CASE("PgStateStore::Open on a database without the schema says so") {
  TestDatabase t;
  Inbox inbox;
  PgStateStore store(t.url(), "host:1", inbox.Poster());
  Status s = store.Open();
  CHECK_THAT(s.message(), Catch::StartsWith("database: preparing statements (is the schema "
                                            "migrated?): ERROR: relation \"pipeline_versions\" "
                                            "does not exist"));
}

// Sequential latency of the scheduler's common batch: one attempt ends, the next task starts
// (2 task updates, 2 events, 1 attempt insert, 1 attempt update), synchronous_commit on. Measured
// through PgStateStore (Commit -> store thread -> posted callback) and with Database alone.
TEST_CASE("commit latency of a two-update batch") {
  TestDatabase t;
  auto db = t.Open();
  constexpr int kBatches = 300;
  std::vector<std::string> ids;
  for (int i = 0; i <= kBatches; ++i) ids.push_back("t" + std::to_string(i));
  auto via_store = db->CreateRun(SimpleRun(ids));
  auto direct = db->CreateRun(SimpleRun(ids));
  REQUIRE((via_store.ok() && direct.ok()));
  auto batch = [&](RunId run, int i) {
    if (i == 0) return Tasks({Start(run, ids[0], 1, At(0))});
    return Tasks(
        {End(run, ids[i - 1], 1, TaskState::kSuccess, At(i), 0), Start(run, ids[i], 1, At(i))});
  };
  auto report = [](const char* how, std::vector<double> micros) {
    std::sort(micros.begin(), micros.end());
    auto pct = [&](double p) { return micros[static_cast<size_t>(p * (micros.size() - 1))]; };
    std::fprintf(stderr,
                 "commit latency %s, %zu batches: median %.0f us, p90 %.0f us, p99 %.0f us\n", how,
                 micros.size(), pct(0.5), pct(0.9), pct(0.99));
    return pct(0.5);
  };
  auto elapsed = [](std::chrono::steady_clock::time_point begin) {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - begin)
        .count();
  };

  Inbox inbox;
  PgStateStore store(t.url(), "host:1", inbox.Poster());
  REQUIRE(store.Open().ok());
  std::vector<double> store_micros, db_micros;
  for (int i = 0; i <= kBatches; ++i) {
    auto begin = std::chrono::steady_clock::now();
    REQUIRE(CommitAndWait(store, inbox, batch(via_store->id, i)).ok());
    if (i > 0) store_micros.push_back(elapsed(begin));
  }
  for (int i = 0; i <= kBatches; ++i) {
    Batch b = batch(direct->id, i);
    const Batch* group[] = {&b};
    auto begin = std::chrono::steady_clock::now();
    auto fenced = db->CommitBatches(group, "host:1", std::chrono::minutes(1));
    REQUIRE(fenced.ok());
    REQUIRE(fenced->empty());
    if (i > 0) db_micros.push_back(elapsed(begin));
  }
  double median = report("through PgStateStore", store_micros);
  report("of Database::CommitBatches", db_micros);
  CHECK(t.One("SELECT count(*) FROM attempts WHERE state = 'success'") ==
        std::to_string(2 * kBatches));
  CHECK(median > 0);  // the printed figures are what matters; speed is not asserted here
}
