// Private to store/: the libpqxx side of Database and helpers shared by its .cc files. Nothing
// outside store/ may include this header.
#pragma once

#include <exception>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/time.h"
#include "store/database.h"
#include "store/pipeline.h"

namespace kiln::store {

// Routes server notices (e.g. "relation ... already exists, skipping") to the debug log instead
// of libpqxx's default, stderr.
class NoticeToLog final : public pqxx::errorhandler {
 public:
  explicit NoticeToLog(pqxx::connection_base& conn) : pqxx::errorhandler(conn) {}
  bool operator()(const char message[]) noexcept override;
};

struct DatabaseImpl {
  explicit DatabaseImpl(const std::string& url) : conn(url), notices(conn), url(url) {}
  // Registers a statement; libpqxx prepares it on the server at first use.
  void Prepare(const std::string& name, const std::string& sql) {
    conn.prepare(name, sql);
    statements.push_back(name);
    this->sql.emplace_back(name, sql);
  }
  pqxx::connection conn;
  NoticeToLog notices;
  // The commit path's own connection (CommitBatches), in pipeline mode: connected at the first
  // commit with the same URL and statements.
  PipelineConnection pipeline;
  std::string pipeline_setup;  // run on it first at each connect (HoldCommitterLock)
  std::string url;
  std::vector<std::pair<std::string, std::string>> sql;  // the registered statements
  std::string redacted_url;
  std::vector<std::string> statements;  // names of the registered statements
};

// A read of several statements that see one snapshot.
using ReadTxn = pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>;

// Collapses runs of whitespace (libpq messages span lines) into single spaces and trims.
std::string OneLine(std::string_view text);

// A failed connection to `url`: "<redacted url>: <one-line message without the password>",
// ErrorCode::kUnavailable.
Status ConnectError(const std::string& url, const std::exception& e);

// "database: <what>: <one-line message>". A lost connection maps to ErrorCode::kUnavailable.
Status DbError(std::string_view what, const std::exception& e);

// `url` with the timeouts every connection of kiln has (connect, unacknowledged data, keepalives)
// where the URL does not set them (store/database.cc).
std::string WithConnectTimeout(const std::string& url);

// Ok while `fence.holder` holds the leader lease in `fence.term` and it has not expired, on the
// database's clock at `txn`'s start; kConflict otherwise (store/database_leader.cc).
Status CheckLeaderFence(pqxx::transaction_base& txn, const LeaderFence& fence);

// The rows of a JSON array parameter (`param`, e.g. "$2") as a relation with `columns` (e.g.
// "run_id int8, task_id text, attempt int"), of which there are `rows`. PostgreSQL estimates 100
// rows for jsonb_to_recordset whatever the array holds, and for a handful of keys against a big
// table that estimate picks a hash join over a scan of the whole table (4.4 ms at 9,000 task rows
// instead of 0.3 ms, and growing with the history); the LIMIT gives it the real count. For
// unnamed statements (custom plans) only: a prepared one would be planned for one count.
std::string JsonRows(std::string_view param, std::string_view columns, size_t rows);

// SQL expression giving a timestamptz column as epoch milliseconds (int8).
std::string EpochMs(std::string_view column);

// A timestamptz parameter ("2026-11-29T01:51:15.250Z").
std::string TimeParam(Instant t);
std::optional<std::string> TimeParam(const std::optional<Instant>& t);

Instant InstantFromMs(int64_t ms);
// runs.params as written by CreateRun, back as values.
std::vector<std::pair<std::string, dag::ParamValue>> ParseParams(const std::string& text);
std::optional<Instant> OptInstant(const pqxx::field& ms);

template <typename T>
std::optional<T> Opt(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<T>();
}

// 'kiln_evt' as an integer: the advisory lock that makes event ids visible in id order.
inline constexpr int64_t kEventOrderLock = 0x6b696c6e5f657674;

// The class of the two-key advisory lock a daemon's committing session holds, shared, for as
// long as it lives, keyed by hashtext(<its supervisor's name>) (Database::HoldCommitterLock).
inline constexpr int32_t kCommitterLockClass = 0x6b696c6e;  // 'kiln'

// Takes the event-order lock and queues a notification on 'kiln_events' (see store/database.cc
// for why). Every transaction that inserts events calls it before its first event insert, and
// before it locks rows of runs or task_instances.
void LockEventOrder(pqxx::transaction_base& txn);

// Inserts `run` in `txn` (the version row and the event-order lock are the caller's), or finds
// the run it duplicates (CreatedRun::existing). A conflict is a value; database errors throw.
Result<CreatedRun> InsertRun(pqxx::transaction_base& txn, const NewRun& run);

// The columns of a runs row that ReadRun reads, in its order (kRunColumns of them, no id).
inline constexpr int kRunColumns = 16;
std::string RunColumns();
Result<RunRecord> ReadRun(RunId id, const pqxx::row& row);
// The columns of a task_instances row that ReadTask reads, in its order (kTaskColumns of them).
inline constexpr int kTaskColumns = 15;
std::string TaskColumns();
Result<TaskInstanceRecord> ReadTask(const pqxx::row& row);
// The run with its tasks as `txn` sees it. ErrorCode::kNotFound "run N not found"; a row that
// cannot be read gives "database: <what>: ...".
// The statement behind Database::GetRun (prepared as "kiln_get_run").
std::string GetRunStatement();
Result<RunRecord> ReadRunWithTasks(pqxx::transaction_base& txn, RunId id, std::string_view what);

// The prepared statements of store/batch_commit.cc and store/database_api.cc, registered on
// every connection.
void RegisterBatchStatements(DatabaseImpl& impl);
void RegisterApiStatements(DatabaseImpl& impl);
void RegisterLeaseStatements(DatabaseImpl& impl);
// The read of the newest event's id.
void RegisterEventStatements(DatabaseImpl& impl);

}  // namespace kiln::store
