// Database's reads for the web page: a pipeline's grid (recent runs with every task's state)
// and the recent runs of every pipeline.
#include <algorithm>
#include <map>
#include <set>

#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

constexpr int kMaxGridRuns = 100;

// SQL that turns task_instances.state into its dag::StateLetter; the states of ended runs first,
// as most rows of a grid are theirs (one comparison for a success).
std::string LetterCase() {
  std::string out = "CASE t.state";
  for (auto state :
       {dag::TaskState::kSuccess, dag::TaskState::kFailed, dag::TaskState::kUpstreamFailed,
        dag::TaskState::kSkipped, dag::TaskState::kCancelled, dag::TaskState::kRunning,
        dag::TaskState::kQueued, dag::TaskState::kPending, dag::TaskState::kUpForRetry,
        dag::TaskState::kWaiting}) {
    out += " WHEN '" + std::string(dag::Name(state)) + "' THEN '" + dag::StateLetter(state) + "'";
  }
  return out + " ELSE '?' END";
}

// The task ids of each run in `runs`, in pipeline order.
std::map<RunId, std::vector<std::string>> TaskIds(ReadTxn& txn, const std::set<RunId>& runs) {
  std::string ids = "{";
  for (RunId id : runs) ids += (ids.size() > 1 ? "," : "") + ToString(id);
  ids += "}";
  std::map<RunId, std::vector<std::string>> out;
  // task_instances' primary key (run_id, task_id) finds each run's rows.
  for (const pqxx::row& row : txn.exec_params("SELECT run_id, task_id FROM task_instances WHERE "
                                              "run_id = ANY($1::int8[]) AND parent IS NULL "
                                              "ORDER BY run_id, position",
                                              ids)) {
    out[RunId(row[0].as<int64_t>())].push_back(row[1].as<std::string>());
  }
  return out;
}

// A run's letters in pipeline order, from its letters in any order and their positions
// ("3,0,1,2"). PostgreSQL aggregates both in one pass without sorting (an ordered aggregate
// costs about as much again as reading the rows); positions are 0..n-1, so each letter goes
// straight to its place. Positions out of that range (never written by kiln) sort instead.
std::string InOrder(std::string_view letters, std::string_view positions) {
  std::vector<int64_t> at;
  at.reserve(letters.size());
  int64_t n = 0;
  bool negative = false;
  for (char c : positions) {
    if (c == ',') {
      at.push_back(negative ? -n : n);
      n = 0;
      negative = false;
    } else if (c == '-') {
      negative = true;
    } else {
      n = n * 10 + (c - '0');
    }
  }
  if (!positions.empty()) at.push_back(negative ? -n : n);
  const size_t size = std::min(letters.size(), at.size());
  std::string out(size, '\0');
  bool placed = true;
  for (size_t i = 0; i < size && placed; ++i) {
    placed = at[i] >= 0 && static_cast<size_t>(at[i]) < size && out[at[i]] == '\0';
    if (placed) out[at[i]] = letters[i];
  }
  if (placed) return out;
  std::vector<std::pair<int64_t, char>> pairs;
  for (size_t i = 0; i < size; ++i) pairs.emplace_back(at[i], letters[i]);
  std::sort(pairs.begin(), pairs.end());
  for (size_t i = 0; i < size; ++i) out[i] = pairs[i].second;
  return out;
}

}  // namespace

