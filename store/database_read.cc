// Database's read side: one run, events and attempts as records.
#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

using json = nlohmann::json;

// The most events one ListEvents returns.
constexpr int kMaxEvents = 10000;

std::string EventColumns() {
  return "id, " + EpochMs("at") +
         ", run_id, pipeline, task_id, attempt, kind, from_state, to_state, actor, detail::text";
}

std::string AttemptColumns() {
  return "attempt, state, log_path, lease_owner, " + EpochMs("started_at") + ", " +
         EpochMs("ended_at") +
         ", exit_code, signal, timed_out, cpu_ms, max_rss_kb, reason, results::text, "
         "coalesce(worker, '')";
}

Result<dag::TaskState> TaskState(const pqxx::field& f) {
  auto state = dag::ParseTaskState(f.c_str());
  if (!state) return Status::Error("unknown task state '" + std::string(f.c_str()) + "'");
  return *state;
}

EventRecord ReadEvent(const pqxx::row& row) {
  EventRecord e;
  e.id = row[0].as<int64_t>();
  e.at = InstantFromMs(row[1].as<int64_t>());
  if (auto run = Opt<int64_t>(row[2])) e.run = RunId(*run);
  e.pipeline = row[3].is_null() ? "" : row[3].as<std::string>();
  e.task_id = Opt<std::string>(row[4]);
  e.attempt = Opt<int>(row[5]);
  e.kind = row[6].as<std::string>();
  e.from_state = Opt<std::string>(row[7]);
  e.to_state = Opt<std::string>(row[8]);
  e.actor = row[9].as<std::string>();
  e.detail = row[10].as<std::string>();
  return e;
}

AttemptRecord ReadAttempt(RunId id, std::string_view task_id, const pqxx::row& row) {
  AttemptRecord a;
  a.run = id;
  a.task_id = std::string(task_id);
  a.attempt = row[0].as<int>();
  a.state = row[1].as<std::string>();
  a.log_path = row[2].as<std::string>();
  a.lease_owner = row[3].as<std::string>();
  a.started_at = InstantFromMs(row[4].as<int64_t>());
  a.ended_at = OptInstant(row[5]);
  a.exit_code = Opt<int>(row[6]);
  a.signal = Opt<int>(row[7]);
  a.timed_out = row[8].as<bool>();
  if (auto cpu = Opt<int64_t>(row[9])) a.cpu = Duration(*cpu);
  a.max_rss_kb = Opt<int64_t>(row[10]);
  a.reason = row[11].as<std::string>();
  if (!row[12].is_null()) a.results = row[12].as<std::string>();
  a.worker = row[13].as<std::string>();
  return a;
}

// Events with id > filter.after matching the filter, oldest first, at most `limit` (none: all).
// Planned per call with the values, the query reads one index range: events_by_run (run_id, id)
// with a run, events_by_pipeline (pipeline, id) with a pipeline, else the primary key from
// `after` (also chosen with a pipeline when few events follow `after`, as for a stream that has
// caught up).
// Planned at each call (an unnamed statement), not prepared: a generic plan is chosen by the
// table's statistics, and with them it may scan the primary key from `after` past every other
// run's events (measured: a stream's read costs PostgreSQL about 0.1 ms, most of it planning).
std::vector<EventRecord> ReadEvents(pqxx::transaction_base& txn, const EventFilter& filter,
                                    std::optional<int> limit) {
  std::string sql = "SELECT " + EventColumns() + " FROM events WHERE id > $1::int8";
  std::vector<std::string> params = {std::to_string(filter.after)};
  if (filter.run) {
    params.push_back(ToString(*filter.run));
    sql += " AND run_id = $" + std::to_string(params.size()) + "::int8";
  }
  if (filter.pipeline) {
    params.push_back(*filter.pipeline);
    sql += " AND pipeline = $" + std::to_string(params.size());
  }
  sql += " ORDER BY id";
  if (limit) {
    params.push_back(std::to_string(*limit));
    sql += " LIMIT $" + std::to_string(params.size()) + "::int8";
  }
  std::vector<EventRecord> events;
  for (const pqxx::row& row : txn.exec_params(sql, pqxx::prepare::make_dynamic_params(params))) {
    events.push_back(ReadEvent(row));
  }
  return events;
}

}  // namespace

// The inverse of the jsonb that CreateRun writes.
std::vector<std::pair<std::string, dag::ParamValue>> ParseParams(const std::string& text) {
  std::vector<std::pair<std::string, dag::ParamValue>> out;
  for (const json& p : json::parse(text)) {
    const std::string type = p.at("type").get<std::string>();
    const json& v = p.at("value");
    dag::ParamValue value;
    if (type == "integer") {
      value = v.get<int64_t>();
    } else if (type == "float") {
      value = v.is_string() ? std::strtod(v.get<std::string>().c_str(), nullptr) : v.get<double>();
    } else if (type == "boolean") {
      value = v.get<bool>();
    } else {
      value = v.get<std::string>();
    }
    out.emplace_back(p.at("name").get<std::string>(), std::move(value));
  }
  return out;
}

