// Database's listings and reads for the HTTP API: ListRuns, QueuedRuns, RecentRuns, Grid,
// RunAttempts, GetAttempt, Ping, and CreateRun's idempotency keys.
#include <latch>
#include <thread>

#include "tests/store/run_fixtures.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;
using Rows = std::vector<std::string>;
using dag::RunState;
using dag::TaskState;

namespace {

std::vector<std::string> Ids(const std::vector<RunRecord>& runs) {
  std::vector<std::string> ids;
  for (const RunRecord& r : runs) ids.push_back(ToString(r.id));
  return ids;
}

RunFilter Limit(int limit) {
  RunFilter f;
  f.limit = limit;
  return f;
}

}  // namespace

TEST_CASE("ListRuns pages newest first and filters") {
  TestDatabase t;
  auto db = t.Open();
  NewRun train = SimpleRun({"a"});
  train.params = {{"epochs", int64_t{3}}};
  NewRun etl = SimpleRun({"a"});
  etl.pipeline = "etl";
  const std::string r1 = ToString(CreateOrFail(*db, train));
  const std::string e1 = ToString(CreateOrFail(*db, etl));
  const std::string r2 = ToString(CreateOrFail(*db, train));
  const std::string r3 = ToString(CreateOrFail(*db, train));
  const std::string e2 = ToString(CreateOrFail(*db, etl));
  t.Rows("UPDATE runs SET state = 'success' WHERE id = " + r1);
  t.Rows("UPDATE runs SET state = 'failed' WHERE id = " + r2);
  int n = 0;
  for (const std::string& id : {r1, e1, r2, r3, e2}) {
    t.Rows("UPDATE runs SET created_at = '2026-11-29T00:00:" + std::to_string(10 * ++n) +
           "Z' WHERE id = " + id);
  }

  auto all = db->ListRuns(RunFilter{});
  REQUIRE(all.ok());
  CHECK(Ids(all->runs) == Rows{e2, r3, r2, e1, r1});
  CHECK_FALSE(all->next);
  const RunRecord& first = all->runs[4];
  CHECK(first.pipeline == "train");
  CHECK(first.state == RunState::kSuccess);
  CHECK(first.params == train.params);
  CHECK(first.created_by == "tester");
  CHECK(first.created_at == At(10));
  CHECK(first.tasks.empty());

  // Pages of two, following the cursor.
  auto page = db->ListRuns(Limit(2));
  REQUIRE(page.ok());
  CHECK(Ids(page->runs) == Rows{e2, r3});
  REQUIRE(page->next);
  CHECK(ToString(*page->next) == r3);
  RunFilter next = Limit(2);
  next.before = page->next;
  page = db->ListRuns(next);
  REQUIRE(page.ok());
  CHECK(Ids(page->runs) == Rows{r2, e1});
  REQUIRE(page->next);
  CHECK(ToString(*page->next) == e1);
  next.before = page->next;
  page = db->ListRuns(next);
  REQUIRE(page.ok());
  CHECK(Ids(page->runs) == Rows{r1});
  CHECK_FALSE(page->next);

  // A page that ends exactly at the last run has no cursor; one short of it has.
  page = db->ListRuns(Limit(5));
  REQUIRE(page.ok());
  CHECK(page->runs.size() == 5);
  CHECK_FALSE(page->next);
  page = db->ListRuns(Limit(4));
  REQUIRE(page.ok());
  CHECK(Ids(page->runs) == Rows{e2, r3, r2, e1});
  CHECK(page->next == page->runs.back().id);

  RunFilter by_pipeline;
  by_pipeline.pipeline = "train";
  page = db->ListRuns(by_pipeline);
  REQUIRE(page.ok());
  CHECK(Ids(page->runs) == Rows{r3, r2, r1});
  by_pipeline.before = RunId(std::stoll(r3));
  by_pipeline.limit = 1;
  page = db->ListRuns(by_pipeline);
  REQUIRE(page.ok());
  CHECK(Ids(page->runs) == Rows{r2});
  CHECK(page->next == RunId(std::stoll(r2)));

  RunFilter by_state;
  by_state.state = RunState::kFailed;
  page = db->ListRuns(by_state);
  REQUIRE(page.ok());
  CHECK(Ids(page->runs) == Rows{r2});
  by_state.state = RunState::kQueued;
  by_state.pipeline = "etl";
  page = db->ListRuns(by_state);
  REQUIRE(page.ok());
  CHECK(Ids(page->runs) == Rows{e2, e1});

  RunFilter by_time;
  by_time.created_after = At(20);   // inclusive
  by_time.created_before = At(50);  // exclusive
  page = db->ListRuns(by_time);
  REQUIRE(page.ok());
  CHECK(Ids(page->runs) == Rows{r3, r2, e1});

  RunFilter none;
  none.pipeline = "nope";
  page = db->ListRuns(none);
  REQUIRE(page.ok());
  CHECK(page->runs.empty());
  CHECK_FALSE(page->next);
}

