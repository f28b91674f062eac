// What the scheduler needs from storage: commit a batch of transitions in one transaction.
// Implemented by store/ (PostgreSQL) and by fakes in tests.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "common/time.h"
#include "dag/spec.h"
#include "scheduler/task_runner.h"

namespace kiln::scheduler {

// An attempt begins: written before its process starts.
struct AttemptStart {
  std::string log_path;
  std::string lease_owner;
  // Handed to other machines in this same commit (TaskRunner::HandOut): written claimable.
  std::optional<Handout> handout;
};

// An attempt ended (with its measurements).
struct AttemptEnd {
  std::optional<int> exit_code;
  std::optional<int> signal;
  bool timed_out = false;
  Instant started_at{};
  Duration cpu{0};
  int64_t max_rss_kb = 0;
  std::string reason;  // human-readable, e.g. "exit code 3", "timed out after 5s"
  // The end as the executor reported it. When the run is driven by another daemon by the time
  // this end is written, the store keeps it with the attempt for that daemon to decide from.
  std::optional<AttemptOutcome> outcome;
  // A success of a task with cache = true: its cache key, kept with the attempt for later runs
  // to find (Scheduler::CacheKeyOf). Empty otherwise.
  std::string cache_key{};
};

// A mapped task (for_each) expands: its instance rows are inserted with the update that moves it
// to running, in the same transaction, as `<task>[0]`, `<task>[1]`, ... pending, at positions
// after every task and instance of the run (so their order is the order they were made in),
// with its pool and priority.
struct Expansion {
  std::string items;  // a JSON array: one item per instance, in order
};

// One task instance changes state. Writes are fenced: an update carrying `end` applies only when
// the row is `running` with this attempt; one carrying `start` only when the row's attempt is
// attempt - 1 and its state is not terminal. Other updates apply when the row is not terminal.
// Every update (run updates too) applies only while the run is driven by the committing daemon
// (runs.lease_owner): a daemon whose runs were taken over cannot change them.
struct TaskUpdate {
  RunId run{};
  std::string task_id;
  int attempt = 0;  // the attempt this update is about (0 = none yet)
  dag::TaskState state = dag::TaskState::kPending;
  Instant at{};
  std::optional<AttemptStart> start;
  std::optional<AttemptEnd> end;
  // For up_for_retry: when the next attempt starts. For waiting: the deadline (none: no
  // timeout).
  std::optional<Instant> retry_at;
  std::string reason;  // recorded in the event, e.g. "upstream 'train' failed"
  // More string fields of the event's detail, beside "reason" (an approval's decision, who
  // decided and their note).
  std::vector<std::pair<std::string, std::string>> detail{};
  std::string waiting_for{};  // for waiting: what it waits for ("approval"), kept with the row
  std::optional<Expansion> expand{};  // for running: the instances of a mapped task
};

struct RunUpdate {
  RunId run{};
  dag::RunState state = dag::RunState::kRunning;
  Instant at{};
  std::string reason;
};

// Everything produced in one turn of the event loop. Every update also appends an event row.
struct Batch {
  std::vector<TaskUpdate> tasks;
  std::vector<RunUpdate> runs;
  bool empty() const { return tasks.empty() && runs.empty(); }
};

// An update of a batch that the store did not apply, while the rest of the batch committed.
struct Refusal {
  bool run = false;  // a run update (index into Batch::runs), else a task update (Batch::tasks)
  size_t index = 0;  // position in its vector
  // Fenced: the row had moved on (another attempt, an end already recorded, the run driven by
  // another daemon). Rejected: the update itself cannot be written (the database refused its
  // values); `message` says why. A rejected update is not retried.
  bool rejected = false;
  std::string message;
};

struct CommitResult {
  // Ok: the batch committed, except the updates in `refused`. An error: nothing of the batch was
  // written.
  Status status;
  std::vector<Refusal> refused;
};

class StateStore {
 public:
  virtual ~StateStore() = default;
  // Commits `batch` in one transaction, then calls `done` on the scheduler's io_context thread
  // (never from inside Commit()). Calls are committed in the order made. A failed commit
  // changes nothing; the caller may retry with the same batch. An update that fails for a
  // reason a retry cannot fix does not fail the batch: it is refused (rejected) and the rest
  // commits.
  virtual void Commit(Batch batch, std::function<void(CommitResult)> done) = 0;
  // The newest successful attempts (at most 5) recorded with cache key `key` and not
  // invalidated, as a JSON array of {"run", "task", "attempt", "results"}; `done` may be called
  // from any thread, also from inside. A store without a cache answers with an error (the task
  // then simply runs).
  virtual void LookupCache(const std::string& /*key*/,
                           std::function<void(Result<std::string>)> done) {
    done(Status::Error(ErrorCode::kUnavailable, "this store keeps no cache"));
  }
};

}  // namespace kiln::scheduler
