// Database's reads of attempts' results: a pipeline's metrics over time, and the lineage of a
// file through the artifacts its producing attempts recorded.
#include <set>

#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

using scheduler::LineageFile;
using scheduler::LineageQuery;
using scheduler::LineageStep;

// Walks producers upstream within one snapshot. It cannot loop: a producer is looked up among
// artifacts rows below the consumer's, and a producer's inputs were recorded before its outputs
// (one statement, inputs first), so every step goes to smaller ids.
class LineageWalk {
 public:
  LineageWalk(pqxx::transaction_base& txn, const LineageQuery& query) : txn_(txn), query_(query) {}

  // Fills file.produced_by from the newest output of its content recorded before `below` (an
  // artifacts id), preferring one at the same path.
  void Expand(LineageFile& file, int64_t below, int depth) {
    pqxx::result producer = txn_.exec_params(
        "SELECT run_id, task_id, attempt FROM artifacts WHERE sha256 = $1 AND role = 'output' "
        "AND id < $2 ORDER BY (path = $3) DESC, id DESC LIMIT 1",
        file.sha256, below, file.path);
    if (producer.empty()) return;
    const int64_t run = producer[0][0].as<int64_t>();
    const std::string task = producer[0][1].as<std::string>();
    const int attempt = producer[0][2].as<int>();
    pqxx::result step_rows = txn_.exec_params(
        "SELECT r.pipeline, r.version_hash, r.trigger, " + EpochMs("r.logical_date") +
            ", r.params::text, " + EpochMs("a.ended_at") +
            " FROM attempts a JOIN runs r ON r.id = a.run_id WHERE a.run_id = $1 AND "
            "a.task_id = $2 AND a.attempt = $3",
        run, task, attempt);
    if (step_rows.empty()) return;
    const pqxx::row row = step_rows[0];
    auto step = std::make_shared<LineageStep>();
    step->run = RunId(run);
    step->pipeline = row[0].as<std::string>();
    step->version_hash = row[1].as<std::string>();
    step->trigger = row[2].as<std::string>();
    step->logical_date = InstantFromMs(row[3].as<int64_t>());
    step->params = ParseParams(row[4].as<std::string>());
    step->ended_at = OptInstant(row[5]);
    step->task_id = task;
    step->attempt = attempt;
    pqxx::result inputs = txn_.exec_params(
        "SELECT id, path, sha256, bytes FROM artifacts WHERE run_id = $1 AND task_id = $2 AND "
        "attempt = $3 AND role = 'input' ORDER BY id",
        run, task, attempt);
    for (const pqxx::row& in : inputs) {
      LineageFile f;
      f.path = in[1].as<std::string>();
      f.sha256 = in[2].as<std::string>();
      f.bytes = in[3].as<int64_t>();
      ++files_;
      if (depth + 1 >= query_.max_depth || files_ >= query_.max_files) {
        f.truncated = true;
      } else {
        Expand(f, in[0].as<int64_t>(), depth + 1);
      }
      step->inputs.push_back(std::move(f));
    }
    file.produced_by = std::move(step);
  }

 private:
  pqxx::transaction_base& txn_;
  const LineageQuery& query_;
  int files_ = 1;
};

}  // namespace

Result<scheduler::MetricsPage> Database::PipelineMetrics(const std::string& pipeline,
                                                         const std::optional<std::string>& task,
                                                         std::optional<RunId> before, int limit) {
  limit = std::clamp(limit, 1, 100);
  try {
    ReadTxn txn(impl_->conn, "pipeline_metrics");
    std::optional<int64_t> cursor;
    if (before) cursor = Value(*before);
    const std::string filter =
        "a.results ? 'metrics' AND a.state IN ('success', 'skipped') AND ($2::text IS NULL OR "
        "a.task_id = $2)";
    pqxx::result rows = txn.exec_params(
        "WITH rs AS (SELECT r.id, r.logical_date FROM runs r WHERE r.pipeline = $1 AND "
        "($3::int8 IS NULL OR r.id < $3) AND EXISTS (SELECT FROM attempts a WHERE a.run_id = "
        "r.id AND " +
            filter + ") ORDER BY r.id DESC LIMIT $4) SELECT rs.id, a.task_id, a.attempt, " +
            EpochMs("rs.logical_date") + ", " + EpochMs("a.ended_at") +
            ", (a.results->'metrics')::text, a.state FROM rs JOIN attempts a ON a.run_id = rs.id "
            "WHERE " +
            filter + " ORDER BY rs.id DESC, a.task_id, a.attempt",
        pipeline, task, cursor, limit);
    txn.commit();
    scheduler::MetricsPage page;
    std::set<int64_t> runs;
    for (const pqxx::row& row : rows) {
      scheduler::MetricsPoint p;
      p.run = RunId(row[0].as<int64_t>());
      runs.insert(row[0].as<int64_t>());
      p.task_id = row[1].as<std::string>();
      p.attempt = row[2].as<int>();
      p.logical_date = InstantFromMs(row[3].as<int64_t>());
      p.ended_at = OptInstant(row[4]);
      p.values = row[5].as<std::string>();
      p.skipped = row[6].as<std::string>() == "skipped";
      page.points.push_back(std::move(p));
    }
    if (static_cast<int>(runs.size()) == limit) page.next = RunId(*runs.begin());
    return page;
  } catch (const std::exception& e) {
    return DbError("reading the metrics of pipeline '" + pipeline + "'", e);
  }
}

