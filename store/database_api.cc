// Database: the operator's changes of the HTTP API (pause, events, retry, mark, cancel of an
// orphaned run). Each is one transaction that takes the event-order lock first (LockEventOrder):
// these transactions lock a run row and then append events, and CommitBatches takes the lock
// before it touches rows, so taking it first here keeps one lock order and no deadlock. They
// are rare; serializing them whole costs nothing that matters.
#include <nlohmann/json.hpp>

#include "common/text.h"
#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

using json = nlohmann::json;

// $1 pipeline, $2 paused, $3 actor, $4 the state in effect before (NULL: unknown). An event only
// for a change: pausing a paused pipeline (by a daemon or by its file) records nothing.
constexpr const char* kSetPaused = R"sql(
WITH upsert AS (
  INSERT INTO pipelines (name, paused, updated_by) VALUES ($1, $2::bool, $3)
  ON CONFLICT (name) DO UPDATE
  SET paused = excluded.paused, updated_at = now(), updated_by = excluded.updated_by
  RETURNING 1)
INSERT INTO events (at, pipeline, kind, actor)
SELECT now(), $1, CASE WHEN $2 THEN 'pipeline_paused' ELSE 'pipeline_unpaused' END, $3
FROM upsert WHERE $4::bool IS NULL OR $4::bool IS DISTINCT FROM $2::bool)sql";

// $1 run, $2 kind, $3 actor, $4 detail. Nothing when there is no such run.
constexpr const char* kRecordEvent = R"sql(
INSERT INTO events (at, run_id, pipeline, kind, actor, detail)
SELECT now(), id, pipeline, $2, $3, $4::jsonb FROM runs WHERE id = $1
RETURNING id)sql";

// The run row, locked until the end of the transaction (primary key).
constexpr const char* kLockRun = "SELECT state, pipeline FROM runs WHERE id = $1 FOR UPDATE";

// $1 run, $2 task ids (a JSON array): the first that the run does not have.
constexpr const char* kMissingTask = R"sql(
SELECT t FROM jsonb_array_elements_text($2::jsonb) AS t
WHERE NOT EXISTS (SELECT FROM task_instances WHERE run_id = $1 AND task_id = t)
LIMIT 1)sql";

// $1 run, $2 task ids, $3 pipeline, $4 run state before, $5 actor, $6 detail, $7 mapped tasks
// back to running, $8 mapped tasks whose instances are deleted.
constexpr const char* kRetry = R"sql(
WITH dropped AS (
  DELETE FROM task_instances
  WHERE run_id = $1 AND parent IN (SELECT jsonb_array_elements_text($8::jsonb))),
reopened AS (
  UPDATE task_instances
  SET state = 'running', exit_code = NULL, signal = NULL, ended_at = NULL, retry_at = NULL,
      lease_owner = NULL, lease_expires_at = NULL
  WHERE run_id = $1 AND task_id IN (SELECT jsonb_array_elements_text($7::jsonb))),
tasks AS (
  UPDATE task_instances
  SET state = 'pending', exit_code = NULL, signal = NULL, started_at = NULL, ended_at = NULL,
      retry_at = NULL, lease_owner = NULL, lease_expires_at = NULL, round_base = attempt
  WHERE run_id = $1 AND task_id IN (SELECT jsonb_array_elements_text($2::jsonb))),
run AS (
  UPDATE runs SET state = 'queued', ended_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
                  cancel_requested_at = NULL, cancel_reason = NULL
  WHERE id = $1)
INSERT INTO events (at, run_id, pipeline, kind, from_state, to_state, actor, detail)
VALUES (now(), $1, $3, 'run_retried', $4, 'queued', $5, $6::jsonb)
RETURNING id)sql";

// $1 run, $2 task, $3 state, $4 pipeline, $5 actor, $6 reason. Returns the state before; no row
// when the run has no such task.
constexpr const char* kMarkTask = R"sql(
WITH cur AS (SELECT state, attempt FROM task_instances WHERE run_id = $1 AND task_id = $2),
upd AS (
  UPDATE task_instances
  SET state = $3, ended_at = now(), retry_at = NULL, lease_expires_at = NULL
  WHERE run_id = $1 AND task_id = $2
  RETURNING 1)
INSERT INTO events (at, run_id, pipeline, task_id, attempt, kind, from_state, to_state, actor,
                    detail)
SELECT now(), $1, $4, $2, cur.attempt, 'task_marked', cur.state, $3, $5,
       jsonb_build_object('reason', $6::text)
FROM cur, upd
RETURNING from_state)sql";