std::string RunColumns() {
  return "pipeline, version_hash, trigger, " + EpochMs("logical_date") + ", " +
         EpochMs("data_interval_start") + ", " + EpochMs("data_interval_end") +
         ", params::text, state, idempotency_key, created_by, note, " + EpochMs("created_at") +
         ", " + EpochMs("started_at") + ", " + EpochMs("ended_at") + ", triggered_by, backfill_id";
}

std::string TaskColumns() {
  return "task_id, state, attempt, pool, priority, exit_code, signal, " + EpochMs("started_at") +
         ", " + EpochMs("ended_at") + ", " + EpochMs("retry_at") +
         ", round_base, waiting_for, parent, map_index, item::text";
}

Result<TaskInstanceRecord> ReadTask(const pqxx::row& row) {
  TaskInstanceRecord t;
  t.task_id = row[0].as<std::string>();
  auto state = TaskState(row[1]);
  if (!state.ok()) return state.status();
  t.state = *state;
  t.attempt = row[2].as<int>();
  t.pool = row[3].as<std::string>();
  t.priority = row[4].as<int>();
  t.exit_code = Opt<int>(row[5]);
  t.signal = Opt<int>(row[6]);
  t.started_at = OptInstant(row[7]);
  t.ended_at = OptInstant(row[8]);
  t.retry_at = OptInstant(row[9]);
  t.round_base = row[10].as<int>();
  if (t.state == dag::TaskState::kWaiting) t.waiting_for = row[11].as<std::string>("");
  if (t.started_at && t.ended_at) t.duration = *t.ended_at - *t.started_at;
  if (!row[12].is_null()) {
    t.parent = row[12].as<std::string>();
    t.map_index = row[13].as<int>(0);
    t.item = row[14].as<std::string>("null");
  }
  return t;
}

Result<RunRecord> ReadRun(RunId id, const pqxx::row& row) {
  RunRecord r;
  r.id = id;
  r.pipeline = row[0].as<std::string>();
  r.version_hash = row[1].as<std::string>();
  r.trigger = row[2].as<std::string>();
  r.logical_date = InstantFromMs(row[3].as<int64_t>());
  r.data_interval_start = OptInstant(row[4]);
  r.data_interval_end = OptInstant(row[5]);
  r.params = ParseParams(row[6].as<std::string>());
  auto state = dag::ParseRunState(row[7].c_str());
  if (!state) return Status::Error("unknown run state '" + std::string(row[7].c_str()) + "'");
  r.state = *state;
  r.idempotency_key = Opt<std::string>(row[8]);
  r.created_by = row[9].as<std::string>();
  r.note = row[10].as<std::string>();
  r.created_at = InstantFromMs(row[11].as<int64_t>());
  r.started_at = OptInstant(row[12]);
  r.ended_at = OptInstant(row[13]);
  if (!row[14].is_null()) r.triggered_by = RunId(row[14].as<int64_t>());
  r.backfill = Opt<int64_t>(row[15]);
  return r;
}

Result<RunRecord> ReadRunWithTasks(pqxx::transaction_base& txn, RunId id, std::string_view what) {
  pqxx::result runs =
      txn.exec_params("SELECT " + RunColumns() + " FROM runs WHERE id = $1", Value(id));
  if (runs.empty()) {
    return Status::Error(ErrorCode::kNotFound, "run " + ToString(id) + " not found");
  }
  auto run = ReadRun(id, runs[0]);
  if (!run.ok()) return Status::Error("database: " + std::string(what) + ": " + run.message());
  // task_instances' primary key (run_id, task_id).
  for (const pqxx::row& row : txn.exec_params(
           "SELECT " + TaskColumns() + " FROM task_instances WHERE run_id = $1 ORDER BY position",
           Value(id))) {
    auto task = ReadTask(row);
    if (!task.ok()) return Status::Error("database: " + std::string(what) + ": " + task.message());
    run->tasks.push_back(std::move(task).value());
  }
  return run;
}

void RegisterEventStatements(DatabaseImpl& impl) {
  // The primary key's last entry. Without parameters its plan never changes: prepared, it is not
  // planned again at each commit the event hub is told of (0.08 ms of PostgreSQL's CPU each).
  impl.Prepare("kiln_last_event_id", "SELECT coalesce(max(id), 0) FROM events");
}

std::string GetRunStatement() {
  // One prepared statement, so one round trip and one snapshot: the run's columns on every row,
  // then one task per row (the primary key of task_instances, in pipeline order).
  // The run's latest event comes from the same snapshot (events_by_run: one index probe).
  return "SELECT r.*, t.* FROM (SELECT " + RunColumns() +
         ", (SELECT max(id) FROM events WHERE run_id = $1) AS last_event"
         " FROM runs WHERE id = $1) r LEFT JOIN LATERAL (SELECT " +
         TaskColumns() +
         ", position FROM task_instances WHERE run_id = $1) t ON true ORDER BY t.position";
}

