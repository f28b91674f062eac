// Database::CommitBatches: scheduler transitions with fencing, one statement per update, sent in
// one pipeline.
//
// Each update is a single prepared statement whose CTEs change the task (or run) row only when
// the fencing condition holds, write the attempts row only when that change happened, and always
// append the event ('task_state' / 'run_state', or 'fenced' when nothing changed) with the
// run's pipeline. The transaction takes the event-order lock first (LockEventOrder). Updates run
// one after another in the same transaction, so two updates of the same task in one group see
// each other. A batch of n updates costs one round trip (the lock, n statements and the commit,
// pipelined).
#include <nlohmann/json.hpp>

#include "common/crash.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/text.h"
#include "store/database.h"
#include "store/outcome_json.h"
#include "store/pipeline.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

using json = nlohmann::json;
using scheduler::TaskUpdate;

constexpr std::string_view kTerminalTaskStates =
    "('success', 'failed', 'skipped', 'upstream_failed', 'cancelled')";

// Who may write: the run is driven by the committing daemon ($6), or by nobody yet.
constexpr std::string_view kOwned =
    "EXISTS (SELECT FROM runs WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $6::text))";

// Parameters shared by the three task statements: $1 run, $2 task, $3 attempt, $4 state, $5 at,
// $6 actor (the committing daemon), $7 detail. The statement returns (fenced, found state,
// found attempt, the run's owner).
std::string TaskStatement(std::string_view set, std::string_view fence,
                          std::string_view attempt_cte) {
  std::string sql =
      "WITH cur AS (SELECT state, attempt FROM task_instances WHERE run_id = $1::int8 AND "
      "task_id = $2::text), upd AS (UPDATE task_instances SET state = $4::text, ";
  sql += std::string(set) + " WHERE run_id = $1 AND task_id = $2 AND " + std::string(fence) +
         " AND " + std::string(kOwned) + " RETURNING 1)" + std::string(attempt_cte);
  sql +=
      " INSERT INTO events (at, run_id, pipeline, task_id, attempt, kind, from_state, to_state, "
      "actor, detail) SELECT $5::timestamptz, $1, (SELECT pipeline FROM runs WHERE id = $1), $2, "
      "$3::int, CASE WHEN EXISTS (SELECT FROM upd) THEN "
      "'task_state' ELSE 'fenced' END, (SELECT state FROM cur), $4, $6::text, CASE WHEN EXISTS "
      "(SELECT FROM upd) THEN $7::jsonb ELSE $7::jsonb || jsonb_build_object('found_attempt', "
      "(SELECT attempt FROM cur)) || coalesce((SELECT jsonb_build_object('owner', lease_owner) "
      "FROM runs WHERE id = $1 AND lease_owner <> $6), '{}') END "
      "RETURNING kind = 'fenced', from_state, (SELECT attempt FROM cur), (SELECT lease_owner FROM "
      "runs WHERE id = $1)";
  return sql;
}

// $8 log_path, $9 lease_owner (the supervisor), $10 lease_expires_at; for an attempt handed to
// workers in this commit (else null): $11 pool, $12 priority, $13 slots, $14 launch (hex). Such
// an attempt is written claimable (kDispatchedOwner, as Database::Dispatch writes it), and the
// insert's trigger tells the workers of its pool.
std::string StartStatement() {
  return TaskStatement(
      "attempt = $3, lease_owner = $9::text, lease_expires_at = $10::timestamptz, retry_at = "
      "NULL, exit_code = NULL, signal = NULL, started_at = $5::timestamptz, ended_at = NULL",
      "attempt = $3 - 1 AND state NOT IN " + std::string(kTerminalTaskStates),
      ", att AS (INSERT INTO attempts (run_id, task_id, attempt, state, log_path, lease_owner, "
      "started_at, pool, priority, slots, launch, dispatched_at) SELECT $1, $2, $3, 'running', "
      "$8::text, CASE WHEN $14::text IS NULL THEN $9 ELSE '" +
          std::string(kDispatchedOwner) +
          "' END, $5::timestamptz, $11::text, coalesce($12::int, 0), coalesce($13::int, 1), "
          "decode($14, 'hex'), CASE WHEN $14 IS NOT NULL THEN now() END FROM upd)");
}

