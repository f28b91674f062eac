// Database: the bookkeeping of schedules (fire cursors, skipped fires) and the runs they create.
#include "common/crash.h"
#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

constexpr const char* kEnsurePipeline =
    "INSERT INTO pipelines (name) VALUES ($1) ON CONFLICT (name) DO NOTHING";

constexpr const char* kLockSchedule = R"sql(
SELECT (extract(epoch FROM fire_cursor) * 1000)::int8, fires_skipped, paused
FROM pipelines WHERE name = $1 FOR UPDATE)sql";

constexpr const char* kActiveRuns = R"sql(
SELECT id FROM runs WHERE pipeline = $1 AND state IN ('queued', 'running')
  AND backfill_id IS NULL ORDER BY id)sql";

constexpr const char* kMoveCursor = R"sql(
UPDATE pipelines SET fire_cursor = greatest(fire_cursor, $2::timestamptz),
                     fires_skipped = fires_skipped + $3
WHERE name = $1)sql";

constexpr const char* kPipelineEvent = R"sql(
INSERT INTO events (at, pipeline, kind, actor, detail)
VALUES (now(), $1, $2, $3, $4::jsonb))sql";

}  // namespace

Result<FireResult> Database::FireSchedule(
    const std::string& pipeline, const std::string& version_hash, const std::string& source,
    const std::function<FireDecision(const ScheduleState&)>& decide,
    const std::optional<LeaderFence>& fence) {
  const std::string what = "checking the schedule of '" + pipeline + "'";
  try {
    pqxx::work txn(impl_->conn, "fire_schedule");
    // The version row before the event-order lock, in the order CreateRun takes them (the other
    // order can deadlock with a trigger of a new version).
    txn.exec_prepared("kiln_upsert_version", pipeline, version_hash, source);
    // The event-order lock first, as every transaction that appends events and locks rows
    // (SetPaused locks this same row after taking it).
    LockEventOrder(txn);
    txn.exec_params(kEnsurePipeline, pipeline);
    pqxx::result row = txn.exec_params(kLockSchedule, pipeline);
    // After the row lock: a leader that takes over from this one waits for this fire, then
    // reads the cursor it moved.
    if (fence) {
      if (Status s = CheckLeaderFence(txn, *fence); !s.ok()) return s;
    }
    FireResult result;
    ScheduleState& state = result.before;
    if (!row[0][0].is_null()) state.cursor = InstantFromMs(row[0][0].as<int64_t>());
    state.fires_skipped = row[0][1].as<int64_t>();
    state.paused = Opt<bool>(row[0][2]);
    for (const pqxx::row& r : txn.exec_params(kActiveRuns, pipeline)) {
      state.active.push_back(RunId(r[0].as<int64_t>()));
    }
    FireDecision decision = decide(state);
    if (decision.runs.empty() && !decision.cursor && decision.skipped == 0 &&
        decision.skipped_details.empty()) {
      txn.commit();  // the new pipelines row, if any
      return result;
    }
    for (const NewRun& run : decision.runs) {
      auto created = InsertRun(txn, run);
      if (!created.ok()) return created.status();
      result.runs.push_back(*created);
    }
    if (decision.cursor || decision.skipped != 0) {
      txn.exec_params(kMoveCursor, pipeline, TimeParam(decision.cursor), decision.skipped);
    }
    for (const std::string& detail : decision.skipped_details) {
      txn.exec_params(kPipelineEvent, pipeline, "fire_skipped", "schedule", detail);
    }
    if (!decision.runs.empty()) CrashPoint("fire.inside");
    txn.commit();
    return result;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Status Database::RecordPipelineEvent(std::string_view pipeline, std::string_view kind,
                                     std::string_view actor, const std::string& detail_json) {
  try {
    pqxx::work txn(impl_->conn, "pipeline_event");
    LockEventOrder(txn);
    txn.exec_params(kPipelineEvent, std::string(pipeline), std::string(kind), std::string(actor),
                    detail_json);
    txn.commit();
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("recording event '" + std::string(kind) + "' of '" + std::string(pipeline) + "'",
                   e);
  }
}

Result<std::map<std::string, ScheduleState>> Database::ScheduleStates() {
  try {
    pqxx::nontransaction txn(impl_->conn, "schedule_states");
    std::map<std::string, ScheduleState> out;
    for (const pqxx::row& row :
         txn.exec("SELECT name, (extract(epoch FROM fire_cursor) * 1000)::int8, fires_skipped, "
                  "paused FROM pipelines")) {
      ScheduleState state;
      if (!row[1].is_null()) state.cursor = InstantFromMs(row[1].as<int64_t>());
      state.fires_skipped = row[2].as<int64_t>();
      state.paused = Opt<bool>(row[3]);
      out.emplace(row[0].as<std::string>(), std::move(state));
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading the schedules", e);
  }
}

}  // namespace kiln::store
