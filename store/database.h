// kiln's PostgreSQL database: the schema, creating runs, reading runs back, and writing batches of
// scheduler transitions. libpqxx stays inside store/.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "common/time.h"
#include "dag/spec.h"
#include "scheduler/records.h"
#include "scheduler/state_store.h"

namespace kiln::store {

struct DatabaseImpl;  // the libpqxx side, store/pq_internal.h

// `url` with its password replaced by "***", for messages and logs. Handles the URI form
// ("postgresql://user:secret@host/db?password=secret") and the keyword form
// ("host=h password='se cret' dbname=kiln"). Text that is neither is returned unchanged.
std::string RedactUrl(std::string_view url);

// A run to create with all its task rows.
struct NewRun {
  std::string pipeline;
  std::string version_hash;  // the pipeline file's content hash
  std::string source;        // the pipeline file's text, kept once per (pipeline, hash)
  std::string trigger;       // "manual" | "schedule" | "cli"
  Instant logical_date{};
  std::optional<Instant> data_interval_start;
  std::optional<Instant> data_interval_end;
  // Stored as jsonb with their types: [{"name": .., "type": "integer", "value": ..}, ..].
  std::vector<std::pair<std::string, dag::ParamValue>> params;
  // A client's key: a second CreateRun with the same (pipeline, key) returns the first run.
  std::optional<std::string> idempotency_key;
  std::string created_by;
  std::string note;
  struct Task {
    std::string id;
    std::string pool;
    int priority = 0;
  };
  std::vector<Task> tasks;  // in pipeline order; GetRun returns them in this order
};

struct CreatedRun {
  RunId id{};
  bool existing = false;  // the run already existed (same idempotency key or scheduled date)
};

using scheduler::AttemptRecord;
using scheduler::EventFilter;
using scheduler::EventRecord;
using scheduler::RunFilter;
using scheduler::RunPage;
using scheduler::RunRecord;
using scheduler::TaskInstanceRecord;

// A transition that CommitBatches did not apply because the row had moved on (fencing).
struct FencedUpdate {
  RunId run{};
  std::string task_id;  // empty for a run update
  int attempt = 0;
  std::string wanted;                      // the state the update asked for
  std::optional<std::string> found_state;  // nullopt: no such row
  std::optional<int> found_attempt;
  std::string Describe() const;  // one line for the log
};

// One connection to kiln's database. Every method blocks on the network and returns errors as
// values (a libpqxx exception never escapes); messages name the operation first, e.g.
// "database: creating run of 'train': ...".
//
// Thread safety: none. A Database is one connection; use one per thread (or hand it over with a
// mutex). While the connection is lost calls fail with ErrorCode::kUnavailable; the caller may
// Connect() a new one.
class Database {
 public:
  // Opens a connection. `url` is a libpq URI or keyword string. An unreachable or refusing
  // server gives one line naming the redacted URL (ErrorCode::kUnavailable), e.g.
  // "postgresql://kiln:***@db:5432/kiln: connection refused ...". Never throws.
  static Result<std::unique_ptr<Database>> Connect(const std::string& url);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Applies the migrations this database lacks (store/migrations.cc) in one transaction under an
  // advisory lock, so that daemons starting together migrate once. A no-op when up to date. Fails
  // when the database was migrated by a newer kiln.
  Status Migrate();

  // Prepares every statement on the server now (otherwise each is prepared at its first use), so
  // that a schema that does not match shows at start. Needs the migrated schema.
  Status PrepareStatements();

  // One transaction: records the pipeline version, inserts the run (queued), its task rows
  // (pending, attempt 0) and a 'run_created' event. When the (pipeline, idempotency key) exists,
  // or a scheduled run for (pipeline, logical date) exists, returns that run with existing = true
  // and writes nothing.
  Result<CreatedRun> CreateRun(const NewRun& run);

  // A run with its task instances. ErrorCode::kNotFound when there is no such run.
  Result<RunRecord> GetRun(RunId id);
  // Every event of the run, oldest first.
  Result<std::vector<EventRecord>> ListEvents(RunId id);
  // Every attempt of one task, first attempt first.
  Result<std::vector<AttemptRecord>> ListAttempts(RunId id, std::string_view task_id);

  // Writes `batches` in order in ONE transaction with the fencing rules of scheduler/state_store.h:
  // every update also appends an event ('task_state' / 'run_state'); an update the rules refuse
  // changes nothing but appends a 'fenced' event and is returned. Within a batch, run updates to
  // a non-terminal state come first, then the task updates in order, then run updates to a
  // terminal state (a run starts before its tasks and ends after them). On error nothing is
  // written.
  // `actor` is recorded in events and is the default lease owner; leases expire `lease` after
  // the attempt starts.
  Result<std::vector<FencedUpdate>> CommitBatches(std::span<const scheduler::Batch* const> batches,
                                                  std::string_view actor, Duration lease);

  const std::string& redacted_url() const;

 private:
  explicit Database(std::unique_ptr<DatabaseImpl> impl);
  std::unique_ptr<DatabaseImpl> impl_;
};

}  // namespace kiln::store
