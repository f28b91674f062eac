// Database::CommitBatches: scheduler transitions with fencing, one statement per update.
//
// Each update is a single prepared statement whose CTEs change the task (or run) row only when
// the fencing condition holds, write the attempts row only when that change happened, and always
// append the event ('task_state' / 'run_state', or 'fenced' when nothing changed) with the
// run's pipeline. The transaction takes the event-order lock first (LockEventOrder). Updates run
// one after another in the same transaction, so two updates of the same task in one group see
// each other. A batch of n updates costs n + 3 round trips (BEGIN, the lock, n statements, COMMIT).
#include <nlohmann/json.hpp>

#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

using json = nlohmann::json;
using scheduler::TaskUpdate;

constexpr std::string_view kTerminalTaskStates =
    "('success', 'failed', 'skipped', 'upstream_failed', 'cancelled')";

// Parameters shared by the three task statements: $1 run, $2 task, $3 attempt, $4 state, $5 at,
// $6 actor, $7 detail. The statement returns (fenced, found state, found attempt).
std::string TaskStatement(std::string_view set, std::string_view fence,
                          std::string_view attempt_cte) {
  std::string sql =
      "WITH cur AS (SELECT state, attempt FROM task_instances WHERE run_id = $1::int8 AND "
      "task_id = $2::text), upd AS (UPDATE task_instances SET state = $4::text, ";
  sql += std::string(set) + " WHERE run_id = $1 AND task_id = $2 AND " + std::string(fence) +
         " RETURNING 1)" + std::string(attempt_cte);
  sql +=
      " INSERT INTO events (at, run_id, pipeline, task_id, attempt, kind, from_state, to_state, "
      "actor, detail) SELECT $5::timestamptz, $1, (SELECT pipeline FROM runs WHERE id = $1), $2, "
      "$3::int, CASE WHEN EXISTS (SELECT FROM upd) THEN "
      "'task_state' ELSE 'fenced' END, (SELECT state FROM cur), $4, $6::text, CASE WHEN EXISTS "
      "(SELECT FROM upd) THEN $7::jsonb ELSE $7::jsonb || jsonb_build_object('found_attempt', "
      "(SELECT attempt FROM cur)) END RETURNING kind = 'fenced', from_state, (SELECT attempt FROM "
      "cur)";
  return sql;
}

// $8 log_path, $9 lease_owner, $10 lease_expires_at.
std::string StartStatement() {
  return TaskStatement(
      "attempt = $3, lease_owner = $9::text, lease_expires_at = $10::timestamptz, retry_at = "
      "NULL, exit_code = NULL, signal = NULL, started_at = $5::timestamptz, ended_at = NULL",
      "attempt = $3 - 1 AND state NOT IN " + std::string(kTerminalTaskStates),
      ", att AS (INSERT INTO attempts (run_id, task_id, attempt, state, log_path, lease_owner, "
      "started_at) SELECT $1, $2, $3, 'running', $8::text, $9, $5::timestamptz FROM upd)");
}

// $8 exit_code, $9 signal, $10 timed_out, $11 cpu_ms, $12 max_rss_kb, $13 reason, $14 retry_at,
// $15 attempt state, $16 terminal.
std::string EndStatement() {
  return TaskStatement(
      "exit_code = $8::int, signal = $9::int, retry_at = $14::timestamptz, lease_expires_at = "
      "NULL, ended_at = CASE WHEN $16::bool THEN $5::timestamptz END",
      "state = 'running' AND attempt = $3",
      ", att AS (UPDATE attempts SET state = $15::text, ended_at = $5::timestamptz, exit_code = "
      "$8, signal = "
      "$9, timed_out = $10::bool, cpu_ms = $11::int8, max_rss_kb = $12::int8, reason = "
      "$13::text WHERE run_id = $1 AND task_id = $2 AND attempt = $3 AND EXISTS (SELECT FROM "
      "upd))");
}

// $8 retry_at, $9 terminal.
std::string PlainStatement() {
  return TaskStatement(
      "retry_at = $8::timestamptz, lease_expires_at = CASE WHEN $4 = 'running' THEN "
      "lease_expires_at END, ended_at = CASE WHEN $9::bool THEN $5::timestamptz ELSE ended_at END",
      "state NOT IN " + std::string(kTerminalTaskStates), "");
}

// $1 run, $2 state, $3 at, $4 actor, $5 detail, $6 terminal.
constexpr const char* kRunStatement = R"sql(
WITH cur AS (SELECT state FROM runs WHERE id = $1::int8),
upd AS (
  UPDATE runs SET state = $2::text,
    started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, $3::timestamptz)
                      ELSE started_at END,
    ended_at = CASE WHEN $6::bool THEN $3::timestamptz END
  WHERE id = $1 AND state NOT IN ('success', 'failed', 'cancelled')
  RETURNING 1)
INSERT INTO events (at, run_id, pipeline, kind, from_state, to_state, actor, detail)
SELECT $3, $1, (SELECT pipeline FROM runs WHERE id = $1),
       CASE WHEN EXISTS (SELECT FROM upd) THEN 'run_state' ELSE 'fenced' END,
       (SELECT state FROM cur), $2, $4::text, $5::jsonb