TEST_CASE("ListRuns clamps the limit to 1..100") {
  TestDatabase t;
  auto db = t.Open();
  CreateOrFail(*db, SimpleRun({"a"}));
  t.Rows(
      "INSERT INTO runs (pipeline, version_hash, trigger, logical_date) "
      "SELECT 'train', 'abc123', 'manual', now() FROM generate_series(1, 120)");
  for (int limit : {0, -5}) {
    auto page = db->ListRuns(Limit(limit));
    REQUIRE(page.ok());
    CHECK(page->runs.size() == 1);
    CHECK(page->next == page->runs[0].id);
  }
  auto page = db->ListRuns(Limit(1000));
  REQUIRE(page.ok());
  CHECK(page->runs.size() == 100);
  CHECK(page->next == page->runs.back().id);
  CHECK(ToString(page->runs.front().id) == t.One("SELECT max(id) FROM runs"));
}

TEST_CASE("QueuedRuns lists the queued runs of one pipeline, oldest first, with their tasks") {
  TestDatabase t;
  auto db = t.Open();
  NewRun train = SimpleRun({"prepare", "train", "evaluate"});
  train.params = {{"epochs", int64_t{3}}};
  const RunId q1 = CreateOrFail(*db, train);
  const RunId running = RunningRun(*db);
  const RunId retried = FailedRun(*db);
  NewRun etl = SimpleRun({"a"});
  etl.pipeline = "etl";
  CreateOrFail(*db, etl);
  const std::vector<std::string> again = {"train", "evaluate"};
  REQUIRE(db->PrepareRetry(retried, again, "ops").ok());
  REQUIRE(running != q1);

  auto queued = db->QueuedRuns("train");
  REQUIRE(queued.ok());
  REQUIRE(queued->size() == 2);
  const RunRecord& a = (*queued)[0];
  CHECK(a.id == q1);
  CHECK(a.params == train.params);
  CHECK(a.state == RunState::kQueued);
  REQUIRE(a.tasks.size() == 3);
  CHECK(a.tasks[0].task_id == "prepare");
  CHECK(a.tasks[2].task_id == "evaluate");
  const RunRecord& b = (*queued)[1];
  CHECK(b.id == retried);
  REQUIRE(b.tasks.size() == 3);
  CHECK(b.tasks[0].state == TaskState::kSuccess);
  CHECK(b.tasks[1].state == TaskState::kPending);
  CHECK(b.tasks[1].attempt == 2);
  CHECK(b.tasks[2].state == TaskState::kPending);

  auto none = db->QueuedRuns("nope");
  REQUIRE(none.ok());
  CHECK(none->empty());
}