// $1 run, $2 pipeline, $3 state before, $4 ended state after, $5 actor, $6 reason. A run that
// had ended keeps its ended_at.
constexpr const char* kEndRun = R"sql(
WITH upd AS (
  UPDATE runs
  SET state = $4, ended_at = coalesce(ended_at, now()), lease_owner = NULL,
      lease_expires_at = NULL
  WHERE id = $1)
INSERT INTO events (at, run_id, pipeline, kind, from_state, to_state, actor, detail)
VALUES (now(), $1, $2, 'run_state', $3, $4, $5, jsonb_build_object('reason', $6::text)))sql";

// $1 run, $2 pipeline, $3 actor, $4 reason. Every task that has not ended, through
// task_instances_active (run_id); the run's running attempts rows (attempts' primary key).
constexpr const char* kCancelTasks = R"sql(
WITH cur AS (
  SELECT task_id, state, attempt, position FROM task_instances
  WHERE run_id = $1 AND state IN ('pending', 'queued', 'running', 'up_for_retry', 'waiting')),
upd AS (
  UPDATE task_instances t
  SET state = 'cancelled', ended_at = now(), retry_at = NULL, lease_expires_at = NULL
  FROM cur WHERE t.run_id = $1 AND t.task_id = cur.task_id),
att AS (
  UPDATE attempts SET state = 'cancelled', ended_at = now(), reason = $4
  WHERE run_id = $1 AND state = 'running')
INSERT INTO events (at, run_id, pipeline, task_id, attempt, kind, from_state, to_state, actor,
                    detail)
SELECT now(), $1, $2, task_id, attempt, 'task_state', state, 'cancelled', $3,
       jsonb_build_object('reason', $4::text)
FROM cur ORDER BY position)sql";

// The locked run's state and pipeline; kNotFound when there is none.
struct LockedRun {
  dag::RunState state;
  std::string pipeline;
};

Result<LockedRun> LockRun(pqxx::work& txn, RunId run, std::string_view what) {
  pqxx::result rows = txn.exec_prepared("kiln_lock_run", Value(run));
  if (rows.empty()) {
    return Status::Error(ErrorCode::kNotFound, "run " + ToString(run) + " not found");
  }
  auto state = dag::ParseRunState(rows[0][0].c_str());
  if (!state) {
    return Status::Error("database: " + std::string(what) + ": unknown run state '" +
                         rows[0][0].as<std::string>() + "'");
  }
  return LockedRun{*state, rows[0][1].as<std::string>()};
}

Status NoSuchTask(RunId run, std::string_view task) {
  return Status::Error(ErrorCode::kNotFound,
                       "run " + ToString(run) + " has no task '" + std::string(task) + "'");
}

}  // namespace

void RegisterApiStatements(DatabaseImpl& impl) {
  impl.Prepare("kiln_set_paused", kSetPaused);
  impl.Prepare("kiln_record_event", kRecordEvent);
  impl.Prepare("kiln_lock_run", kLockRun);
  impl.Prepare("kiln_missing_task", kMissingTask);
  impl.Prepare("kiln_retry", kRetry);
  impl.Prepare("kiln_mark_task", kMarkTask);
  impl.Prepare("kiln_end_run", kEndRun);
  impl.Prepare("kiln_cancel_tasks", kCancelTasks);
}