RETURNING kind = 'fenced', from_state)sql";

std::string Detail(const std::string& reason) {
  json detail = json::object();
  if (!reason.empty()) detail["reason"] = reason;
  return detail.dump();
}

// What the attempts row records as the outcome of its attempt.
std::string AttemptState(dag::TaskState state) {
  switch (state) {
    case dag::TaskState::kSuccess:
    case dag::TaskState::kSkipped:
    case dag::TaskState::kCancelled:
      return std::string(dag::Name(state));
    default:
      return "failed";
  }
}

pqxx::result ExecTask(pqxx::work& txn, const TaskUpdate& u, const std::string& actor,
                      Duration lease) {
  const std::string state(dag::Name(u.state));
  const std::string at = TimeParam(u.at);
  const std::string detail = Detail(u.reason);
  const int64_t run = Value(u.run);
  if (u.start) {
    const std::string& owner = u.start->lease_owner.empty() ? actor : u.start->lease_owner;
    return txn.exec_prepared("kiln_task_start", run, u.task_id, u.attempt, state, at, actor, detail,
                             u.start->log_path, owner, TimeParam(u.at + lease));
  }
  if (u.end) {
    const scheduler::AttemptEnd& e = *u.end;
    return txn.exec_prepared(
        "kiln_task_end", run, u.task_id, u.attempt, state, at, actor, detail, e.exit_code, e.signal,
        e.timed_out, static_cast<int64_t>(e.cpu.count()), e.max_rss_kb, e.reason,
        TimeParam(u.retry_at), AttemptState(u.state), dag::IsTerminal(u.state));
  }
  return txn.exec_prepared("kiln_task_plain", run, u.task_id, u.attempt, state, at, actor, detail,
                           TimeParam(u.retry_at), dag::IsTerminal(u.state));
}

std::optional<FencedUpdate> ApplyTask(pqxx::work& txn, const TaskUpdate& u,
                                      const std::string& actor, Duration lease) {
  KILN_CHECK(!(u.start && u.end));
  pqxx::row row = ExecTask(txn, u, actor, lease).at(0);
  if (!row[0].as<bool>()) return std::nullopt;
  return FencedUpdate{u.run,
                      u.task_id,
                      u.attempt,
                      std::string(dag::Name(u.state)),
                      Opt<std::string>(row[1]),
                      Opt<int>(row[2])};
}

std::optional<FencedUpdate> ApplyRun(pqxx::work& txn, const scheduler::RunUpdate& u,
                                     const std::string& actor) {
  pqxx::row row =
      txn.exec_prepared("kiln_run_update", Value(u.run), std::string(dag::Name(u.state)),
                        TimeParam(u.at), actor, Detail(u.reason), dag::IsTerminal(u.state))
          .at(0);
  if (!row[0].as<bool>()) return std::nullopt;
  return FencedUpdate{u.run,       "", 0, std::string(dag::Name(u.state)), Opt<std::string>(row[1]),
                      std::nullopt};
}

}  // namespace

void RegisterBatchStatements(DatabaseImpl& impl) {
  impl.Prepare("kiln_task_start", StartStatement());
  impl.Prepare("kiln_task_end", EndStatement());
  impl.Prepare("kiln_task_plain", PlainStatement());
  impl.Prepare("kiln_run_update", kRunStatement);
}

std::string FencedUpdate::Describe() const {
  std::string subject = "run " + ToString(run);
  if (!task_id.empty()) {
    subject += " task '" + task_id + "' attempt " + std::to_string(attempt);
  }
  std::string found = !found_state ? "no such row"
                                   : "it is " + *found_state +
                                         (found_attempt && !task_id.empty()
                                              ? " at attempt " + std::to_string(*found_attempt)
                                              : "");
  return subject + ": late update to " + wanted + " ignored (" + found + ")";
}

Result<std::vector<FencedUpdate>> Database::CommitBatches(
    std::span<const scheduler::Batch* const> batches, std::string_view actor, Duration lease) {
  size_t updates = 0;
  for (const scheduler::Batch* b : batches) updates += b->tasks.size() + b->runs.size();
  const std::string actor_text(actor);
  try {
    pqxx::work txn(impl_->conn, "commit_batch");
    // Every update appends an event, in its first statement.
    if (updates > 0) LockEventOrder(txn);
    std::vector<FencedUpdate> fenced;
    auto apply_runs = [&](const scheduler::Batch& b, bool terminal) {
      for (const scheduler::RunUpdate& u : b.runs) {
        if (dag::IsTerminal(u.state) != terminal) continue;
        if (auto f = ApplyRun(txn, u, actor_text)) fenced.push_back(std::move(*f));
      }
    };
    for (const scheduler::Batch* b : batches) {
      apply_runs(*b, false);
      for (const TaskUpdate& u : b->tasks) {
        if (auto f = ApplyTask(txn, u, actor_text, lease)) fenced.push_back(std::move(*f));
      }
      apply_runs(*b, true);
    }
    txn.commit();
    return fenced;
  } catch (const std::exception& e) {
    return DbError("committing " + std::to_string(updates) + " state changes", e);
  }
}

}  // namespace kiln::store