// $8 exit_code, $9 signal, $10 timed_out, $11 cpu_ms, $12 max_rss_kb, $13 reason, $14 retry_at,
// $15 attempt state, $16 terminal, $17 outcome (the executor's report, or null), $18 results
// (of a successful attempt or of a kind's skip, or null), $19 cache_key (of a success, or null: not
// kept when the cache of its task was invalidated after the attempt started). When the task row has
// moved on or the run is driven elsewhere, the attempt still keeps its outcome (first report wins,
// results included) for whoever drives the run to decide from. A success's results go to
// attempts.results (not twice into the outcome) and each of its files becomes an artifacts row.
std::string EndStatement() {
  return TaskStatement(
      "exit_code = $8::int, signal = $9::int, retry_at = $14::timestamptz, lease_expires_at = "
      "NULL, ended_at = CASE WHEN $16::bool THEN $5::timestamptz END",
      "state = 'running' AND attempt = $3",
      ", att AS (UPDATE attempts SET state = $15::text, ended_at = $5::timestamptz, exit_code = "
      "$8, signal = $9, timed_out = $10::bool, cpu_ms = $11::int8, max_rss_kb = $12::int8, "
      "reason = $13::text, outcome = coalesce(outcome, $17::jsonb) - 'results', results = "
      "CASE WHEN $15 IN ('success', 'skipped') THEN $18::jsonb END, cache_key = CASE WHEN $15 = "
      "'success' "
      "AND $19::text IS NOT NULL AND NOT EXISTS (SELECT FROM cache_invalidations ci WHERE "
      "ci.pipeline = (SELECT pipeline FROM runs WHERE id = $1) AND (ci.task_id IS NULL OR "
      "ci.task_id = $2) AND ci.at >= attempts.started_at) THEN $19::text END WHERE run_id = $1 "
      "AND "
      "task_id = $2 AND attempt = $3 AND EXISTS (SELECT FROM upd)), facts AS (UPDATE attempts "
      "SET outcome = $17::jsonb WHERE run_id = $1 AND task_id = $2 AND attempt = $3 AND state = "
      "'running' AND outcome IS NULL AND $17::jsonb IS NOT NULL AND NOT EXISTS (SELECT FROM upd))"
      ", art AS (INSERT INTO artifacts (sha256, path, bytes, role, run_id, task_id, attempt, "
      "recorded_at) SELECT f.value->>'sha256', f.value->>'path', (f.value->>'bytes')::int8, "
      "f.role, $1, $2, $3, $5::timestamptz FROM (SELECT 'input' AS role, value FROM "
      "jsonb_array_elements($18::jsonb->'inputs') UNION ALL SELECT 'output', value FROM "
      "jsonb_array_elements($18::jsonb->'outputs')) f WHERE $15 = 'success' AND EXISTS "
      "(SELECT FROM upd))");
}

// $8 retry_at, $9 terminal, $10 waiting_for. A task that begins to wait records when in
// started_at (its duration is the wait).
std::string PlainStatement() {
  return TaskStatement(
      "retry_at = $8::timestamptz, lease_expires_at = CASE WHEN $4 = 'running' THEN "
      "lease_expires_at END, ended_at = CASE WHEN $9::bool THEN $5::timestamptz ELSE ended_at "
      "END, waiting_for = CASE WHEN $4 = 'waiting' THEN $10::text END, started_at = CASE WHEN "
      "$4 = 'waiting' AND state <> 'waiting' THEN $5::timestamptz ELSE started_at END",
      "state NOT IN " + std::string(kTerminalTaskStates), "");
}

// A mapped task's instances, right after the update that moved it to running: $1 run, $2 the
// task, $3 the items (a JSON array), $4 the committing daemon. One statement for all of them, at
// positions after the run's last (UNIQUE (run_id, position): one index probe). It inserts
// nothing when that update was refused (the task is not running, already has its instances, or
// the run is driven elsewhere), so it needs no answer from it first.
constexpr const char* kExpandStatement = R"sql(
INSERT INTO task_instances (run_id, task_id, position, pool, priority, parent, map_index, item)
SELECT $1::int8, $2::text || '[' || (u.i - 1) || ']',
       (SELECT max(position) FROM task_instances WHERE run_id = $1) + u.i::int, t.pool,
       t.priority, $2, u.i - 1, u.item