Result<GridPage> Database::Grid(const std::string& pipeline, std::optional<RunId> before,
                                int limit) {
  limit = std::clamp(limit, 1, kMaxGridRuns);
  const std::string what = "reading the grid of '" + pipeline + "'";
  try {
    ReadTxn txn(impl_->conn, "grid");
    // runs_by_pipeline (pipeline, id DESC) from the cursor; each run's letters and their
    // positions are aggregated from its own task_instances rows (primary key).
    const std::string sql =
        "SELECT " + RunColumns() +
        ", id, g.letters, g.positions FROM runs, "
        "LATERAL (SELECT string_agg(" +
        LetterCase() +
        ", '') AS letters, string_agg(t.position::text, ',') AS positions "
        "FROM task_instances t WHERE t.run_id = runs.id AND t.parent IS NULL) g "
        "WHERE pipeline = $1 AND id < $2 ORDER BY id DESC LIMIT " +
        std::to_string(limit + 1);
    pqxx::result rows = txn.exec_params(
        sql, pipeline, before ? Value(*before) : std::numeric_limits<int64_t>::max());
    GridPage page;
    for (const pqxx::row& row : rows) {
      if (page.runs.size() == static_cast<size_t>(limit)) {
        page.next = page.runs.back().run.id;
        break;
      }
      auto run = ReadRun(RunId(row[kRunColumns].as<int64_t>()), row);
      if (!run.ok()) return Status::Error("database: " + what + ": " + run.message());
      GridRun g;
      g.run = std::move(run).value();
      if (!row[kRunColumns + 1].is_null()) {
        const pqxx::field letters = row[kRunColumns + 1], positions = row[kRunColumns + 2];
        g.states =
            InOrder({letters.c_str(), letters.size()}, {positions.c_str(), positions.size()});
      }
      page.runs.push_back(std::move(g));
    }
    // The task ids: read once per version (from its newest run on the page), and again only for
    // a run whose number of tasks differs from its version's.
    std::map<std::string, RunId> sample;
    for (const GridRun& g : page.runs) sample.try_emplace(g.run.version_hash, g.run.id);
    std::set<RunId> wanted;
    for (const auto& [version, id] : sample) wanted.insert(id);
    auto ids = TaskIds(txn, wanted);
    std::map<RunId, std::shared_ptr<const std::vector<std::string>>> shared;
    for (auto& [id, list] : ids) {
      shared[id] = std::make_shared<const std::vector<std::string>>(std::move(list));
    }
    std::set<RunId> odd;
    for (GridRun& g : page.runs) {
      auto list = shared[sample[g.run.version_hash]];
      if (list && list->size() == g.states.size()) {
        g.task_ids = list;
      } else {
        odd.insert(g.run.id);
      }
    }
    if (!odd.empty()) {
      auto more = TaskIds(txn, odd);
      for (GridRun& g : page.runs) {
        if (!odd.count(g.run.id)) continue;
        g.task_ids = std::make_shared<const std::vector<std::string>>(std::move(more[g.run.id]));
      }
    }
    txn.commit();
    return page;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<std::map<std::string, std::vector<std::pair<RunId, dag::RunState>>>> Database::RecentRuns(
    int per_pipeline) {
  per_pipeline = std::clamp(per_pipeline, 1, 100);
  try {
    pqxx::nontransaction txn(impl_->conn, "recent_runs");
    // A skip scan of runs_by_pipeline (pipeline, id DESC) finds each pipeline with one index
    // probe, whatever the history; then its newest runs, from the same index.
    pqxx::result rows = txn.exec_params(R"sql(
WITH RECURSIVE names AS (
  (SELECT pipeline FROM runs ORDER BY pipeline, id DESC LIMIT 1)
  UNION ALL
  SELECT next.pipeline FROM names, LATERAL (
    SELECT pipeline FROM runs WHERE runs.pipeline > names.pipeline
    ORDER BY pipeline, id DESC LIMIT 1) AS next)
SELECT names.pipeline, r.id, r.state FROM names, LATERAL (
  SELECT id, state FROM runs WHERE runs.pipeline = names.pipeline ORDER BY id DESC LIMIT $1) AS r
ORDER BY names.pipeline, r.id DESC)sql",
                                        per_pipeline);
    std::map<std::string, std::vector<std::pair<RunId, dag::RunState>>> out;
    for (const pqxx::row& row : rows) {
      auto state = dag::ParseRunState(row[2].c_str());
      if (!state) {
        return Status::Error("database: reading the recent runs: unknown run state '" +
                             std::string(row[2].c_str()) + "'");
      }
      out[row[0].as<std::string>()].emplace_back(RunId(row[1].as<int64_t>()), *state);
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading the recent runs", e);
  }
}

}  // namespace kiln::store
