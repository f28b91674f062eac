// Database's writes for the HTTP API: pause state, recorded events, retry, mark, cancelling an
// orphaned run; and reading events back.
#include "tests/store/run_fixtures.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;
using Rows = std::vector<std::string>;
using dag::RunState;
using dag::TaskState;

namespace {

const std::string kEventColumns =
    "SELECT kind, run_id, pipeline, task_id, attempt, from_state, to_state, actor, detail::text "
    "FROM events";

// The run's rows as text, to show that a refused call changed nothing.
Rows Snapshot(TestDatabase& t) {
  Rows rows = t.Rows("SELECT * FROM runs ORDER BY id");
  for (const char* table : {"task_instances", "attempts", "events", "pipelines"}) {
    for (auto& row : t.Rows(std::string("SELECT * FROM ") + table + " ORDER BY 1, 2, 3")) {
      rows.push_back(row);
    }
  }
  return rows;
}

void CheckError(const Status& s, ErrorCode code, const std::string& message) {
  CHECK(s.code() == code);
  CHECK(s.message() == message);
}

}  // namespace

TEST_CASE("SetPaused records the pause state and an event") {
  TestDatabase t;
  auto db = t.Open();
  auto none = db->PausedPipelines();
  REQUIRE(none.ok());
  CHECK(none->empty());

  REQUIRE(db->SetPaused("train", true, "ops").ok());
  auto paused = db->PausedPipelines();
  REQUIRE(paused.ok());
  CHECK(*paused == std::map<std::string, bool>{{"train", true}});
  CHECK(t.Rows("SELECT name, paused, updated_by FROM pipelines") == Rows{"train|t|ops"});

  REQUIRE(db->SetPaused("train", false, "admin").ok());
  REQUIRE(db->SetPaused("etl", true, "ops").ok());
  paused = db->PausedPipelines();
  REQUIRE(paused.ok());
  CHECK(*paused == std::map<std::string, bool>{{"etl", true}, {"train", false}});
  CHECK(t.Rows("SELECT name, paused, updated_by, updated_at = (SELECT max(at) FROM events WHERE "
               "pipeline = name) FROM pipelines ORDER BY name") ==
        Rows{"etl|t|ops|t", "train|f|admin|t"});
  CHECK(t.Rows(kEventColumns + " ORDER BY id") ==
        Rows{"pipeline_paused|NULL|train|NULL|NULL|NULL|NULL|ops|{}",
             "pipeline_unpaused|NULL|train|NULL|NULL|NULL|NULL|admin|{}",
             "pipeline_paused|NULL|etl|NULL|NULL|NULL|NULL|ops|{}"});
}

TEST_CASE("RecordEvent appends an event of a run with its pipeline") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = CreateOrFail(*db, SimpleRun({"a"}));
  const std::string id = ToString(run);
  REQUIRE(db->RecordEvent("cancel_requested", run, "ops", R"({"why": "wrong data"})").ok());
  CHECK(t.Rows(kEventColumns + " WHERE kind = 'cancel_requested'") ==
        Rows{"cancel_requested|" + id + R"(|train|NULL|NULL|NULL|NULL|ops|{"why": "wrong data"})"});

  CheckError(db->RecordEvent("cancel_requested", RunId(999), "ops", "{}"), ErrorCode::kNotFound,
             "run 999 not found");
  Status bad = db->RecordEvent("cancel_requested", run, "ops", "{not json");
  CHECK(bad.code() == ErrorCode::kInternal);
  CHECK_THAT(bad.message(),
             Catch::StartsWith("database: recording event 'cancel_requested' of run " + id +
                               ": ERROR: invalid input syntax for type json"));
  CHECK(t.One("SELECT count(*) FROM events") == "2");
}

