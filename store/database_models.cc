// Database's model registry: versions registered by gates, the champion, promotions and
// rollbacks (migration 7).
#include <nlohmann/json.hpp>

#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

using json = nlohmann::json;
using scheduler::ModelRecord;
using scheduler::ModelVersionRecord;

constexpr const char* kVersionColumns =
    "v.model, v.version, v.sha256, v.bytes, v.metrics::text, v.decision::text, v.run_id, "
    "v.task_id, v.pipeline, v.version_hash, v.params::text, ";

std::string VersionQuery(const std::string& where) {
  return std::string("SELECT ") + kVersionColumns + EpochMs("v.created_at") +
         ", coalesce(m.champion = v.version, false), " + EpochMs("p.at") +
         ", coalesce(p.actor, ''), coalesce(p.how, '') FROM model_versions v JOIN models m ON "
         "m.name = v.model LEFT JOIN LATERAL (SELECT at, actor, how FROM model_promotions WHERE "
         "model = v.model AND version = v.version ORDER BY id DESC LIMIT 1) p ON true WHERE " +
         where + " ORDER BY v.version DESC";
}

ModelVersionRecord ReadVersion(const pqxx::row& row) {
  ModelVersionRecord v;
  v.model = row[0].as<std::string>();
  v.version = row[1].as<int>();
  v.sha256 = row[2].as<std::string>();
  v.bytes = row[3].as<int64_t>();
  v.metrics = row[4].as<std::string>();
  v.decision = row[5].as<std::string>();
  v.run = RunId(row[6].as<int64_t>());
  v.task_id = row[7].as<std::string>();
  v.pipeline = row[8].as<std::string>();
  v.version_hash = row[9].as<std::string>();
  v.params = ParseParams(row[10].as<std::string>());
  v.created_at = InstantFromMs(row[11].as<int64_t>());
  v.champion = row[12].as<bool>();
  v.promoted_at = OptInstant(row[13]);
  v.promoted_by = row[14].as<std::string>();
  v.promoted_how = row[15].as<std::string>();
  return v;
}

Status NoModel(const std::string& name) {
  return Status::Error(ErrorCode::kNotFound, "model '" + name + "' not found");
}

// The model's row, locked until the end of the transaction; its champion.
Result<std::optional<int>> LockModel(pqxx::transaction_base& txn, const std::string& name) {
  pqxx::result rows =
      txn.exec_params("SELECT champion FROM models WHERE name = $1 FOR UPDATE", name);
  if (rows.empty()) return NoModel(name);
  return rows[0][0].is_null() ? std::nullopt : std::optional<int>(rows[0][0].as<int>());
}

Result<ModelRecord> ReadModel(pqxx::transaction_base& txn, const std::string& name) {
  pqxx::result m = txn.exec_params(
      "SELECT name, champion, " + EpochMs("created_at") + " FROM models WHERE name = $1", name);
  if (m.empty()) return NoModel(name);
  ModelRecord out;
  out.name = m[0][0].as<std::string>();
  if (!m[0][1].is_null()) out.champion = m[0][1].as<int>();
  out.created_at = InstantFromMs(m[0][2].as<int64_t>());
  for (const pqxx::row& row : txn.exec_params(VersionQuery("v.model = $1"), name)) {
    out.history.push_back(ReadVersion(row));
  }
  out.versions = static_cast<int64_t>(out.history.size());
  return out;
}

}  // namespace