TEST_CASE("RecentRuns gives the newest runs of every pipeline that has runs, newest first") {
  TestDatabase t;
  auto db = t.Open();
  auto empty = db->RecentRuns(2);
  REQUIRE(empty.ok());
  CHECK(empty->empty());

  const RunId r1 = CreateOrFail(*db, SimpleRun({"a"}));
  NewRun etl = SimpleRun({"a"});
  etl.pipeline = "etl";
  const RunId e1 = CreateOrFail(*db, etl);
  const RunId r2 = CreateOrFail(*db, SimpleRun({"a"}));
  const RunId r3 = CreateOrFail(*db, SimpleRun({"a"}));
  t.Rows("UPDATE runs SET state = 'success' WHERE id = " + ToString(r2));
  t.Rows("UPDATE runs SET state = 'failed' WHERE id = " + ToString(r1));
  // A pipeline whose version was recorded but that has no run.
  t.Rows("INSERT INTO pipeline_versions (pipeline, content_hash, source) VALUES ('idle', 'h', '')");

  using Recent = std::map<std::string, std::vector<std::pair<RunId, RunState>>>;
  auto two = db->RecentRuns(2);
  REQUIRE(two.ok());
  CHECK(*two == Recent{{"etl", {{e1, RunState::kQueued}}},
                       {"train", {{r3, RunState::kQueued}, {r2, RunState::kSuccess}}}});
  auto all = db->RecentRuns(10);
  REQUIRE(all.ok());
  CHECK(all->at("train") == std::vector<std::pair<RunId, RunState>>{{r3, RunState::kQueued},
                                                                    {r2, RunState::kSuccess},
                                                                    {r1, RunState::kFailed}});
}

TEST_CASE("Grid gives each run's task states as letters in pipeline order, a page at a time") {
  TestDatabase t;
  auto db = t.Open();
  const RunId failed = FailedRun(*db);  // prepare success, train failed, evaluate upstream_failed
  NewRun other = SimpleRun({"prepare", "train", "evaluate", "report"});
  other.version_hash = "def456";
  const RunId newer = CreateOrFail(*db, other);
  const RunId newest = CreateOrFail(*db, SimpleRun({"prepare", "train", "evaluate"}));
  NewRun etl = SimpleRun({"x"});
  etl.pipeline = "etl";
  CreateOrFail(*db, etl);

  auto page = db->Grid("train", std::nullopt, 2);
  REQUIRE(page.ok());
  REQUIRE(page->runs.size() == 2);
  CHECK(page->runs[0].run.id == newest);
  CHECK(page->runs[0].states == "ppp");
  CHECK(*page->runs[0].task_ids == Rows{"prepare", "train", "evaluate"});
  CHECK(page->runs[1].run.id == newer);
  CHECK(page->runs[1].run.version_hash == "def456");
  CHECK(page->runs[1].states == "pppp");
  CHECK(*page->runs[1].task_ids == Rows{"prepare", "train", "evaluate", "report"});
  CHECK(page->next == newer);

  auto rest = db->Grid("train", page->next, 2);
  REQUIRE(rest.ok());
  REQUIRE(rest->runs.size() == 1);
  CHECK(rest->runs[0].run.id == failed);
  CHECK(rest->runs[0].run.state == RunState::kFailed);
  CHECK(rest->runs[0].states == "sfx");
  CHECK_FALSE(rest->next);

  // Runs of one version share one list of task ids.
  auto both = db->Grid("train", std::nullopt, 100);
  REQUIRE(both.ok());
  REQUIRE(both->runs.size() == 3);
  CHECK(both->runs[0].task_ids == both->runs[2].task_ids);
  auto none = db->Grid("nope", std::nullopt, 10);
  REQUIRE(none.ok());
  CHECK(none->runs.empty());

  // Letters follow the pipeline order, not the order of the rows on disk: an update writes a
  // row anew, so here the table holds train, evaluate, prepare.
  const std::string where = " WHERE run_id = " + ToString(newest) + " AND task_id = ";
  t.Rows("UPDATE task_instances SET state = 'running'" + where + "'evaluate'");
  t.Rows("UPDATE task_instances SET state = 'success'" + where + "'prepare'");
  auto moved = db->Grid("train", std::nullopt, 1);
  REQUIRE(moved.ok());
  CHECK(moved->runs[0].states == "spr");
  // Positions with gaps (kiln writes 0..n-1) still come out in their order.
  t.Rows("UPDATE task_instances SET position = 30 - position * 10 WHERE run_id = " +
         ToString(newest));
  auto gaps = db->Grid("train", std::nullopt, 1);
  REQUIRE(gaps.ok());
  CHECK(gaps->runs[0].states == "rps");
}

