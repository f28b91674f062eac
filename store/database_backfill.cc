// Database: backfills, their runs and their progress.
#include <nlohmann/json.hpp>

#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

using scheduler::BackfillRecord;

// A backfill row with its run counts by state.
std::string BackfillSelect(const std::string& where) {
  return "SELECT b.id, b.pipeline, " + EpochMs("b.range_from") + ", " + EpochMs("b.range_to") +
         ", b.max_active_runs, b.cancelled, b.created_by, " + EpochMs("b.created_at") +
         ", count(r.id), count(r.id) FILTER (WHERE r.state = 'queued'), "
         "count(r.id) FILTER (WHERE r.state = 'running'), "
         "count(r.id) FILTER (WHERE r.state = 'success'), "
         "count(r.id) FILTER (WHERE r.state = 'failed'), "
         "count(r.id) FILTER (WHERE r.state = 'cancelled') "
         "FROM backfills b LEFT JOIN runs r ON r.backfill_id = b.id " +
         where + " GROUP BY b.id";
}

BackfillRecord ReadBackfill(const pqxx::row& row) {
  BackfillRecord b;
  b.id = row[0].as<int64_t>();
  b.pipeline = row[1].as<std::string>();
  b.from = InstantFromMs(row[2].as<int64_t>());
  b.to = InstantFromMs(row[3].as<int64_t>());
  b.max_active_runs = row[4].as<int>();
  b.cancel_requested = row[5].as<bool>();
  b.created_by = row[6].as<std::string>();
  b.created_at = InstantFromMs(row[7].as<int64_t>());
  b.total = row[8].as<int64_t>();
  b.queued = row[9].as<int64_t>();
  b.running = row[10].as<int64_t>();
  b.succeeded = row[11].as<int64_t>();
  b.failed = row[12].as<int64_t>();
  b.cancelled = row[13].as<int64_t>();
  return b;
}

Status NoBackfill(int64_t id) {
  return Status::Error(ErrorCode::kNotFound, "backfill " + std::to_string(id) + " not found");
}

}  // namespace

Result<std::pair<int64_t, int64_t>> Database::CreateBackfill(const NewBackfill& backfill,
                                                             std::span<const NewRun> runs) {
  const std::string what = "creating a backfill of '" + backfill.pipeline + "'";
  try {
    pqxx::work txn(impl_->conn, "create_backfill");
    if (!runs.empty()) {
      txn.exec_prepared("kiln_upsert_version", backfill.pipeline, runs[0].version_hash,
                        runs[0].source);
    }
    LockEventOrder(txn);
    pqxx::result row = txn.exec_params(
        "INSERT INTO backfills (pipeline, range_from, range_to, max_active_runs, created_by) "
        "VALUES ($1, $2::timestamptz, $3::timestamptz, $4, $5) RETURNING id",
        backfill.pipeline, TimeParam(backfill.from), TimeParam(backfill.to),
        backfill.max_active_runs, backfill.created_by);
    const int64_t id = row[0][0].as<int64_t>();
    nlohmann::json detail = {{"backfill", id},
                             {"from", FormatRfc3339Millis(backfill.from)},
                             {"to", FormatRfc3339Millis(backfill.to)},
                             {"runs", runs.size()},
                             {"max_active_runs", backfill.max_active_runs}};
    pqxx::result event = txn.exec_params(
        "INSERT INTO events (at, pipeline, kind, actor, detail) "
        "VALUES (now(), $1, 'backfill_created', $2, $3::jsonb) RETURNING id",
        backfill.pipeline, backfill.created_by, detail.dump());
    for (NewRun run : runs) {
      run.backfill = id;
      auto created = InsertRun(txn, run);
      if (!created.ok()) return created.status();
    }
    txn.commit();
    return std::make_pair(id, event[0][0].as<int64_t>());
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<std::vector<RunId>> Database::BackfillRuns(int64_t id) {
  try {
    pqxx::nontransaction txn(impl_->conn, "backfill_runs");
    std::vector<RunId> out;
    for (const pqxx::row& r :
         txn.exec_params("SELECT id FROM runs WHERE backfill_id = $1 ORDER BY id", id)) {
      out.push_back(RunId(r[0].as<int64_t>()));
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("listing the runs of backfill " + std::to_string(id), e);
  }
}

Result<BackfillRecord> Database::GetBackfill(int64_t id) {
  try {
    pqxx::nontransaction txn(impl_->conn, "get_backfill");
    pqxx::result rows = txn.exec_params(BackfillSelect("WHERE b.id = $1"), id);
    if (rows.empty()) return NoBackfill(id);
    return ReadBackfill(rows[0]);
  } catch (const std::exception& e) {
    return DbError("reading backfill " + std::to_string(id), e);
  }
}

Result<std::vector<BackfillRecord>> Database::ListBackfills(const std::string& pipeline,
                                                            int limit) {
  limit = std::clamp(limit, 1, 100);
  try {
    pqxx::nontransaction txn(impl_->conn, "list_backfills");
    std::vector<BackfillRecord> out;
    for (const pqxx::row& row :
         txn.exec_params(BackfillSelect("WHERE b.pipeline = $1") + " ORDER BY b.id DESC LIMIT " +
                             std::to_string(limit),
                         pipeline)) {
      out.push_back(ReadBackfill(row));
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("listing the backfills of '" + pipeline + "'", e);
  }
}

Result<std::vector<RunId>> Database::CancelBackfill(int64_t id, std::string_view actor) {
  const std::string what = "cancelling backfill " + std::to_string(id);
  try {
    pqxx::work txn(impl_->conn, "cancel_backfill");
    LockEventOrder(txn);
    pqxx::result rows = txn.exec_params(BackfillSelect("WHERE b.id = $1"), id);
    if (rows.empty()) return NoBackfill(id);
    BackfillRecord b = ReadBackfill(rows[0]);
    if (b.done() == b.total) {
      return Status::Error(ErrorCode::kConflict, "backfill " + std::to_string(id) +
                                                     " has already ended (" + b.state() + ")");
    }
    txn.exec_params("UPDATE backfills SET cancelled = true WHERE id = $1", id);
    txn.exec_params(
        "INSERT INTO events (at, pipeline, kind, actor, detail) "
        "VALUES (now(), $1, 'backfill_cancelled', $2, jsonb_build_object('backfill', $3::int8))",
        b.pipeline, std::string(actor), id);
    std::vector<RunId> active;
    for (const pqxx::row& r : txn.exec_params(
             "SELECT id FROM runs WHERE backfill_id = $1 AND state IN ('queued', 'running') "
             "ORDER BY id",
             id)) {
      active.push_back(RunId(r[0].as<int64_t>()));
    }
    txn.commit();
    return active;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

}  // namespace kiln::store
