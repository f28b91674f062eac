// Database's result cache: the earlier successes of a cache key, and invalidating them.
#include <nlohmann/json.hpp>

#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

using json = nlohmann::json;

Result<std::string> Database::CacheCandidates(const std::string& key) {
  try {
    pqxx::nontransaction txn(impl_->conn, "cache_candidates");
    json out = json::array();
    for (const pqxx::row& row : txn.exec_params(
             "SELECT run_id, task_id, attempt, results::text FROM attempts WHERE cache_key = $1 "
             "AND state = 'success' AND results IS NOT NULL ORDER BY ended_at DESC LIMIT 5",
             key)) {
      json results = json::parse(row[3].as<std::string>(), nullptr, /*allow_exceptions=*/false);
      if (!results.is_object()) continue;
      out.push_back({{"run", row[0].as<int64_t>()},
                     {"task", row[1].as<std::string>()},
                     {"attempt", row[2].as<int>()},
                     {"results", std::move(results)}});
    }
    return out.dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (const std::exception& e) {
    return DbError("reading the result cache", e);
  }
}

Result<int64_t> Database::InvalidateCache(const std::string& pipeline,
                                          const std::optional<std::string>& task,
                                          std::string_view actor) {
  try {
    pqxx::work txn(impl_->conn, "invalidate_cache");
    LockEventOrder(txn);
    pqxx::result known = txn.exec_params(
        "SELECT EXISTS (SELECT FROM pipelines WHERE name = $1) OR EXISTS (SELECT FROM runs WHERE "
        "pipeline = $1)",
        pipeline);
    if (!known[0][0].as<bool>()) {
      return Status::Error(ErrorCode::kNotFound, "pipeline '" + pipeline + "' not found");
    }
    pqxx::result changed = txn.exec_params(
        "UPDATE attempts a SET cache_key = NULL FROM runs r WHERE a.cache_key IS NOT NULL AND "
        "r.id = a.run_id AND r.pipeline = $1 AND ($2::text IS NULL OR a.task_id = $2)",
        pipeline, task);
    const int64_t count = changed.affected_rows();
    txn.exec_params(
        "INSERT INTO cache_invalidations (pipeline, task_id, at) VALUES ($1, $2, now())", pipeline,
        task);
    json detail = {{"attempts", count}};
    if (task) detail["task"] = *task;
    txn.exec_params(
        "INSERT INTO events (at, pipeline, kind, actor, detail) VALUES (now(), $1, "
        "'cache_invalidated', $2, $3::jsonb)",
        pipeline, std::string(actor), detail.dump(-1, ' ', false, json::error_handler_t::replace));
    txn.commit();
    return count;
  } catch (const std::exception& e) {
    return DbError("invalidating the result cache of '" + pipeline + "'", e);
  }
}

}  // namespace kiln::store