TEST_CASE("ListEvents reads after an id, by pipeline and by run") {
  TestDatabase t;
  auto db = t.Open();
  auto zero = db->LastEventId();
  REQUIRE(zero.ok());
  CHECK(*zero == 0);

  const RunId run = CreateOrFail(*db, SimpleRun({"a"}));
  NewRun etl = SimpleRun({"a"});
  etl.pipeline = "etl";
  const RunId other = CreateOrFail(*db, etl);
  REQUIRE(db->SetPaused("etl", true, "ops").ok());
  REQUIRE(db->RecordEvent("cancel_requested", run, "ops", "{}").ok());

  auto all = db->ListEvents(EventFilter{});
  REQUIRE(all.ok());
  REQUIRE(all->size() == 4);
  std::vector<int64_t> ids;
  for (const EventRecord& e : *all) ids.push_back(e.id);
  CHECK(std::is_sorted(ids.begin(), ids.end()));
  CHECK((*all)[0].kind == "run_created");
  CHECK((*all)[0].run == run);
  CHECK((*all)[0].pipeline == "train");
  CHECK((*all)[0].to_state == "queued");
  CHECK((*all)[0].actor == "tester");
  const EventRecord& pause = (*all)[2];
  CHECK(pause.kind == "pipeline_paused");
  CHECK_FALSE(pause.run);
  CHECK(pause.pipeline == "etl");
  CHECK_FALSE(pause.task_id);
  CHECK_FALSE(pause.attempt);
  CHECK_FALSE(pause.from_state);
  CHECK(pause.actor == "ops");
  CHECK(pause.detail == "{}");

  auto last = db->LastEventId();
  REQUIRE(last.ok());
  CHECK(*last == ids[3]);

  auto kinds = [&](const EventFilter& f) {
    auto events = db->ListEvents(f);
    REQUIRE(events.ok());
    Rows out;
    for (const EventRecord& e : *events) out.push_back(std::to_string(e.id) + ":" + e.kind);
    return out;
  };
  const Rows names = {
      std::to_string(ids[0]) + ":run_created", std::to_string(ids[1]) + ":run_created",
      std::to_string(ids[2]) + ":pipeline_paused", std::to_string(ids[3]) + ":cancel_requested"};
  CHECK(kinds(Events(ids[0])) == Rows{names[1], names[2], names[3]});
  CHECK(kinds(Events(ids[3])).empty());
  CHECK(kinds(Events(0, "etl")) == Rows{names[1], names[2]});
  CHECK(kinds(Events(ids[1], "etl")) == Rows{names[2]});
  CHECK(kinds(Events(0, std::nullopt, run)) == Rows{names[0], names[3]});
  CHECK(kinds(Events(0, std::nullopt, other)) == Rows{names[1]});
  CHECK(kinds(Events(0, "etl", run)).empty());
  CHECK(kinds(Events(0, std::nullopt, std::nullopt, 2)) == Rows{names[0], names[1]});
  CHECK(kinds(Events(0, std::nullopt, std::nullopt, 0)) == Rows{names[0]});  // at least one

  auto by_run = db->ListEvents(run);
  REQUIRE(by_run.ok());
  REQUIRE(by_run->size() == 2);
  CHECK((*by_run)[1].kind == "cancel_requested");
}

TEST_CASE("PrepareRetry puts the named tasks and the run back in the queue") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = FailedRun(*db);
  const std::string id = ToString(run);
  const std::vector<std::string> tasks = {"train", "evaluate"};
  auto retried = db->PrepareRetry(run, tasks, "ops");
  REQUIRE(retried.ok());
  CHECK(retried->id == run);
  CHECK(retried->state == RunState::kQueued);
  CHECK(retried->started_at == At(1));
  CHECK_FALSE(retried->ended_at);
  REQUIRE(retried->tasks.size() == 3);
  CHECK(retried->tasks[0].state == TaskState::kSuccess);
  CHECK(retried->tasks[0].attempt == 1);
  CHECK(retried->tasks[1].state == TaskState::kPending);
  CHECK(retried->tasks[1].attempt == 2);
  CHECK_FALSE(retried->tasks[1].exit_code);
  CHECK_FALSE(retried->tasks[1].started_at);
  CHECK_FALSE(retried->tasks[1].ended_at);
  CHECK(retried->tasks[2].state == TaskState::kPending);

  CHECK(t.Rows("SELECT task_id, state, attempt, lease_owner, lease_expires_at, retry_at, "
               "exit_code, signal, started_at, ended_at FROM task_instances ORDER BY position") ==
        Rows{"prepare|success|1|worker-1|NULL|NULL|0|NULL|2026-11-29 00:00:01+00|"
             "2026-11-29 00:00:02+00",
             "train|pending|2|NULL|NULL|NULL|NULL|NULL|NULL|NULL",
             "evaluate|pending|0|NULL|NULL|NULL|NULL|NULL|NULL|NULL"});
  CHECK(t.One("SELECT state, started_at, ended_at FROM runs") ==
        "queued|2026-11-29 00:00:01+00|NULL");
  CHECK(t.Rows("SELECT task_id, attempt, state FROM attempts ORDER BY 1, 2") ==
        Rows{"prepare|1|success", "train|1|failed", "train|2|failed"});
  CHECK(t.Rows(kEventColumns + " ORDER BY id DESC LIMIT 1") ==
        Rows{"run_retried|" + id +
             R"(|train|NULL|NULL|failed|queued|ops|{"tasks": ["train", "evaluate"]})"});

  // The scheduler goes on from the kept attempt number: attempt 3 starts, attempt 2 is fenced.
  scheduler::Batch start;
  start.runs.push_back({run, RunState::kRunning, At(20), ""});
  start.tasks.push_back(StartUpdate(run, "train", 3, At(20)));
  CommitNow(*db, start);
  CHECK(t.One("SELECT state, attempt FROM task_instances WHERE task_id = 'train'") == "running|3");

  // Active again: a second retry is refused.
  CheckError(db->PrepareRetry(run, tasks, "ops").status(), ErrorCode::kConflict,
             "run " + id + " is still running; wait for it to end or cancel it");
}

