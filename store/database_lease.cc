// Database: leases, recovery and takeover (docs/design.md, "Surviving restarts").
//
// A daemon holds the runs it drives by a row in `daemons` (kind 'daemon') whose expires_at it
// moves forward; a supervisor holds the attempts it runs the same way (kind 'supervisor'). The
// database's clock decides expiry. Renewing is one statement per holder and interval, whatever
// it holds.
#include <unistd.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "common/log.h"
#include "common/text.h"
#include "store/database.h"
#include "store/outcome_json.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

using json = nlohmann::json;
using scheduler::AttemptKey;

// $1 name, $2 hostname, $3 pid, $4 kind, $5 daemon, $6 lease in ms. Returns the term.
constexpr const char* kRenew = R"sql(
INSERT INTO daemons (name, hostname, pid, kind, daemon, expires_at, heartbeat_at)
VALUES ($1, $2, $3::int, $4, $5, now() + $6::int8 * interval '1 millisecond', now())
ON CONFLICT (name) DO UPDATE
SET hostname = excluded.hostname, pid = excluded.pid, kind = excluded.kind,
    daemon = excluded.daemon, expires_at = excluded.expires_at,
    heartbeat_at = excluded.heartbeat_at
RETURNING term)sql";

// A daemon's renewal: the term, and one row per active run of it with a cancel requested
// (runs_by_owner).
std::string RenewDaemonStatement() {
  return std::string("WITH renew AS (") + kRenew +
         ") SELECT (SELECT term FROM renew), r.id, r.cancel_reason FROM (SELECT 1) one LEFT JOIN "
         "runs r ON r.lease_owner = $1 AND r.state IN ('queued', 'running') AND "
         "r.cancel_requested_at IS NOT NULL ORDER BY r.id";
}

// A supervisor's renewal: the term, and one row per attempt of $7 (a JSON array of
// {run_id, task_id, attempt}) that it must stop, with why: 'superseded' when the database does
// not have that attempt running under this supervisor ($1). $8 is how many $7 holds: the
// LIMIT keeps the planner from taking the array for 100 rows, and joining them by a scan of
// every task row (JsonRows).
std::string RenewSupervisorStatement() {
  return std::string("WITH renew AS (") + kRenew +
         "), mine AS (SELECT * FROM jsonb_to_recordset($7::jsonb) AS m(run_id int8, task_id "
         "text, attempt int) LIMIT $8::int8) SELECT (SELECT term FROM renew), x.run_id, x.task_id, "
         "x.attempt, "
         "x.cause FROM (SELECT 1) one LEFT JOIN (SELECT m.run_id, m.task_id, m.attempt, CASE WHEN "
         "t.state IS DISTINCT FROM 'running' OR t.attempt <> m.attempt OR a.lease_owner IS "
         "DISTINCT FROM $1 THEN 'superseded' WHEN "
         "r.cancel_requested_at IS NOT NULL THEN 'cancel' ELSE 'stop' END AS cause FROM mine m "
         "LEFT JOIN task_instances t ON t.run_id = m.run_id AND t.task_id = m.task_id LEFT JOIN "
         "runs r ON r.id = m.run_id LEFT JOIN attempts a ON a.run_id = m.run_id AND a.task_id = "
         "m.task_id AND a.attempt = m.attempt WHERE t.state IS DISTINCT FROM 'running' OR "
         "t.attempt <> m.attempt OR a.lease_owner IS DISTINCT FROM $1 OR "
         "r.cancel_requested_at IS NOT NULL OR a.stop_requested) x "
         "ON true";
}

// Open attempts of the runs in `runs_sql` (a query giving ids): attempts rows still running
// whose task row runs that attempt, with their supervisor's liveness and recorded outcome.
std::string OpenAttemptsSql(const std::string& runs_sql) {
  return "SELECT a.run_id, a.task_id, a.attempt, a.lease_owner, coalesce(d.expires_at > now(), "
         "a.lease_owner = '(dispatched)'), a.outcome::text FROM attempts a JOIN task_instances t "
         "ON t.run_id = a.run_id "
         "AND t.task_id = a.task_id AND t.attempt = a.attempt AND t.state = 'running' LEFT JOIN "
         "daemons d ON d.name = a.lease_owner WHERE a.state = 'running' AND a.run_id IN (" +
         runs_sql + ") ORDER BY a.run_id, a.task_id";
}