TEST_CASE("RunAttempts reads every attempt of a run by task, or says the run is unknown") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = FailedRun(*db);
  auto attempts = db->RunAttempts(run);
  REQUIRE(attempts.ok());
  std::vector<std::string> seen;
  for (const auto& a : *attempts) {
    seen.push_back(a.task_id + "#" + std::to_string(a.attempt) + ":" + a.state);
  }
  CHECK(seen == Rows{"prepare#1:success", "train#1:failed", "train#2:failed"});
  CHECK((*attempts)[2].exit_code == 3);
  CHECK((*attempts)[2].started_at == At(4));
  auto unknown = db->RunAttempts(RunId{Value(run) + 100});
  CHECK(unknown.status().code() == ErrorCode::kNotFound);
  CHECK(unknown.message() == "run " + ToString(RunId{Value(run) + 100}) + " not found");
}

TEST_CASE("GetAttempt reads one attempt or says which is missing") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = FailedRun(*db);
  auto attempt = db->GetAttempt(run, "train", 2);
  REQUIRE(attempt.ok());
  CHECK(attempt->run == run);
  CHECK(attempt->task_id == "train");
  CHECK(attempt->attempt == 2);
  CHECK(attempt->state == "failed");
  CHECK(attempt->log_path == "/logs/train.2");
  CHECK(attempt->lease_owner == "worker-1");
  CHECK(attempt->started_at == At(4));
  CHECK(attempt->ended_at == At(5));
  CHECK(attempt->exit_code == 3);
  CHECK_FALSE(attempt->signal);
  CHECK(attempt->cpu == Duration(1500));
  CHECK(attempt->max_rss_kb == 2048);
  CHECK(attempt->reason == "exit code 3");

  for (auto [task, n] : {std::pair<std::string, int>{"train", 3}, {"nope", 1}}) {
    auto missing = db->GetAttempt(run, task, n);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.status().code() == ErrorCode::kNotFound);
    CHECK(missing.message() == "run " + ToString(run) + " task '" + task + "' attempt " +
                                   std::to_string(n) + " not found");
  }
}

TEST_CASE("Ping answers while connected and reports a lost connection") {
  TestDatabase t;
  auto db = t.Open();
  CHECK(db->Ping().ok());
  // Waits (up to 30 s) until the backend is gone.
  CHECK(t.One("SELECT bool_and(pg_terminate_backend(pid, 30000)) FROM pg_stat_activity WHERE "
              "datname = current_database() AND backend_type = 'client backend' AND pid <> "
              "pg_backend_pid()") == "t");
  Status lost = db->Ping();
  CHECK(lost.code() == ErrorCode::kUnavailable);
  CHECK_THAT(lost.message(), Catch::StartsWith("database: ping: "));
  // The connection stays lost: the daemon connects a new Database.
  CHECK(db->Ping().code() == ErrorCode::kUnavailable);
  auto fresh = Database::Connect(t.url());
  REQUIRE(fresh.ok());
  CHECK((*fresh)->Ping().ok());
}

TEST_CASE("an idempotency key reused with other params is a conflict") {
  TestDatabase t;
  auto db = t.Open();
  NewRun run = SimpleRun({"a"});
  run.idempotency_key = "nightly";
  run.params = {{"epochs", int64_t{10}}, {"lr", 0.5}};
  const RunId first = CreateOrFail(*db, run);

  NewRun reordered = run;
  reordered.params = {{"lr", 0.5}, {"epochs", int64_t{10}}};
  auto same = db->CreateRun(reordered);
  REQUIRE(same.ok());
  CHECK(same->id == first);
  CHECK(same->existing);

  const std::string message = "idempotency key 'nightly' was already used for run " +
                              ToString(first) + " with other params";
  for (auto params : std::vector<std::vector<std::pair<std::string, dag::ParamValue>>>{
           {{"epochs", int64_t{20}}, {"lr", 0.5}},
           {{"epochs", 10.0}, {"lr", 0.5}},  // same number, other type
           {{"epochs", int64_t{10}}},
           {}}) {
    NewRun other = run;
    other.params = params;
    auto conflict = db->CreateRun(other);
    REQUIRE_FALSE(conflict.ok());
    CHECK(conflict.status().code() == ErrorCode::kConflict);
    CHECK(conflict.message() == message);
  }
  CHECK(t.One("SELECT count(*) FROM runs") == "1");
  CHECK(t.One("SELECT count(*) FROM events") == "1");

  // The same key in another pipeline is another run.
  NewRun elsewhere = run;
  elsewhere.pipeline = "etl";
  elsewhere.params = {};
  auto created = db->CreateRun(elsewhere);
  REQUIRE(created.ok());
  CHECK_FALSE(created->existing);

  // A scheduled run is deduplicated by its logical date alone.
  NewRun scheduled = SimpleRun({"a"});
  scheduled.trigger = "schedule";
  const RunId fired = CreateOrFail(*db, scheduled);
  scheduled.params = {{"epochs", int64_t{1}}};
  auto refired = db->CreateRun(scheduled);
  REQUIRE(refired.ok());
  CHECK(refired->id == fired);
  CHECK(refired->existing);
}