Result<Registered> Database::RegisterModelVersion(
    const NewModelVersion& v,
    const std::function<bool(const std::optional<std::string>&)>& make_champion) {
  const std::string what = "registering a version of model '" + v.model + "'";
  try {
    pqxx::work txn(impl_->conn, "register_model_version");
    LockEventOrder(txn);
    txn.exec_params("INSERT INTO models (name) VALUES ($1) ON CONFLICT DO NOTHING", v.model);
    auto champion = LockModel(txn, v.model);
    if (!champion.ok()) return champion.status();
    pqxx::result same = txn.exec_params(
        "SELECT version, coalesce((SELECT champion FROM models WHERE name = $1) = version, false) "
        "FROM model_versions WHERE model = $1 AND run_id = $2 AND task_id = $3",
        v.model, Value(v.run), v.task_id);
    if (!same.empty()) return Registered{same[0][0].as<int>(), same[0][1].as<bool>(), true};
    std::optional<std::string> champion_metrics;
    if (*champion) {
      pqxx::result m = txn.exec_params(
          "SELECT metrics::text FROM model_versions WHERE model = $1 AND version = $2", v.model,
          **champion);
      if (!m.empty()) champion_metrics = m[0][0].as<std::string>();
    }
    const bool becomes = make_champion(champion_metrics);
    pqxx::result inserted = txn.exec_params(
        "INSERT INTO model_versions (model, version, sha256, bytes, metrics, decision, run_id, "
        "task_id, pipeline, version_hash, params) SELECT $1, coalesce((SELECT max(version) FROM "
        "model_versions WHERE model = $1), 0) + 1, $2, $3, $4::jsonb, $5::jsonb, r.id, $7, "
        "r.pipeline, r.version_hash, r.params FROM runs r WHERE r.id = $6 RETURNING version",
        v.model, v.sha256, v.bytes, v.metrics, v.decision, Value(v.run), v.task_id);
    if (inserted.empty()) {
      return Status::Error(ErrorCode::kNotFound, what + ": run " + ToString(v.run) + " not found");
    }
    const int version = inserted[0][0].as<int>();
    if (becomes) {
      txn.exec_params("UPDATE models SET champion = $2 WHERE name = $1", v.model, version);
      txn.exec_params(
          "INSERT INTO model_promotions (model, version, how, actor) VALUES ($1, $2, 'gate', "
          "'gate')",
          v.model, version);
    }
    const json detail = {
        {"task", v.task_id}, {"model", v.model}, {"version", version}, {"champion", becomes}};
    txn.exec_prepared("kiln_record_event", Value(v.run), "model_registered", "gate", detail.dump());
    txn.commit();
    return Registered{version, becomes, false};
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<std::vector<ModelRecord>> Database::ListModels() {
  try {
    pqxx::nontransaction txn(impl_->conn, "list_models");
    std::vector<ModelRecord> out;
    for (const pqxx::row& row : txn.exec(
             "SELECT m.name, m.champion, " + EpochMs("m.created_at") +
             ", (SELECT count(*) FROM model_versions WHERE model = m.name) FROM models m ORDER BY "
             "m.name")) {
      ModelRecord m;
      m.name = row[0].as<std::string>();
      if (!row[1].is_null()) m.champion = row[1].as<int>();
      m.created_at = InstantFromMs(row[2].as<int64_t>());
      m.versions = row[3].as<int64_t>();
      out.push_back(std::move(m));
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("listing models", e);
  }
}

Result<ModelRecord> Database::GetModel(const std::string& name) {
  try {
    ReadTxn txn(impl_->conn, "get_model");
    auto model = ReadModel(txn, name);
    txn.commit();
    return model;
  } catch (const std::exception& e) {
    return DbError("reading model '" + name + "'", e);
  }
}

Result<ModelRecord> Database::PromoteModel(const std::string& name, int version,
                                           std::string_view actor) {
  const std::string what =
      "promoting version " + std::to_string(version) + " of model '" + name + "'";
  try {
    pqxx::work txn(impl_->conn, "promote_model");
    auto champion = LockModel(txn, name);
    if (!champion.ok()) return champion.status();
    if (txn.exec_params("SELECT 1 FROM model_versions WHERE model = $1 AND version = $2", name,
                        version)
            .empty()) {
      return Status::Error(ErrorCode::kNotFound,
                           "model '" + name + "' has no version " + std::to_string(version));
    }
    if (*champion != version) {
      txn.exec_params("UPDATE models SET champion = $2 WHERE name = $1", name, version);
      txn.exec_params(
          "INSERT INTO model_promotions (model, version, how, actor) VALUES ($1, $2, 'promote', "
          "$3)",
          name, version, std::string(actor));
    }
    auto model = ReadModel(txn, name);
    if (model.ok()) txn.commit();
    return model;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<ModelRecord> Database::RollbackModel(const std::string& name, std::string_view actor) {
  try {
    pqxx::work txn(impl_->conn, "rollback_model");
    auto champion = LockModel(txn, name);
    if (!champion.ok()) return champion.status();
    if (!*champion) {
      return Status::Error(ErrorCode::kConflict,
                           "model '" + name + "' has no champion to roll back from");
    }
    // The newest version older than the champion that was ever champion.
    pqxx::result previous = txn.exec_params(
        "SELECT max(version) FROM model_promotions WHERE model = $1 AND version < $2", name,
        **champion);
    if (previous[0][0].is_null()) {
      return Status::Error(ErrorCode::kConflict,
                           "model '" + name + "': version " + std::to_string(**champion) +
                               " is its first champion; there is none to roll back to");
    }
    const int version = previous[0][0].as<int>();
    txn.exec_params("UPDATE models SET champion = $2 WHERE name = $1", name, version);
    txn.exec_params(
        "INSERT INTO model_promotions (model, version, how, actor) VALUES ($1, $2, 'rollback', "
        "$3)",
        name, version, std::string(actor));
    auto model = ReadModel(txn, name);
    if (model.ok()) txn.commit();
    return model;
  } catch (const std::exception& e) {
    return DbError("rolling back model '" + name + "'", e);
  }
}

Result<std::vector<scheduler::LineageFile>> Database::RunInputs(RunId run) {
  try {
    pqxx::nontransaction txn(impl_->conn, "run_inputs");
    std::vector<scheduler::LineageFile> out;
    for (const pqxx::row& row : txn.exec_params(
             "SELECT DISTINCT path, sha256, bytes FROM artifacts WHERE run_id = $1 AND role = "
             "'input' ORDER BY path, sha256",
             Value(run))) {
      scheduler::LineageFile f;
      f.path = row[0].as<std::string>();
      f.sha256 = row[1].as<std::string>();
      f.bytes = row[2].as<int64_t>();
      out.push_back(std::move(f));
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading the inputs of run " + ToString(run), e);
  }
}

Result<std::vector<PendingAsk>> Database::PendingRegistrations(Duration window,
                                                               const std::string& owner) {
  try {
    pqxx::nontransaction txn(impl_->conn, "pending_registrations");
    // attempts_promoting: the partial index of successes whose report may promote.
    pqxx::result rows = txn.exec_params(
        "SELECT a.run_id, r.pipeline, a.task_id, a.results::text FROM attempts a JOIN runs r ON "
        "r.id = a.run_id WHERE a.results->'report' ? 'promote' AND a.state = 'success' AND "
        "a.ended_at > now() - make_interval(secs => $1::float8 / 1000) AND "
        "a.results->'report'->>'promote' = 'true' AND a.results->'report'->>'decision' = 'pass' "
        "AND r.lease_owner = $2 AND NOT EXISTS (SELECT FROM model_versions v WHERE v.run_id = "
        "a.run_id AND v.task_id = "
        "a.task_id) AND NOT EXISTS (SELECT FROM events e WHERE e.run_id = a.run_id AND "
        "e.detail->>'task' = a.task_id AND e.kind = 'model_registration_failed') ORDER BY "
        "a.ended_at",
        static_cast<int64_t>(window.count()), owner);
    std::vector<PendingAsk> out;
    for (const pqxx::row& row : rows) {
      out.push_back(PendingAsk{RunId(row[0].as<int64_t>()), row[1].as<std::string>(),
                               row[2].as<std::string>(), row[3].as<std::string>()});
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading unregistered gate promotions", e);
  }
}

}  // namespace kiln::store