FROM task_instances t, json_array_elements($3::json) WITH ORDINALITY AS u(item, i)
WHERE t.run_id = $1 AND t.task_id = $2 AND t.state = 'running'
  AND NOT EXISTS (SELECT FROM task_instances c WHERE c.run_id = $1 AND c.parent = $2)
  AND EXISTS (SELECT FROM runs WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $4::text)))sql";

// $1 run, $2 state, $3 at, $4 actor, $5 detail, $6 terminal.
constexpr const char* kRunStatement = R"sql(
WITH cur AS (SELECT state, lease_owner FROM runs WHERE id = $1::int8),
upd AS (
  UPDATE runs SET state = $2::text,
    started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, $3::timestamptz)
                      ELSE started_at END,
    ended_at = CASE WHEN $6::bool THEN $3::timestamptz END
  WHERE id = $1 AND state NOT IN ('success', 'failed', 'cancelled')
    AND (lease_owner IS NULL OR lease_owner = $4::text)
  RETURNING 1)
INSERT INTO events (at, run_id, pipeline, kind, from_state, to_state, actor, detail)
SELECT $3, $1, (SELECT pipeline FROM runs WHERE id = $1),
       CASE WHEN EXISTS (SELECT FROM upd) THEN 'run_state' ELSE 'fenced' END,
       (SELECT state FROM cur), $2, $4::text,
       CASE WHEN EXISTS (SELECT FROM upd) THEN $5::jsonb
            ELSE $5::jsonb || coalesce((SELECT jsonb_build_object('owner', lease_owner) FROM cur
                                        WHERE lease_owner <> $4), '{}') END
RETURNING kind = 'fenced', from_state, (SELECT lease_owner FROM cur))sql";

