// Database: retention. Old ended runs and old events are deleted in small batches, each its own
// short transaction that locks nothing a scheduler waits for: ended runs are never written by a
// scheduler, and rows of active runs are never chosen.
#include <nlohmann/json.hpp>

#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

// $1 ended before, $2 runs kept per pipeline, $3 limit. runs_ended (ended_at) for the candidates;
// runs_by_pipeline (pipeline, id DESC) for the id of each pipeline's $2-th newest run.
constexpr const char* kOldRuns = R"sql(
SELECT r.id, r.pipeline FROM runs r
WHERE r.state IN ('success', 'failed', 'cancelled') AND r.ended_at < $1::timestamptz
  AND ($2::int = 0 OR r.id < (SELECT n.id FROM runs n WHERE n.pipeline = r.pipeline
                              ORDER BY n.id DESC OFFSET $2::int - 1 LIMIT 1))
ORDER BY r.ended_at LIMIT $3::int)sql";

// $1 run ids (a JSON array), $2 ended before.
constexpr const char* kDeleteRuns = R"sql(
WITH doomed AS (
  SELECT id, backfill_id FROM runs
  WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)::int8)
    AND state IN ('success', 'failed', 'cancelled') AND ended_at < $2::timestamptz
  FOR UPDATE SKIP LOCKED),
gone AS (DELETE FROM runs WHERE id IN (SELECT id FROM doomed) RETURNING id, pipeline),
kept AS (INSERT INTO deleted_runs (run_id, pipeline) SELECT id, pipeline FROM gone
         ON CONFLICT (run_id) DO NOTHING)
SELECT count(*) FROM gone)sql";

// Backfills whose runs are all gone (after kDeleteRuns committed).
constexpr const char* kDeleteEmptyBackfills = R"sql(
DELETE FROM backfills b WHERE b.created_at < $1::timestamptz
  AND NOT EXISTS (SELECT FROM runs r WHERE r.backfill_id = b.id))sql";

// $1 before, $2 limit. events_by_time (at).
constexpr const char* kDeleteEvents = R"sql(
WITH doomed AS (
  SELECT e.id FROM events e
  WHERE e.at < $1::timestamptz
    AND NOT EXISTS (SELECT FROM runs r WHERE r.id = e.run_id AND r.state IN ('queued', 'running'))
  ORDER BY e.at LIMIT $2::int),
gone AS (DELETE FROM events WHERE id IN (SELECT id FROM doomed) RETURNING 1)
SELECT count(*) FROM gone)sql";

}  // namespace

Result<std::vector<Database::RunRef>> Database::OldRuns(Instant ended_before, int keep_per_pipeline,
                                                        int limit) {
  try {
    pqxx::nontransaction txn(impl_->conn, "old_runs");
    std::vector<RunRef> out;
    for (const pqxx::row& row :
         txn.exec_params(kOldRuns, TimeParam(ended_before), keep_per_pipeline, limit)) {
      out.push_back(RunRef{RunId(row[0].as<int64_t>()), row[1].as<std::string>()});
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("finding runs past retention", e);
  }
}

Result<int64_t> Database::DeleteRuns(std::span<const RunId> runs, Instant ended_before) {
  nlohmann::json ids = nlohmann::json::array();
  for (RunId id : runs) ids.push_back(Value(id));
  try {
    pqxx::work txn(impl_->conn, "delete_runs");
    const int64_t n =
        txn.exec_params1(kDeleteRuns, ids.dump(), TimeParam(ended_before))[0].as<int64_t>();
    txn.exec_params(kDeleteEmptyBackfills, TimeParam(ended_before));
    txn.commit();
    return n;
  } catch (const std::exception& e) {
    return DbError("deleting " + std::to_string(runs.size()) + " runs past retention", e);
  }
}

Result<std::set<RunId>> Database::DeletedRuns(std::span<const RunId> runs) {
  nlohmann::json ids = nlohmann::json::array();
  for (RunId id : runs) ids.push_back(Value(id));
  try {
    pqxx::nontransaction txn(impl_->conn, "deleted_runs");
    std::set<RunId> out;
    for (const pqxx::row& row :
         txn.exec_params("SELECT run_id FROM deleted_runs WHERE run_id IN (SELECT "
                         "jsonb_array_elements_text($1::jsonb)::int8)",
                         ids.dump())) {
      out.insert(RunId(row[0].as<int64_t>()));
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading which runs retention deleted", e);
  }
}

Result<int64_t> Database::DeleteEvents(Instant before, int limit) {
  try {
    pqxx::work txn(impl_->conn, "delete_events");
    const int64_t n = txn.exec_params1(kDeleteEvents, TimeParam(before), limit)[0].as<int64_t>();
    // Workers' history goes by the same clock (claims, renewals and ends are events of a kind).
    txn.exec_params(
        "DELETE FROM worker_history WHERE id IN (SELECT id FROM worker_history WHERE at < "
        "$1::timestamptz ORDER BY id LIMIT $2::int)",
        TimeParam(before), limit);
    // So are the records of deleted runs: a daemon away longer keeps those folders.
    txn.exec_params(
        "DELETE FROM deleted_runs WHERE run_id IN (SELECT run_id FROM deleted_runs WHERE "
        "deleted_at < $1::timestamptz LIMIT $2::int)",
        TimeParam(before), limit);
    txn.commit();
    return n;
  } catch (const std::exception& e) {
    return DbError("deleting events past retention", e);
  }
}

}  // namespace kiln::store