// $1 the expired owner, $2 limit. Locks and lists its active runs.
constexpr const char* kOwnedRuns = R"sql(
SELECT id, pipeline, trigger FROM runs
WHERE lease_owner = $1 AND state IN ('queued', 'running')
ORDER BY id LIMIT $2::int FOR UPDATE)sql";

// Owners of active runs whose lease has expired or who have no lease row (runs_by_owner).
constexpr const char* kExpiredOwners = R"sql(
SELECT DISTINCT r.lease_owner FROM runs r LEFT JOIN daemons d ON d.name = r.lease_owner
WHERE r.state IN ('queued', 'running') AND r.lease_owner IS NOT NULL AND r.lease_owner <> $1
  AND (d.name IS NULL OR d.expires_at < now()))sql";

// Grows the term of an expired lease (made when missing), locking its row; no row when it was
// renewed meanwhile.
constexpr const char* kBumpTerm = R"sql(
INSERT INTO daemons (name, hostname, kind, expires_at, term) VALUES ($1, '', 'daemon', now(), 1)
ON CONFLICT (name) DO UPDATE SET term = daemons.term + 1 WHERE daemons.expires_at < now()
RETURNING name)sql";

std::string KeysJson(std::span<const AttemptKey> keys) {
  json out = json::array();
  for (const AttemptKey& k : keys) {
    out.push_back(
        {{"run_id", Value(k.run)}, {"task_id", SafeUtf8(k.task_id)}, {"attempt", k.attempt}});
  }
  return out.dump();
}

std::string Hostname() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return SafeUtf8(host);
}

OpenAttempt ReadOpen(const pqxx::row& row) {
  OpenAttempt a;
  a.task_id = row[1].as<std::string>();
  a.attempt = row[2].as<int>();
  a.supervisor = row[3].as<std::string>();
  a.supervisor_alive = row[4].as<bool>();
  if (!row[5].is_null()) a.outcome = ParseOutcomeJson(row[5].as<std::string>());
  return a;
}

// The active runs that `where` selects ("lease_owner = $1" with `param`), oldest first.
Result<std::vector<ActiveRun>> ReadActive(pqxx::transaction_base& txn, const std::string& where,
                                          const std::string& param, std::string_view what) {
  const std::string runs_sql =
      "SELECT id FROM runs WHERE " + where + " AND state IN ('queued', 'running')";
  std::vector<ActiveRun> out;
  std::map<int64_t, size_t> index;
  for (const pqxx::row& row :
       txn.exec_params("SELECT " + RunColumns() +
                           ", id, cancel_reason, cancel_requested_at IS NOT NULL, "
                           "coalesce(lease_owner, '') FROM runs WHERE " +
                           where + " AND state IN ('queued', 'running') ORDER BY id",
                       param)) {
    const auto id = RunId(row[kRunColumns].as<int64_t>());
    auto run = ReadRun(id, row);
    if (!run.ok()) return Status::Error("database: " + std::string(what) + ": " + run.message());
    ActiveRun active;
    active.run = std::move(run).value();
    active.owner = row[kRunColumns + 3].as<std::string>();
    if (row[kRunColumns + 2].as<bool>()) {
      active.cancel_reason = row[kRunColumns + 1].is_null()
                                 ? std::string("run cancelled")
                                 : row[kRunColumns + 1].as<std::string>();
    }
    index[Value(id)] = out.size();
    out.push_back(std::move(active));
  }
  if (out.empty()) return out;
  for (const pqxx::row& row : txn.exec_params("SELECT " + TaskColumns() +
                                                  ", run_id FROM task_instances WHERE run_id IN (" +
                                                  runs_sql + ") ORDER BY run_id, position",
                                              param)) {
    auto it = index.find(row[kTaskColumns].as<int64_t>());
    if (it == index.end()) continue;
    auto task = ReadTask(row);
    if (!task.ok()) return Status::Error("database: " + std::string(what) + ": " + task.message());
    out[it->second].run.tasks.push_back(std::move(task).value());
  }
  for (const pqxx::row& row : txn.exec_params(OpenAttemptsSql(runs_sql), param)) {
    auto it = index.find(row[0].as<int64_t>());
    if (it != index.end()) out[it->second].open.push_back(ReadOpen(row));
  }
  return out;
}

}  // namespace