std::string Detail(const std::string& reason,
                   const std::vector<std::pair<std::string, std::string>>& more = {},
                   const std::string& waiting_for = "") {
  json detail = json::object();
  if (!reason.empty()) detail["reason"] = SafeUtf8(reason);
  for (const auto& [key, value] : more) detail[SafeUtf8(key)] = SafeUtf8(value);
  if (!waiting_for.empty()) detail["waiting_for"] = SafeUtf8(waiting_for);
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

// An attempt of a task with cache = true that reused an earlier one's outputs says so, naming
// it, instead of "exit code 0".
std::optional<std::string> CacheHitReason(const std::optional<std::string>& results) {
  if (!results || results->find("\"hit\"") == std::string::npos) return std::nullopt;
  json j = json::parse(*results, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("cache") || !j["cache"].is_object()) return std::nullopt;
  const json& hit = j["cache"].value("hit", json());
  if (!hit.is_object() || !hit.value("run", json()).is_number_integer()) return std::nullopt;
  const json task = hit.value("task", json());
  return "cache hit: the outputs of run " + hit["run"].dump() + " (task " +
         (task.is_string() ? task.get<std::string>() : std::string("?")) + ", attempt " +
         hit.value("attempt", json(0)).dump() + ")";
}

std::string Text(int64_t v) { return std::to_string(v); }
std::string Text(bool v) { return v ? "true" : "false"; }
std::optional<std::string> Text(const std::optional<int>& v) {
  if (!v) return std::nullopt;
  return std::to_string(*v);
}

// The statement that writes one task update.
Statement TaskStatementOf(const TaskUpdate& u, const std::string& actor, Duration lease) {
  Statement st;
  st.Add(Text(Value(u.run)))
      .Add(SafeUtf8(u.task_id))
      .Add(Text(int64_t{u.attempt}))
      .Add(std::string(dag::Name(u.state)))
      .Add(TimeParam(u.at))
      .Add(actor)
      .Add(Detail(u.reason, u.detail, u.waiting_for));
  if (u.start) {
    st.name = "kiln_task_start";
    const std::string owner = SafeUtf8(u.start->lease_owner.empty() ? actor : u.start->lease_owner);
    st.Add(SafeUtf8(u.start->log_path)).Add(owner).Add(TimeParam(u.at + lease));
    if (const auto& h = u.start->handout) {
      st.Add(SafeUtf8(h->pool))
          .Add(Text(int64_t{h->priority}))
          .Add(Text(int64_t{h->slots}))
          .Add(LowerHex(h->launch));
    } else {
      st.Add(std::nullopt).Add(std::nullopt).Add(std::nullopt).Add(std::nullopt);
    }
    return st;
  }
  if (u.end) {
    st.name = "kiln_task_end";
    const scheduler::AttemptEnd& e = *u.end;
    std::optional<std::string> outcome;
    std::optional<std::string> results;
    if (e.outcome) {
      outcome = OutcomeJson(*e.outcome);
      results = ResultsJson(*e.outcome);
    }
    std::optional<std::string> cache_key;
    if (!e.cache_key.empty()) cache_key = e.cache_key;
    st.Add(Text(e.exit_code))
        .Add(Text(e.signal))
        .Add(Text(e.timed_out))
        .Add(Text(static_cast<int64_t>(e.cpu.count())))
        .Add(Text(e.max_rss_kb))
        .Add(SafeUtf8(CacheHitReason(results).value_or(e.reason)))
        .Add(TimeParam(u.retry_at))
        .Add(AttemptState(u.state))
        .Add(Text(dag::IsTerminal(u.state)))
        .Add(std::move(outcome))
        .Add(std::move(results))
        .Add(std::move(cache_key));
    return st;
  }
  st.name = "kiln_task_plain";
  std::optional<std::string> waiting_for;
  if (!u.waiting_for.empty()) waiting_for = SafeUtf8(u.waiting_for);
  st.Add(TimeParam(u.retry_at)).Add(Text(dag::IsTerminal(u.state))).Add(std::move(waiting_for));
  return st;
}

// A mapped task's instances; the statement inserts nothing unless its update to running applied
// (it runs in the same transaction right after it, whatever that update's result).
Statement ExpandStatementOf(const TaskUpdate& u, const std::string& actor) {
  Statement st;
  st.name = "kiln_task_expand";
  st.Add(Text(Value(u.run))).Add(SafeUtf8(u.task_id)).Add(u.expand->items).Add(actor);
  return st;
}

Statement RunStatementOf(const scheduler::RunUpdate& u, const std::string& actor) {
  Statement st;
  st.name = "kiln_run_update";
  st.Add(Text(Value(u.run)))
      .Add(std::string(dag::Name(u.state)))
      .Add(TimeParam(u.at))
      .Add(actor)
      .Add(Detail(u.reason))
      .Add(Text(dag::IsTerminal(u.state)));
  return st;
}

// The first row of a task or run statement: (fenced, found state, found attempt, owner) for a
// task, (fenced, found state, owner) for a run. Nullopt when the update applied.
std::optional<RefusedUpdate> RefusalOf(const ResultRows& rows, bool run, const std::string& actor) {
  if (rows.empty() || rows[0].empty()) throw std::runtime_error("a state change returned no row");
  const auto& row = rows[0];
  if (row[0] != "t") return std::nullopt;
  RefusedUpdate r;
  r.found_state = row[1];
  if (run) {
    r.found_owner = row[2];
  } else {
    if (row[2]) r.found_attempt = std::stoi(*row[2]);
    r.found_owner = row[3];
  }
  r.committer = actor;
  r.refusal.run = run;
  return r;
}

// One prepared statement through libpqxx, with text parameters (the savepoint path).
ResultRows Exec(pqxx::transaction_base& txn, const Statement& st) {
  pqxx::result result = txn.exec_prepared(st.name, pqxx::prepare::make_dynamic_params(st.params));
  ResultRows rows;
  for (const auto& row : result) {
    auto& out = rows.emplace_back();
    for (const auto& field : row) out.push_back(Opt<std::string>(field));
  }
  return rows;
}

}  // namespace

void RegisterBatchStatements(DatabaseImpl& impl) {
  impl.Prepare("kiln_task_start", StartStatement());
  impl.Prepare("kiln_task_end", EndStatement());
  impl.Prepare("kiln_task_plain", PlainStatement());
  impl.Prepare("kiln_run_update", kRunStatement);
  impl.Prepare("kiln_task_expand", kExpandStatement);
}