Status Database::SetPaused(const std::string& pipeline, bool paused, std::string_view actor,
                           std::optional<bool> was) {
  const std::string what = std::string(paused ? "pausing" : "unpausing") + " '" + pipeline + "'";
  try {
    pqxx::work txn(impl_->conn, "set_paused");
    LockEventOrder(txn);
    txn.exec_prepared("kiln_set_paused", pipeline, paused, std::string(actor), was);
    // Every daemon on the database applies it at once (on this commit).
    txn.exec_params("SELECT pg_notify('kiln_pipelines', $1)", "pause " + SafeUtf8(pipeline));
    txn.commit();
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Status Database::AskReload(const std::string& asker) {
  try {
    pqxx::nontransaction txn(impl_->conn, "ask_reload");
    txn.exec_params("SELECT pg_notify('kiln_pipelines', $1)", "reload " + SafeUtf8(asker));
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("asking the daemons to reload their pipelines", e);
  }
}

Status Database::RecordEvent(std::string_view kind, RunId run, std::string_view actor,
                             const std::string& detail_json) {
  const std::string what = "recording event '" + std::string(kind) + "' of run " + ToString(run);
  try {
    pqxx::work txn(impl_->conn, "record_event");
    LockEventOrder(txn);
    pqxx::result rows = txn.exec_prepared("kiln_record_event", Value(run), std::string(kind),
                                          std::string(actor), detail_json);
    if (rows.empty()) {
      return Status::Error(ErrorCode::kNotFound, "run " + ToString(run) + " not found");
    }
    txn.commit();
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<RunRecord> Database::PrepareRetry(RunId run, std::span<const std::string> tasks,
                                         std::string_view actor, int64_t* event_id,
                                         const Reopen& reopen) {
  const std::string what = "retrying run " + ToString(run);
  try {
    pqxx::work txn(impl_->conn, "prepare_retry");
    LockEventOrder(txn);
    auto locked = LockRun(txn, run, what);
    if (!locked.ok()) return locked.status();
    if (!dag::IsTerminal(locked->state)) {
      return Status::Error(ErrorCode::kConflict, "run " + ToString(run) + " is still " +
                                                     std::string(dag::Name(locked->state)) +
                                                     "; wait for it to end or cancel it");
    }
    if (tasks.empty()) {
      return Status::Error(ErrorCode::kConflict, "run " + ToString(run) + " has nothing to re-run");
    }
    const std::string ids = json(std::vector<std::string>(tasks.begin(), tasks.end())).dump();
    pqxx::result missing = txn.exec_prepared("kiln_missing_task", Value(run), ids);
    if (!missing.empty()) return NoSuchTask(run, missing[0][0].as<std::string>());
    const json detail = {{"tasks", json::parse(ids)}};
    pqxx::result event = txn.exec_prepared(
        "kiln_retry", Value(run), ids, locked->pipeline, std::string(dag::Name(locked->state)),
        std::string(actor), detail.dump(), json(reopen.running).dump(), json(reopen.drop).dump());
    if (event_id != nullptr) *event_id = event[0][0].as<int64_t>();
    auto record = ReadRunWithTasks(txn, run, what);
    if (!record.ok()) return record.status();
    txn.commit();
    return record;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<RunRecord> Database::MarkTaskInEndedRun(
    RunId run, const std::string& task, dag::TaskState state, const std::string& reason,
    std::string_view actor, const std::function<dag::RunState(const RunRecord&)>& outcome) {
  if (state != dag::TaskState::kSuccess && state != dag::TaskState::kFailed) {
    return Status::Error(
        ErrorCode::kInvalidArgument,
        "a task can be marked success or failed, not '" + std::string(dag::Name(state)) + "'");
  }
  const std::string what = "marking run " + ToString(run) + " task '" + task + "'";
  const std::string to(dag::Name(state));
  try {
    pqxx::work txn(impl_->conn, "mark_task");
    LockEventOrder(txn);
    auto locked = LockRun(txn, run, what);
    if (!locked.ok()) return locked.status();
    if (!dag::IsTerminal(locked->state)) {
      return Status::Error(ErrorCode::kConflict, "run " + ToString(run) + " is still " +
                                                     std::string(dag::Name(locked->state)) +
                                                     "; it has not ended");
    }
    pqxx::result marked = txn.exec_prepared("kiln_mark_task", Value(run), task, to,
                                            locked->pipeline, std::string(actor), reason);
    if (marked.empty()) return NoSuchTask(run, task);
    auto record = ReadRunWithTasks(txn, run, what);
    if (!record.ok()) return record.status();
    const dag::RunState next = outcome(*record);
    KILN_CHECK(dag::IsTerminal(next));
    if (next != locked->state) {
      txn.exec_prepared("kiln_end_run", Value(run), locked->pipeline,
                        std::string(dag::Name(locked->state)), std::string(dag::Name(next)),
                        std::string(actor), "task '" + task + "' marked " + to);
      record->state = next;
    }
    txn.commit();
    return record;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<bool> Database::CancelOrphanedRun(RunId run, std::string_view actor,
                                         const std::string& reason) {
  const std::string what = "cancelling orphaned run " + ToString(run);
  try {
    pqxx::work txn(impl_->conn, "cancel_orphaned_run");
    LockEventOrder(txn);
    auto locked = LockRun(txn, run, what);
    if (!locked.ok()) return locked.status();
    if (dag::IsTerminal(locked->state)) return false;  // the rollback drops the notification
    txn.exec_prepared("kiln_cancel_tasks", Value(run), locked->pipeline, std::string(actor),
                      reason);
    txn.exec_prepared("kiln_end_run", Value(run), locked->pipeline,
                      std::string(dag::Name(locked->state)), "cancelled", std::string(actor),
                      reason);
    txn.commit();
    return true;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

}  // namespace kiln::store