TEST_CASE("PrepareRetry refuses unknown runs and tasks, active runs, and nothing to do") {
  TestDatabase t;
  auto db = t.Open();
  const RunId failed = FailedRun(*db);
  const RunId queued = CreateOrFail(*db, SimpleRun({"a"}));
  const std::vector<std::string> tasks = {"train"};
  const Rows before = Snapshot(t);

  CheckError(db->PrepareRetry(RunId(999), tasks, "ops").status(), ErrorCode::kNotFound,
             "run 999 not found");
  CheckError(db->PrepareRetry(queued, tasks, "ops").status(), ErrorCode::kConflict,
             "run " + ToString(queued) + " is still queued; wait for it to end or cancel it");
  const std::vector<std::string> unknown = {"train", "nope"};
  CheckError(db->PrepareRetry(failed, unknown, "ops").status(), ErrorCode::kNotFound,
             "run " + ToString(failed) + " has no task 'nope'");
  CheckError(db->PrepareRetry(failed, {}, "ops").status(), ErrorCode::kConflict,
             "run " + ToString(failed) + " has nothing to re-run");
  CHECK(Snapshot(t) == before);
}

TEST_CASE("MarkTaskInEndedRun sets the task and recomputes the run") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = FailedRun(*db);
  const std::string id = ToString(run);
  std::vector<std::string> seen;
  // Success when no task failed, as the scheduler's rules would say for this run.
  auto outcome = [&](const RunRecord& r) {
    std::string states;
    bool failed = false;
    for (const TaskInstanceRecord& task : r.tasks) {
      states += std::string(states.empty() ? "" : ",") + std::string(dag::Name(task.state));
      failed =
          failed || task.state == TaskState::kFailed || task.state == TaskState::kUpstreamFailed;
    }
    seen.push_back(states);
    return failed ? RunState::kFailed : RunState::kSuccess;
  };

  auto marked = db->MarkTaskInEndedRun(run, "train", TaskState::kSuccess, "checked by hand",
                                       "admin", outcome);
  REQUIRE(marked.ok());
  CHECK(seen == Rows{"success,success,upstream_failed"});
  CHECK(marked->state == RunState::kFailed);
  CHECK(marked->tasks[1].state == TaskState::kSuccess);
  CHECK(marked->tasks[1].attempt == 2);
  CHECK(t.Rows(kEventColumns + " WHERE id > (SELECT max(id) - 1 FROM events) ORDER BY id") ==
        Rows{"task_marked|" + id +
             R"(|train|train|2|failed|success|admin|{"reason": "checked by hand"})"});
  CHECK(t.One("SELECT t.state, t.exit_code, t.ended_at = e.at FROM task_instances t, events e "
              "WHERE t.task_id = 'train' AND e.kind = 'task_marked'") == "success|3|t");

  marked = db->MarkTaskInEndedRun(run, "evaluate", TaskState::kSuccess, "", "admin", outcome);
  REQUIRE(marked.ok());
  CHECK(seen.back() == "success,success,success");
  CHECK(marked->state == RunState::kSuccess);
  CHECK(marked->ended_at == At(6));
  CHECK(t.One("SELECT state, ended_at FROM runs") == "success|2026-11-29 00:00:06+00");
  CHECK(t.Rows(kEventColumns + " WHERE id > (SELECT max(id) - 2 FROM events) ORDER BY id") ==
        Rows{"task_marked|" + id +
                 R"(|train|evaluate|0|upstream_failed|success|admin|{"reason": ""})",
             "run_state|" + id + "|train|NULL|NULL|failed|success|admin|" +
                 R"({"reason": "task 'evaluate' marked success"})"});

  auto reread = db->GetRun(run);
  REQUIRE(reread.ok());
  CHECK(reread->state == RunState::kSuccess);
}