Result<RunRecord> Database::GetRun(RunId id) {
  const std::string what = "reading run " + ToString(id);
  try {
    pqxx::nontransaction txn(impl_->conn, "get_run");
    pqxx::result rows = txn.exec_prepared("kiln_get_run", Value(id));
    if (rows.empty()) {
      return Status::Error(ErrorCode::kNotFound, "run " + ToString(id) + " not found");
    }
    const auto run_columns = static_cast<pqxx::row::size_type>(kRunColumns + 1);
    auto run = ReadRun(id, rows[0]);
    if (!run.ok()) return Status::Error("database: " + what + ": " + run.message());
    run->last_event = Opt<int64_t>(rows[0][kRunColumns]);
    for (const pqxx::row& row : rows) {
      if (row[run_columns].is_null()) continue;  // a run without task rows
      auto task = ReadTask(row.slice(run_columns, row.size()));
      if (!task.ok()) return Status::Error("database: " + what + ": " + task.message());
      run->tasks.push_back(std::move(task).value());
    }
    return run;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<std::vector<EventRecord>> Database::ListEvents(RunId id) {
  try {
    pqxx::nontransaction txn(impl_->conn, "list_events");
    EventFilter filter;
    filter.run = id;
    return ReadEvents(txn, filter, std::nullopt);
  } catch (const std::exception& e) {
    return DbError("reading the events of run " + ToString(id), e);
  }
}

Result<std::vector<EventRecord>> Database::ListEvents(const EventFilter& filter) {
  try {
    pqxx::nontransaction txn(impl_->conn, "list_events");
    return ReadEvents(txn, filter, std::clamp(filter.limit, 1, kMaxEvents));
  } catch (const std::exception& e) {
    return DbError("reading events after " + std::to_string(filter.after), e);
  }
}

Result<int64_t> Database::LastEventId() {
  try {
    pqxx::nontransaction txn(impl_->conn, "last_event_id");
    return txn.exec_prepared1("kiln_last_event_id")[0].as<int64_t>();
  } catch (const std::exception& e) {
    return DbError("reading the last event id", e);
  }
}

Result<std::vector<AttemptRecord>> Database::ListAttempts(RunId id, std::string_view task_id) {
  try {
    pqxx::nontransaction txn(impl_->conn, "list_attempts");
    std::vector<AttemptRecord> attempts;
    for (const pqxx::row& row : txn.exec_params("SELECT " + AttemptColumns() +
                                                    " FROM attempts WHERE run_id = $1 AND "
                                                    "task_id = $2 ORDER BY attempt",
                                                Value(id), std::string(task_id))) {
      attempts.push_back(ReadAttempt(id, task_id, row));
    }
    return attempts;
  } catch (const std::exception& e) {
    return DbError(
        "reading the attempts of run " + ToString(id) + " task '" + std::string(task_id) + "'", e);
  }
}

Result<std::vector<AttemptRecord>> Database::RunAttempts(RunId id) {
  const std::string what = "reading the attempts of run " + ToString(id);
  try {
    ReadTxn txn(impl_->conn, "run_attempts");
    if (txn.exec_params("SELECT 1 FROM runs WHERE id = $1", Value(id)).empty()) {
      return Status::Error(ErrorCode::kNotFound, "run " + ToString(id) + " not found");
    }
    std::vector<AttemptRecord> attempts;
    // attempts' primary key (run_id, task_id, attempt).
    for (const pqxx::row& row :
         txn.exec_params("SELECT " + AttemptColumns() +
                             ", task_id FROM attempts WHERE run_id = $1 ORDER BY task_id, attempt",
                         Value(id))) {
      attempts.push_back(ReadAttempt(id, row[14].as<std::string>(), row));
    }
    txn.commit();
    return attempts;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<AttemptRecord> Database::GetAttempt(RunId id, std::string_view task_id, int attempt) {
  const std::string subject = "run " + ToString(id) + " task '" + std::string(task_id) +
                              "' attempt " + std::to_string(attempt);
  try {
    pqxx::nontransaction txn(impl_->conn, "get_attempt");
    // attempts' primary key.
    pqxx::result rows = txn.exec_params("SELECT " + AttemptColumns() +
                                            " FROM attempts WHERE run_id = $1 AND task_id = $2 "
                                            "AND attempt = $3",
                                        Value(id), std::string(task_id), attempt);
    if (rows.empty()) return Status::Error(ErrorCode::kNotFound, subject + " not found");
    return ReadAttempt(id, task_id, rows[0]);
  } catch (const std::exception& e) {
    return DbError("reading " + subject, e);
  }
}

}  // namespace kiln::store
