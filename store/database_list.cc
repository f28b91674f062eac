// Database's listings: pages of runs, queued runs, pause states.
#include <algorithm>

#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

// The most runs one ListRuns returns.
constexpr int kMaxRuns = 100;

}  // namespace

Result<RunPage> Database::ListRuns(const RunFilter& filter) {
  const int limit = std::clamp(filter.limit, 1, kMaxRuns);
  // Newest first, stopping after limit + 1 rows (the extra one says whether a next page
  // exists). With a pipeline this walks runs_by_pipeline (pipeline, id DESC) from the cursor,
  // else the primary key backwards; the other conditions filter the rows walked.
  std::vector<std::string> params;
  std::string where;
  // Parameters are sent as text; `cast` says what they are where the planner cannot tell.
  auto add = [&](std::string_view condition, std::string value, std::string_view cast = "") {
    params.push_back(std::move(value));
    where += (where.empty() ? " WHERE " : " AND ") + std::string(condition) + " $" +
             std::to_string(params.size()) + std::string(cast);
  };
  if (filter.pipeline) add("pipeline =", *filter.pipeline);
  if (filter.state) add("state =", std::string(dag::Name(*filter.state)));
  if (filter.created_after) add("created_at >=", TimeParam(*filter.created_after), "::timestamptz");
  if (filter.created_before)
    add("created_at <", TimeParam(*filter.created_before), "::timestamptz");
  if (filter.backfill) add("backfill_id =", std::to_string(*filter.backfill), "::int8");
  if (filter.before) add("id <", ToString(*filter.before), "::int8");
  const std::string sql = "SELECT " + RunColumns() + ", id FROM runs" + where +
                          " ORDER BY id DESC LIMIT " + std::to_string(limit + 1);
  try {
    pqxx::nontransaction txn(impl_->conn, "list_runs");
    pqxx::result rows = txn.exec_params(sql, pqxx::prepare::make_dynamic_params(params));
    RunPage page;
    for (const pqxx::row& row : rows) {
      if (page.runs.size() == static_cast<size_t>(limit)) {
        page.next = page.runs.back().id;
        break;
      }
      auto run = ReadRun(RunId(row[kRunColumns].as<int64_t>()), row);
      if (!run.ok()) return Status::Error("database: listing runs: " + run.message());
      page.runs.push_back(std::move(run).value());
    }
    return page;
  } catch (const std::exception& e) {
    return DbError("listing runs", e);
  }
}

Result<std::vector<RunRecord>> Database::QueuedRuns(const std::string& pipeline) {
  const std::string what = "listing the queued runs of '" + pipeline + "'";
  try {
    ReadTxn txn(impl_->conn, "queued_runs");
    // runs_active (pipeline, id) WHERE state IN ('queued', 'running'), which state = 'queued'
    // implies.
    const std::string queued = "FROM runs WHERE pipeline = $1 AND state = 'queued'";
    std::vector<RunRecord> runs;
    for (const pqxx::row& row :
         txn.exec_params("SELECT " + RunColumns() + ", id " + queued + " ORDER BY id", pipeline)) {
      auto run = ReadRun(RunId(row[kRunColumns].as<int64_t>()), row);
      if (!run.ok()) return Status::Error("database: " + what + ": " + run.message());
      runs.push_back(std::move(run).value());
    }
    // Their tasks, by run then position (task_instances' primary key per run).
    size_t i = 0;
    for (const pqxx::row& row : txn.exec_params("SELECT " + TaskColumns() +
                                                    ", run_id FROM task_instances WHERE run_id "
                                                    "IN (SELECT id " +
                                                    queued + ") ORDER BY run_id, position",
                                                pipeline)) {
      const auto run = RunId(row[kTaskColumns].as<int64_t>());
      while (i < runs.size() && runs[i].id != run) ++i;
      if (i == runs.size()) break;  // cannot happen: same snapshot, same order
      auto task = ReadTask(row);
      if (!task.ok()) return Status::Error("database: " + what + ": " + task.message());
      runs[i].tasks.push_back(std::move(task).value());
    }
    txn.commit();
    return runs;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<std::map<std::string, bool>> Database::PausedPipelines() {
  try {
    pqxx::nontransaction txn(impl_->conn, "paused_pipelines");
    std::map<std::string, bool> paused;
    for (const pqxx::row& row :
         txn.exec("SELECT name, paused FROM pipelines WHERE paused IS NOT NULL")) {
      paused.emplace(row[0].as<std::string>(), row[1].as<bool>());
    }
    return paused;
  } catch (const std::exception& e) {
    return DbError("reading the paused pipelines", e);
  }
}

}  // namespace kiln::store
