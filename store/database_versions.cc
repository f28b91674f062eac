// Database: the versions of each pipeline a daemon loaded, so that a file broken while no daemon
// watched it runs its last good version after a restart, as it would have without the restart
// (docs/design.md, "Reloading pipelines").
#include "common/text.h"
#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

// loaded_at becomes the time of the last load; a version first written by a run (kiln run, or
// a daemon before this column) gets its file.
constexpr const char* kRecordLoaded = R"sql(
INSERT INTO pipeline_versions (pipeline, content_hash, source, file) VALUES ($1, $2, $3, $4)
ON CONFLICT (pipeline, content_hash) DO UPDATE SET loaded_at = now(), file = EXCLUDED.file)sql";

}  // namespace

Status Database::RecordLoaded(std::span<const LoadedVersion> versions) {
  if (versions.empty()) return Status::Ok();
  try {
    pqxx::work txn(impl_->conn, "record_loaded");
    for (const LoadedVersion& v : versions) {
      // A path is bytes; the column is text. The same mapping on both sides finds it again.
      txn.exec_params(kRecordLoaded, v.pipeline, v.hash, v.source, SafeUtf8(v.file));
    }
    txn.commit();
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("recording the loaded pipeline versions", e);
  }
}

Status Database::ForgetLoadedFiles(std::span<const std::string> files) {
  if (files.empty()) return Status::Ok();
  try {
    pqxx::work txn(impl_->conn, "forget_loaded_files");
    for (const std::string& file : files) {
      txn.exec_params("UPDATE pipeline_versions SET file = NULL WHERE file = $1", SafeUtf8(file));
    }
    txn.commit();
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("forgetting the files of deleted pipelines", e);
  }
}

Result<std::optional<LastLoaded>> Database::LastLoadedVersion(const std::string& pipeline,
                                                              const std::string& file) {
  try {
    pqxx::nontransaction txn(impl_->conn, "last_loaded");
    const std::string sql = "SELECT pipeline, content_hash, source, " + EpochMs("loaded_at") +
                            " FROM pipeline_versions WHERE file IS NOT NULL AND " +
                            (pipeline.empty() ? "file = $1" : "pipeline = $1") +
                            " ORDER BY loaded_at DESC, content_hash LIMIT 1";
    pqxx::result rows = txn.exec_params(sql, pipeline.empty() ? SafeUtf8(file) : pipeline);
    if (rows.empty()) return std::optional<LastLoaded>();
    LastLoaded last;
    last.pipeline = rows[0][0].as<std::string>();
    last.hash = rows[0][1].as<std::string>();
    last.source = rows[0][2].as<std::string>();
    last.loaded_at = InstantFromMs(rows[0][3].as<int64_t>());
    return std::optional<LastLoaded>(std::move(last));
  } catch (const std::exception& e) {
    return DbError("reading the last loaded version of " +
                       (pipeline.empty() ? "'" + file + "'" : "pipeline '" + pipeline + "'"),
                   e);
  }
}

}  // namespace kiln::store