TEST_CASE("concurrent requests with one idempotency key create exactly one run") {
  TestDatabase t;
  constexpr int kThreads = 8;
  std::vector<std::unique_ptr<Database>> dbs;
  for (int i = 0; i < kThreads; ++i) dbs.push_back(t.Open());
  for (int round = 0; round < 5; ++round) {
    NewRun run = SimpleRun({"a", "b"});
    run.idempotency_key = "key-" + std::to_string(round);
    run.params = {{"epochs", int64_t{round}}};
    std::latch start(kThreads);
    std::vector<Result<CreatedRun>> results(kThreads, Status::Error("not run"));
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        results[i] = dbs[i]->CreateRun(run);
      });
    }
    for (auto& th : threads) th.join();
    int created = 0;
    for (const auto& r : results) {
      REQUIRE(r.ok());
      CHECK(r->id == results[0]->id);
      created += r->existing ? 0 : 1;
    }
    CHECK(created == 1);
    const std::string key = "'" + *run.idempotency_key + "'";
    CHECK(t.One("SELECT count(*) FROM runs WHERE idempotency_key = " + key) == "1");
    CHECK(t.One("SELECT count(*) FROM events WHERE run_id = " + ToString(results[0]->id)) == "1");
    CHECK(t.One("SELECT count(*) FROM task_instances WHERE run_id = " + ToString(results[0]->id)) ==
          "2");
  }
}

TEST_CASE("CreateRuns creates several runs in one transaction, each with its own result") {
  TestDatabase t;
  auto db = t.Open();
  NewRun first = SimpleRun({"a", "b"});
  first.idempotency_key = "k1";
  NewRun again = first;  // the same key and params: the first run, existing
  NewRun other = first;  // the same key, other params: a conflict for this one only
  other.params = {{"epochs", int64_t{3}}};
  NewRun plain = SimpleRun({"a"});
  std::vector<const NewRun*> runs = {&first, &again, &other, &plain};
  auto created = db->CreateRuns(runs);
  REQUIRE(created.ok());
  REQUIRE(created->size() == 4);
  REQUIRE((*created)[0].ok());
  CHECK_FALSE((*created)[0]->existing);
  REQUIRE((*created)[1].ok());
  CHECK((*created)[1]->id == (*created)[0]->id);
  CHECK((*created)[1]->existing);
  REQUIRE_FALSE((*created)[2].ok());
  CHECK((*created)[2].status().code() == ErrorCode::kConflict);
  CHECK((*created)[2].message() == "idempotency key 'k1' was already used for run " +
                                       ToString((*created)[0]->id) + " with other params");
  REQUIRE((*created)[3].ok());
  CHECK_FALSE((*created)[3]->existing);
  CHECK(t.One("SELECT count(*) FROM runs") == "2");
  CHECK(t.One("SELECT count(*) FROM task_instances") == "3");
  CHECK(t.One("SELECT count(*) FROM events WHERE kind = 'run_created'") == "2");
  auto read = db->GetRun((*created)[0]->id);
  REQUIRE(read.ok());
  REQUIRE(read->tasks.size() == 2);
  CHECK(read->tasks[0].task_id == "a");
  CHECK(read->tasks[1].task_id == "b");
}