void RegisterLeaseStatements(DatabaseImpl& impl) {
  impl.Prepare("kiln_renew_daemon", RenewDaemonStatement());
  impl.Prepare("kiln_renew_supervisor", RenewSupervisorStatement());
  impl.Prepare("kiln_expired_owners", kExpiredOwners);
  impl.Prepare("kiln_bump_term", kBumpTerm);
  impl.Prepare("kiln_owned_runs", kOwnedRuns);
}

Result<LeaseRenewal> Database::RenewLease(const std::string& name, std::string_view kind,
                                          const std::string& daemon, Duration lease) {
  try {
    pqxx::nontransaction txn(impl_->conn, "renew_lease");
    LeaseRenewal out;
    if (kind == "daemon") {
      for (const pqxx::row& row :
           txn.exec_prepared("kiln_renew_daemon", name, Hostname(), static_cast<int>(getpid()),
                             std::string(kind), daemon, static_cast<int64_t>(lease.count()))) {
        out.term = row[0].as<int64_t>();
        if (!row[1].is_null()) {
          out.cancels.emplace_back(RunId(row[1].as<int64_t>()),
                                   row[2].is_null() ? "run cancelled" : row[2].as<std::string>());
        }
      }
      return out;
    }
    pqxx::row row =
        txn.exec_params1(kRenew, name, Hostname(), static_cast<int>(getpid()), std::string(kind),
                         daemon, static_cast<int64_t>(lease.count()));
    out.term = row[0].as<int64_t>();
    return out;
  } catch (const std::exception& e) {
    return DbError("renewing the lease of " + name, e);
  }
}