Result<std::vector<PendingAsk>> Database::PendingDriftAsks(Duration window,
                                                           const std::string& owner) {
  try {
    pqxx::nontransaction txn(impl_->conn, "pending_drift_asks");
    // attempts_asking: the partial index of successes whose report names a pipeline to run.
    pqxx::result rows = txn.exec_params(
        "SELECT a.run_id, r.pipeline, a.task_id, a.results::text FROM attempts a JOIN runs r ON "
        "r.id = a.run_id WHERE a.results->'report' ? 'trigger' AND a.state = 'success' AND "
        "a.ended_at > now() - make_interval(secs => $1::float8 / 1000) AND "
        "CASE WHEN jsonb_typeof(a.results->'report'->'drifted') = 'array' THEN "
        "jsonb_array_length(a.results->'report'->'drifted') > 0 ELSE false END AND "
        "r.lease_owner = $2 AND NOT EXISTS "
        "(SELECT FROM events e WHERE e.run_id = a.run_id AND e.detail->>'task' = a.task_id AND "
        "e.kind IN ('drift_triggered', 'drift_trigger_skipped', 'drift_trigger_failed')) "
        "ORDER BY a.ended_at",
        static_cast<int64_t>(window.count()), owner);
    std::vector<PendingAsk> out;
    for (const pqxx::row& row : rows) {
      out.push_back(PendingAsk{RunId(row[0].as<int64_t>()), row[1].as<std::string>(),
                               row[2].as<std::string>(), row[3].as<std::string>()});
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading unanswered drift triggers", e);
  }
}

Result<scheduler::LineageFile> Database::Lineage(const LineageQuery& query) {
  const std::string subject = query.path ? "the file '" + *query.path + "'"
                                         : "a file with SHA-256 " + query.sha256.value_or("");
  try {
    ReadTxn txn(impl_->conn, "lineage");
    // What attempts wrote is the better answer; a file only ever read (raw data) is still known.
    pqxx::result found = query.path
                             ? txn.exec_params(
                                   "SELECT id, path, sha256, bytes FROM artifacts WHERE path = "
                                   "$1 ORDER BY (role = 'output') DESC, id DESC LIMIT 1",
                                   *query.path)
                             : txn.exec_params(
                                   "SELECT id, path, sha256, bytes FROM artifacts WHERE sha256 "
                                   "= $1 ORDER BY (role = 'output') DESC, id DESC LIMIT 1",
                                   query.sha256.value_or(""));
    if (found.empty()) {
      return Status::Error(ErrorCode::kNotFound, "no successful attempt declared " + subject +
                                                     " among its inputs or "
                                                     "outputs");
    }
    LineageFile root;
    root.path = found[0][1].as<std::string>();
    root.sha256 = found[0][2].as<std::string>();
    root.bytes = found[0][3].as<int64_t>();
    LineageWalk walk(txn, query);
    // Below the next id: the found row itself may be the producer.
    walk.Expand(root, found[0][0].as<int64_t>() + 1, 0);
    txn.commit();
    return root;
  } catch (const std::exception& e) {
    return DbError("reading the lineage of " + subject, e);
  }
}

Result<std::vector<scheduler::DecisionRecord>> Database::ListDecisions(RunId run) {
  try {
    ReadTxn txn(impl_->conn, "list_decisions");
    if (txn.exec_params("SELECT 1 FROM runs WHERE id = $1", Value(run)).empty()) {
      return Status::Error(ErrorCode::kNotFound, "run " + ToString(run) + " not found");
    }
    // The run's events (events_by_run), those that carry a decision.
    pqxx::result rows = txn.exec_params(
        "SELECT id, task_id, " + EpochMs("at") +
            ", detail->>'decision', coalesce(detail->>'by', ''), coalesce(detail->>'note', '') "
            "FROM events WHERE run_id = $1 AND kind = 'task_state' AND detail ? 'decision' "
            "ORDER BY id",
        Value(run));
    txn.commit();
    std::vector<scheduler::DecisionRecord> out;
    for (const pqxx::row& row : rows) {
      scheduler::DecisionRecord d;
      d.event_id = row[0].as<int64_t>();
      d.task_id = row[1].as<std::string>("");
      d.at = InstantFromMs(row[2].as<int64_t>());
      d.decision = row[3].as<std::string>("");
      d.by = row[4].as<std::string>();
      d.note = row[5].as<std::string>();
      out.push_back(std::move(d));
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading the decisions of run " + ToString(run), e);
  }
}

Result<std::vector<scheduler::ApprovalRecord>> Database::ListApprovals(int limit) {
  limit = std::clamp(limit, 1, 1000);
  try {
    ReadTxn txn(impl_->conn, "list_approvals");
    pqxx::result rows = txn.exec_params(
        "SELECT t.run_id, r.pipeline, t.task_id, " + EpochMs("r.logical_date") + ", " +
            EpochMs("t.started_at") + ", " + EpochMs("t.retry_at") +
            " FROM task_instances t JOIN runs r ON r.id = t.run_id WHERE t.state = 'waiting' AND "
            "t.waiting_for = 'approval' ORDER BY t.started_at, t.run_id, t.position LIMIT $1",
        limit);
    txn.commit();
    std::vector<scheduler::ApprovalRecord> out;
    for (const pqxx::row& row : rows) {
      scheduler::ApprovalRecord a;
      a.run = RunId(row[0].as<int64_t>());
      a.pipeline = row[1].as<std::string>();
      a.task_id = row[2].as<std::string>();
      a.logical_date = InstantFromMs(row[3].as<int64_t>());
      a.since = OptInstant(row[4]).value_or(a.logical_date);
      a.deadline = OptInstant(row[5]);
      out.push_back(std::move(a));
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading the tasks waiting for approval", e);
  }
}

}  // namespace kiln::store