std::string RefusedUpdate::Describe() const {
  std::string subject = "run " + ToString(run);
  if (!task_id.empty()) {
    subject += " task '" + task_id + "' attempt " + std::to_string(attempt);
  }
  if (refusal.rejected) {
    return subject + ": update to " + wanted + " could not be written: " + refusal.message;
  }
  std::string found;
  if (!found_state) {
    found = "no such row";
  } else if (found_owner && *found_owner != committer) {
    found = "the run is driven by " + *found_owner;
  } else {
    found =
        "it is " + *found_state +
        (found_attempt && !task_id.empty() ? " at attempt " + std::to_string(*found_attempt) : "");
  }
  return subject + ": late update to " + wanted + " ignored (" + found + ")";
}

namespace {

// Whether trying the same transaction again could succeed: the connection or the server, not
// the values written.
bool Transient(const std::exception& e) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
      dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return true;
  }
  const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e);
  if (sql == nullptr) return true;  // not from the server: assume the worst, retry
  const std::string& state = sql->sqlstate();
  // 08 connection, 40 serialization / deadlock, 53 resources, 57 operator intervention, 58
  // system errors, XX internal errors; an empty state is a client-side failure.
  for (const char* cls : {"08", "40", "53", "57", "58", "XX"}) {
    if (state.starts_with(cls)) return true;
  }
  return state.empty();
}

std::string FirstLine(const char* what) {
  std::string text = OneLine(what);
  if (text.starts_with("ERROR: ")) text = text.substr(7);
  return SafeUtf8(text);
}

}  // namespace

namespace {

// Where each statement of a commit came from.
struct Origin {
  enum class Kind { kLock, kExpand, kTask, kRun } kind = Kind::kLock;
  size_t batch = 0;
  size_t index = 0;
};

// Every update of `batches` in order, as statements: per batch, run updates to a non-terminal
// state, the task updates (a mapped task's instances right after its update), then run updates
// to a terminal state.
void BuildStatements(std::span<const scheduler::Batch* const> batches, const std::string& actor,
                     Duration lease, std::vector<Statement>& out, std::vector<Origin>& origins) {
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    const scheduler::Batch& b = *batches[bi];
    for (bool terminal : {false, true}) {
      if (terminal) {
        for (size_t i = 0; i < b.tasks.size(); ++i) {
          KILN_CHECK(!(b.tasks[i].start && b.tasks[i].end));
          out.push_back(TaskStatementOf(b.tasks[i], actor, lease));
          origins.push_back({Origin::Kind::kTask, bi, i});
          if (b.tasks[i].expand) {
            out.push_back(ExpandStatementOf(b.tasks[i], actor));
            origins.push_back({Origin::Kind::kExpand, bi, i});
          }
        }
      }
      for (size_t i = 0; i < b.runs.size(); ++i) {
        if (dag::IsTerminal(b.runs[i].state) != terminal) continue;
        out.push_back(RunStatementOf(b.runs[i], actor));
        origins.push_back({Origin::Kind::kRun, bi, i});
      }
    }
  }
}

// Fills in what the refusal is about from the update it refused.
void FillFrom(RefusedUpdate& r, std::span<const scheduler::Batch* const> batches, const Origin& o) {
  const scheduler::Batch& b = *batches[o.batch];
  r.batch = o.batch;
  r.refusal.index = o.index;
  if (o.kind == Origin::Kind::kRun) {
    r.run = b.runs[o.index].run;
    r.refusal.run = true;
    r.wanted = std::string(dag::Name(b.runs[o.index].state));
  } else {
    const TaskUpdate& u = b.tasks[o.index];
    r.run = u.run;
    r.task_id = u.task_id;
    r.attempt = u.attempt;
    r.refusal.run = false;
    r.wanted = std::string(dag::Name(u.state));
  }
}