Result<std::pair<LeaseRenewal, std::vector<StopOrder>>> Database::RenewSupervisor(
    const std::string& name, const std::string& daemon, Duration lease,
    std::span<const AttemptKey> running) {
  try {
    pqxx::nontransaction txn(impl_->conn, "renew_supervisor");
    std::pair<LeaseRenewal, std::vector<StopOrder>> out;
    for (const pqxx::row& row :
         txn.exec_prepared("kiln_renew_supervisor", name, Hostname(), static_cast<int>(getpid()),
                           std::string("supervisor"), daemon, static_cast<int64_t>(lease.count()),
                           KeysJson(running), static_cast<int64_t>(running.size()))) {
      out.first.term = row[0].as<int64_t>();
      if (row[1].is_null()) continue;
      StopOrder stop;
      stop.key.run = RunId(row[1].as<int64_t>());
      stop.key.task_id = row[2].as<std::string>();
      stop.key.attempt = row[3].as<int>();
      stop.cause = row[4].as<std::string>();
      out.second.push_back(std::move(stop));
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("renewing the lease of " + name, e);
  }
}

Status Database::ReleaseLease(const std::string& name) {
  try {
    pqxx::nontransaction txn(impl_->conn, "release_lease");
    txn.exec_params("DELETE FROM daemons WHERE name = $1", name);
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("releasing the lease of " + name, e);
  }
}

Result<std::vector<ActiveRun>> Database::ActiveRunsOf(const std::string& owner) {
  const std::string what = "reading the active runs of " + owner;
  try {
    ReadTxn txn(impl_->conn, "active_runs_of");
    auto out = ReadActive(txn, "lease_owner = $1", owner, what);
    txn.commit();
    return out;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<std::vector<ActiveRun>> Database::ActiveRuns(std::span<const RunId> runs) {
  const std::string what = "reading " + std::to_string(runs.size()) + " active runs";
  json ids = json::array();
  for (RunId id : runs) ids.push_back(Value(id));
  try {
    ReadTxn txn(impl_->conn, "active_runs");
    auto out = ReadActive(txn, "id IN (SELECT jsonb_array_elements_text($1::jsonb)::int8)",
                          ids.dump(), what);
    txn.commit();
    return out;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<Takeover> Database::TakeOverRuns(const std::string& owner, int limit,
                                        const std::optional<LeaderFence>& fence) {
  const std::string what = "taking over runs of expired daemons";
  try {
    Takeover out;
    {
      // Cheap when nothing expired: one read of the active runs' owners, no lock taken.
      pqxx::nontransaction probe(impl_->conn, "expired_owners");
      if (probe.exec_prepared("kiln_expired_owners", owner).empty()) return out;
    }
    pqxx::work txn(impl_->conn, "take_over_runs");
    LockEventOrder(txn);
    if (fence) {
      if (Status s = CheckLeaderFence(txn, *fence); !s.ok()) return s;
    }
    std::vector<std::string> expired;
    for (const pqxx::row& row : txn.exec_prepared("kiln_expired_owners", owner)) {
      expired.push_back(row[0].as<std::string>());
    }
    int left = limit;
    for (const std::string& from : expired) {
      if (left <= 0) break;
      // Renewed since it was read: not expired after all.
      if (txn.exec_prepared("kiln_bump_term", from).empty()) continue;
      for (const pqxx::row& row : txn.exec_prepared("kiln_owned_runs", from, left)) {
        const auto id = RunId(row[0].as<int64_t>());
        const std::string pipeline = row[1].as<std::string>();
        --left;
        if (row[2].as<std::string>() == "cli") {
          const std::string reason = "the kiln run process that drove it (" + from + ") is gone";
          const std::string state =
              txn.exec_params1("SELECT state FROM runs WHERE id = $1", Value(id))[0]
                  .as<std::string>();
          txn.exec_prepared("kiln_cancel_tasks", Value(id), pipeline, owner, reason);
          txn.exec_prepared("kiln_end_run", Value(id), pipeline, state, "cancelled", owner, reason);
          out.cancelled.push_back(id);
          continue;
        }
        txn.exec_params("UPDATE runs SET lease_owner = $2 WHERE id = $1", Value(id), owner);
        txn.exec_params(
            "INSERT INTO events (at, run_id, pipeline, kind, actor, detail) VALUES (now(), $1, "
            "$2, 'run_taken_over', $3, jsonb_build_object('from', $4::text))",
            Value(id), pipeline, owner, from);
        out.taken.push_back(id);
      }
    }
    txn.commit();
    return out;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<std::vector<Database::AttemptStatus>> Database::AttemptStatuses(
    std::span<const AttemptKey> keys) {
  try {
    pqxx::nontransaction txn(impl_->conn, "attempt_statuses");
    std::vector<AttemptStatus> out;
    for (const pqxx::row& row : txn.exec_params(
             "SELECT m.run_id, m.task_id, m.attempt, coalesce(a.lease_owner, ''), "
             "coalesce(d.expires_at > now(), a.lease_owner = '(dispatched)', false), "
             "a.outcome::text, "
             "coalesce(t.state = "
             "'running' AND t.attempt = m.attempt AND a.state = 'running', false) FROM " +
                 JsonRows("$1", "run_id int8, task_id text, attempt int", keys.size()) +
                 " m LEFT JOIN attempts a ON a.run_id = m.run_id AND a.task_id = m.task_id AND "
                 "a.attempt = "
                 "m.attempt LEFT JOIN task_instances t ON t.run_id = m.run_id AND t.task_id = "
                 "m.task_id LEFT JOIN daemons d ON d.name = a.lease_owner",
             KeysJson(keys))) {
      AttemptStatus s;
      s.key.run = RunId(row[0].as<int64_t>());
      s.key.task_id = row[1].as<std::string>();
      s.key.attempt = row[2].as<int>();
      s.attempt = ReadOpen(row);
      s.current = row[6].as<bool>();
      out.push_back(std::move(s));
    }
    // In the order asked (the join's order is the planner's).
    std::map<std::tuple<int64_t, std::string, int>, size_t> at;
    for (size_t i = 0; i < keys.size(); ++i) {
      at.emplace(std::make_tuple(Value(keys[i].run), keys[i].task_id, keys[i].attempt), i);
    }
    std::stable_sort(out.begin(), out.end(), [&](const AttemptStatus& a, const AttemptStatus& b) {
      return at[{Value(a.key.run), a.key.task_id, a.key.attempt}] <
             at[{Value(b.key.run), b.key.task_id, b.key.attempt}];
    });
    return out;
  } catch (const std::exception& e) {
    return DbError("reading " + std::to_string(keys.size()) + " attempts", e);
  }
}

Status Database::HoldCommitterLock(const std::string& supervisor) {
  try {
    impl_->pipeline_setup = "SELECT pg_advisory_lock_shared(" +
                            std::to_string(kCommitterLockClass) + ", hashtext(" +
                            impl_->conn.quote(supervisor) + "))";
    // Held from now on, before the first start is sent anywhere (and again at each reconnect),
    // on both sessions that commit batches: the pipeline, and the one that writes a batch
    // update by update when a value is refused.
    impl_->pipeline.Connect(impl_->url, impl_->sql, impl_->pipeline_setup);
    pqxx::nontransaction txn(impl_->conn, "committer_lock");
    txn.exec(impl_->pipeline_setup);
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("taking the committer lock of " + supervisor, e);
  }
}

Result<std::set<AttemptKey>> Database::StartsRecorded(const std::string& supervisor,
                                                      std::span<const AttemptKey> keys,
                                                      Duration wait) {
  try {
    pqxx::work txn(impl_->conn, "starts_recorded");
    // The supervisor's lease renewals wait meanwhile: a lock held long (a frozen daemon inside
    // a transaction) makes this fail instead.
    txn.exec("SET LOCAL lock_timeout = " +
             std::to_string(std::max<int64_t>(1, static_cast<int64_t>(wait.count()))));
    // The daemon's committing session holds the committer lock until the server notices the
    // daemon is gone, which it does after the last statement the daemon sent: once granted,
    // nothing more will come from that session. Not granted in time, the daemon is alive
    // (disconnected from its supervisor, not dead) or its session is stalled: the answer is
    // read without it, as a commit sent and not yet begun could then still land.
    txn.exec("SAVEPOINT kiln_committer");
    try {
      txn.exec_params("SELECT pg_advisory_xact_lock($1, hashtext($2))", kCommitterLockClass,
                      supervisor);
      txn.exec("RELEASE SAVEPOINT kiln_committer");
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() != "55P03") throw;  // lock_not_available: lock_timeout passed
      txn.exec("ROLLBACK TO SAVEPOINT kiln_committer");
      log::Warn("database: the session committing for " + supervisor +
                " is still there; reading which starts are recorded without waiting for it");
    }
    // A batch of another session that holds the event-order lock keeps it until its commit is
    // visible: once the shared lock is granted, that commit is visible or rolled back.
    txn.exec("SELECT pg_advisory_xact_lock_shared(" + std::to_string(kEventOrderLock) + ")");
    std::set<AttemptKey> out;
    for (const pqxx::row& row : txn.exec_params(
             "SELECT m.run_id, m.task_id, m.attempt FROM " +
                 JsonRows("$2", "run_id int8, task_id text, attempt int", keys.size()) +
                 " m JOIN task_instances t ON t.run_id = "
                 "m.run_id AND t.task_id = m.task_id AND t.state = 'running' AND t.attempt = "
                 "m.attempt JOIN attempts a ON a.run_id = m.run_id AND a.task_id = m.task_id AND "
                 "a.attempt = m.attempt AND a.lease_owner = $1",
             supervisor, KeysJson(keys))) {
      out.insert(
          AttemptKey{RunId(row[0].as<int64_t>()), row[1].as<std::string>(), row[2].as<int>()});
    }
    txn.commit();
    return out;
  } catch (const std::exception& e) {
    return DbError("reading which of " + std::to_string(keys.size()) + " starts are recorded", e);
  }
}

Status Database::RecordOutcomes(const std::string& supervisor,
                                std::span<const RecordedOutcome> outcomes) {
  if (outcomes.empty()) return Status::Ok();
  json rows = json::array();
  for (const RecordedOutcome& o : outcomes) {
    rows.push_back({{"run_id", Value(o.key.run)},
                    {"task_id", SafeUtf8(o.key.task_id)},
                    {"attempt", o.key.attempt},
                    {"outcome", json::parse(OutcomeJson(o.outcome))}});
  }
  try {
    pqxx::nontransaction txn(impl_->conn, "record_outcomes");
    txn.exec_params(
        "WITH m AS (SELECT * FROM " +
            JsonRows("$2", "run_id int8, task_id text, attempt int, outcome jsonb",
                     outcomes.size()) +
            " m), upd AS (UPDATE attempts a SET outcome = m.outcome FROM m "
            "WHERE a.run_id = m.run_id AND a.task_id = m.task_id AND a.attempt = m.attempt AND "
            "a.state = 'running' AND a.outcome IS NULL AND a.lease_owner = $1 RETURNING a.run_id) "
            "SELECT pg_notify('kiln_outcomes', p) FROM (SELECT string_agg(DISTINCT run_id::text, "
            "',') AS p FROM upd) x WHERE p IS NOT NULL",
        supervisor, rows.dump());
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("recording " + std::to_string(outcomes.size()) + " attempt ends", e);
  }
}

Result<std::string> Database::RequestCancel(RunId run, std::string_view actor,
                                            const std::string& reason) {
  const std::string what = "requesting the cancel of run " + ToString(run);
  try {
    pqxx::work txn(impl_->conn, "request_cancel");
    LockEventOrder(txn);
    pqxx::result rows = txn.exec_params(
        "SELECT state, pipeline, coalesce(lease_owner, '') FROM runs WHERE id = $1 FOR UPDATE",
        Value(run));
    if (rows.empty()) {
      return Status::Error(ErrorCode::kNotFound, "run " + ToString(run) + " not found");
    }
    const std::string state = rows[0][0].as<std::string>();
    if (state != "queued" && state != "running") {
      return Status::Error(ErrorCode::kConflict,
                           "run " + ToString(run) + " has already ended (" + state + ")");
    }
    txn.exec_params(
        "UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, now()), "
        "cancel_reason = coalesce(cancel_reason, $2) WHERE id = $1",
        Value(run), SafeUtf8(reason));
    txn.exec_params(
        "INSERT INTO events (at, run_id, pipeline, kind, actor, detail) VALUES (now(), $1, $2, "
        "'cancel_requested', $3, jsonb_build_object('reason', $4::text))",
        Value(run), rows[0][1].as<std::string>(), SafeUtf8(actor), SafeUtf8(reason));
    txn.exec_params("SELECT pg_notify('kiln_commands', $1::text || ' ' || $2::text)", ToString(run),
                    SafeUtf8(reason));
    txn.commit();
    return rows[0][2].as<std::string>();
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<std::string> Database::PipelineSource(const std::string& pipeline, const std::string& hash) {
  try {
    pqxx::nontransaction txn(impl_->conn, "pipeline_source");
    pqxx::result rows = txn.exec_params(
        "SELECT source FROM pipeline_versions WHERE pipeline = $1 AND content_hash = $2", pipeline,
        hash);
    if (rows.empty()) {
      return Status::Error(ErrorCode::kNotFound, "pipeline '" + pipeline + "' version " +
                                                     hash.substr(0, 12) + " is not kept");
    }
    return rows[0][0].as<std::string>();
  } catch (const std::exception& e) {
    return DbError("reading pipeline '" + pipeline + "' version " + hash.substr(0, 12), e);
  }
}

}  // namespace kiln::store