TEST_CASE("MarkTaskInEndedRun refuses bad states, unknown runs and tasks, and active runs") {
  TestDatabase t;
  auto db = t.Open();
  const RunId failed = FailedRun(*db);
  const RunId running = RunningRun(*db);
  int calls = 0;
  auto outcome = [&](const RunRecord&) {
    ++calls;
    return RunState::kSuccess;
  };
  const Rows before = Snapshot(t);
  CheckError(
      db->MarkTaskInEndedRun(failed, "train", TaskState::kRunning, "", "admin", outcome).status(),
      ErrorCode::kInvalidArgument, "a task can be marked success or failed, not 'running'");
  CheckError(db->MarkTaskInEndedRun(RunId(999), "train", TaskState::kFailed, "", "admin", outcome)
                 .status(),
             ErrorCode::kNotFound, "run 999 not found");
  CheckError(
      db->MarkTaskInEndedRun(running, "b", TaskState::kFailed, "", "admin", outcome).status(),
      ErrorCode::kConflict, "run " + ToString(running) + " is still running; it has not ended");
  CheckError(
      db->MarkTaskInEndedRun(failed, "nope", TaskState::kFailed, "", "admin", outcome).status(),
      ErrorCode::kNotFound, "run " + ToString(failed) + " has no task 'nope'");
  CHECK(calls == 0);
  CHECK(Snapshot(t) == before);
}

TEST_CASE("CancelOrphanedRun ends every unfinished task and the run") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = RunningRun(*db);
  const std::string id = ToString(run);
  const int64_t last = *db->LastEventId();

  auto cancelled = db->CancelOrphanedRun(run, "host:2", "daemon host:1 is gone");
  REQUIRE(cancelled.ok());
  CHECK(*cancelled);
  const std::string at = t.One("SELECT at FROM events ORDER BY id DESC LIMIT 1");
  CHECK(t.Rows("SELECT task_id, state, attempt, lease_owner, lease_expires_at, retry_at, "
               "ended_at FROM task_instances ORDER BY position") ==
        Rows{"a|success|1|worker-1|NULL|NULL|2026-11-29 00:00:02+00",
             "b|cancelled|1|worker-1|NULL|NULL|" + at, "c|cancelled|1|worker-1|NULL|NULL|" + at,
             "d|cancelled|0|NULL|NULL|NULL|" + at});
  CHECK(t.Rows("SELECT task_id, attempt, state, ended_at, reason FROM attempts ORDER BY 1") ==
        Rows{"a|1|success|2026-11-29 00:00:02+00|",
             "b|1|cancelled|" + at + "|daemon host:1 is gone",
             "c|1|failed|2026-11-29 00:00:02+00|exit code 1"});
  CHECK(t.One("SELECT state, ended_at FROM runs") == "cancelled|" + at);
  const std::string detail = R"(|host:2|{"reason": "daemon host:1 is gone"})";
  CHECK(t.Rows(kEventColumns + " WHERE id > " + std::to_string(last) + " ORDER BY id") ==
        Rows{"task_state|" + id + "|train|b|1|running|cancelled" + detail,
             "task_state|" + id + "|train|c|1|up_for_retry|cancelled" + detail,
             "task_state|" + id + "|train|d|0|pending|cancelled" + detail,
             "run_state|" + id + "|train|NULL|NULL|running|cancelled" + detail});

  // Ended: nothing to do, nothing written.
  const Rows before = Snapshot(t);
  auto again = db->CancelOrphanedRun(run, "host:2", "again");
  REQUIRE(again.ok());
  CHECK_FALSE(*again);
  CHECK(Snapshot(t) == before);

  // A late report of the lost daemon is fenced.
  scheduler::Batch late;
  late.tasks.push_back(EndUpdate(run, "b", 1, TaskState::kSuccess, At(30), 0));
  const scheduler::Batch* group[] = {&late};
  auto fenced = db->CommitBatches(group, "host:1", std::chrono::minutes(5));
  REQUIRE(fenced.ok());
  CHECK(fenced->size() == 1);
  CHECK(t.One("SELECT state FROM task_instances WHERE task_id = 'b'") == "cancelled");

  CheckError(db->CancelOrphanedRun(RunId(999), "host:2", "").status(), ErrorCode::kNotFound,
             "run 999 not found");
}