// A start found already applied: the row runs this attempt for a run this daemon drives. Only
// this daemon starts its runs' attempts, so it is this very start, committed by an earlier try
// whose answer was lost (the connection broke after the commit): not a refusal.
bool AlreadyApplied(const RefusedUpdate& r, std::span<const scheduler::Batch* const> batches,
                    const Origin& o, const std::string& actor) {
  if (o.kind != Origin::Kind::kTask) return false;
  const TaskUpdate& u = batches[o.batch]->tasks[o.index];
  return u.start && r.found_state == "running" && r.found_attempt == u.attempt &&
         r.found_owner == actor;
}

}  // namespace

// The statements of a commit go to the server in one pipeline (PipelineConnection): the
// event-order lock, every update, and the commit cost one round trip together.
Result<std::vector<RefusedUpdate>> Database::CommitBatches(
    std::span<const scheduler::Batch* const> batches, std::string_view actor, Duration lease) {
  size_t updates = 0;
  for (const scheduler::Batch* b : batches) updates += b->tasks.size() + b->runs.size();
  const std::string actor_text = SafeUtf8(actor);
  const std::string what = "committing " + std::to_string(updates) + " state changes";
  std::vector<Statement> statements;
  std::vector<Origin> origins;
  // Every update appends an event: the event-order lock comes first.
  if (updates > 0) {
    statements.push_back(Statement{"kiln_event_order", {}});
    origins.push_back({});
  }
  BuildStatements(batches, actor_text, lease, statements, origins);
  try {
    if (!impl_->pipeline.connected()) {
      impl_->pipeline.Connect(impl_->url, impl_->sql, impl_->pipeline_setup);
    }
    std::vector<ResultRows> results = impl_->pipeline.Transaction(
        statements, CrashPointArmed("commit.inside")
                        ? std::function<void()>([] { CrashPoint("commit.inside"); })
                        : std::function<void()>());
    std::vector<RefusedUpdate> refused;
    for (size_t k = 0; k < statements.size(); ++k) {
      if (origins[k].kind == Origin::Kind::kLock || origins[k].kind == Origin::Kind::kExpand) {
        continue;
      }
      auto r = RefusalOf(results[k], origins[k].kind == Origin::Kind::kRun, actor_text);
      if (!r || AlreadyApplied(*r, batches, origins[k], actor_text)) continue;
      FillFrom(*r, batches, origins[k]);
      refused.push_back(std::move(*r));
    }
    return refused;
  } catch (const std::exception& e) {
    if (Transient(e)) return DbError(what, e);
    log::Warn("database: " + what + ": " + FirstLine(e.what()) +
              "; writing them one by one to find the update that cannot be written");
  }
  // A value the database refuses (an encoding, a constraint): again, each update in a savepoint
  // of its own, so that the ones that fail are refused and the rest commits.
  try {
    pqxx::work txn(impl_->conn, "commit_batch_split");
    std::vector<RefusedUpdate> refused;
    for (size_t k = 0; k < statements.size(); ++k) {
      if (origins[k].kind == Origin::Kind::kLock) {
        Exec(txn, statements[k]);
        continue;
      }
      // A mapped task's instances: in the savepoint of its task's update, below.
      if (origins[k].kind == Origin::Kind::kExpand) continue;
      std::optional<RefusedUpdate> r;
      // Plain SAVEPOINT statements: libpqxx 6.4's subtransaction does not roll back to its
      // savepoint after a failed parameterized statement.
      txn.exec("SAVEPOINT kiln_update");
      try {
        r = RefusalOf(Exec(txn, statements[k]), origins[k].kind == Origin::Kind::kRun, actor_text);
        if (k + 1 < statements.size() && origins[k + 1].kind == Origin::Kind::kExpand) {
          Exec(txn, statements[k + 1]);
        }
        txn.exec("RELEASE SAVEPOINT kiln_update");
      } catch (const std::exception& e) {
        if (Transient(e)) throw;
        txn.exec("ROLLBACK TO SAVEPOINT kiln_update");
        r = RefusedUpdate{};
        r->refusal.rejected = true;
        r->refusal.message = FirstLine(e.what());
      }
      if (r && !r->refusal.rejected && AlreadyApplied(*r, batches, origins[k], actor_text)) {
        r.reset();
      }
      if (r) {
        FillFrom(*r, batches, origins[k]);
        refused.push_back(std::move(*r));
      }
    }
    txn.commit();
    return refused;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

}  // namespace kiln::store
