// Plain records of what the store keeps: runs, task instances, attempts, events, as read back.
// Shared by store/ (which fills them), the service facade and web/ (which renders them).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/time.h"
#include "dag/spec.h"

namespace kiln::scheduler {

struct TaskInstanceRecord {
  std::string task_id;
  dag::TaskState state = dag::TaskState::kPending;
  int attempt = 0;  // the latest attempt (0 = never started)
  std::string pool;
  int priority = 0;
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::optional<Instant> started_at;  // of the latest attempt
  std::optional<Instant> ended_at;    // set when the state is terminal
  std::optional<Instant> retry_at;    // up_for_retry: the next attempt; waiting: the deadline
  std::optional<Duration> duration;   // ended_at - started_at when both are set
  std::string waiting_for;            // waiting: what for ("approval")
  int round_base = 0;  // the attempt before this round's first (a retried run starts a round)
  // An instance of a mapped task (for_each; task_id "train[3]"): its parent's id, its place in
  // the list and its item as JSON. Empty parent: a task of the pipeline.
  std::string parent;
  int map_index = 0;
  std::string item;
};

struct RunRecord {
  RunId id{};
  std::string pipeline;
  std::string version_hash;
  std::string trigger;  // manual | schedule | cli | retry ...
  Instant logical_date{};
  std::optional<Instant> data_interval_start;
  std::optional<Instant> data_interval_end;
  std::vector<std::pair<std::string, dag::ParamValue>> params;
  std::optional<RunId> triggered_by;  // the run whose success started this one
  std::optional<int64_t> backfill;    // the backfill this run belongs to
  dag::RunState state = dag::RunState::kQueued;
  std::optional<std::string> idempotency_key;
  std::string created_by;
  std::string note;
  Instant created_at{};
  std::optional<Instant> started_at;
  std::optional<Instant> ended_at;
  std::vector<TaskInstanceRecord> tasks;  // in pipeline order (empty in listings)
  // Read of one run only (GetRun): the id of the run's latest event, in the same snapshot as the
  // rest, so a follower of its events after this id misses and repeats nothing (empty: none yet).
  std::optional<int64_t> last_event;
};

struct EventRecord {
  int64_t id = 0;
  Instant at{};
  std::optional<RunId> run;            // empty for pipeline events (pause, unpause)
  std::string pipeline;                // empty only for a fenced update of an unknown run
  std::optional<std::string> task_id;  // empty for run and pipeline events
  std::optional<int> attempt;
  // run_created | run_state | task_state | fenced | cancel_requested | run_retried |
  // task_marked | pipeline_paused | pipeline_unpaused
  std::string kind;
  std::optional<std::string> from_state;
  std::optional<std::string> to_state;
  std::string actor;   // token name, "cli", or the daemon's lease owner
  std::string detail;  // a JSON object, e.g. {"reason": "exit code 3"}
};

struct AttemptRecord {
  RunId run{};
  std::string task_id;
  int attempt = 0;
  std::string state;  // running | success | failed | skipped | cancelled
  std::string log_path;
  std::string lease_owner;
  Instant started_at{};
  std::optional<Instant> ended_at;
  std::optional<int> exit_code;
  std::optional<int> signal;
  bool timed_out = false;
  std::optional<Duration> cpu;
  std::optional<int64_t> max_rss_kb;
  std::string reason;
  // A successful attempt's collected inputs, outputs and metrics (a JSON object, plugins/
  // collect.h); empty when it declared none.
  std::string results;
  // The worker that claimed it (`kiln worker`; its log is in the database); empty when it ran
  // under a daemon's own supervisor.
  std::string worker;
};

// A task waiting for an operator's decision (kind = "approval"): the operator's inbox.
struct ApprovalRecord {
  RunId run{};
  std::string pipeline;
  std::string task_id;
  Instant logical_date{};
  Instant since{};                  // when it began to wait
  std::optional<Instant> deadline;  // rejected then when nobody decides (none: no timeout)
};

// A decision on an approval task (an operator's, `kiln run --approve`'s or its timeout's), as its
// task_state event holds it.
struct DecisionRecord {
  int64_t event_id = 0;
  std::string task_id;
  Instant at{};
  std::string decision;  // approved | rejected
  std::string by;        // who: a token's name, "timeout", ...
  std::string note;
};

// Which runs to list: newest first (id descending), at most `limit`, older than `before` (the
// cursor of the previous page).
struct RunFilter {
  std::optional<std::string> pipeline;
  std::optional<dag::RunState> state;
  std::optional<Instant> created_after;   // inclusive
  std::optional<Instant> created_before;  // exclusive
  std::optional<int64_t> backfill;        // only the runs of this backfill
  std::optional<RunId> before;            // cursor: only runs with a smaller id
  int limit = 50;                         // 1..100
};

// A backfill: runs for every fire of a range, with its progress counted from them.
struct BackfillRecord {
  int64_t id = 0;
  std::string pipeline;
  Instant from{};  // fires at or after
  Instant to{};    // and at or before
  int max_active_runs = 1;
  bool cancel_requested = false;
  std::string created_by;
  Instant created_at{};
  int64_t total = 0;  // runs
  int64_t queued = 0;
  int64_t running = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  int64_t cancelled = 0;
  // In the answer to its creation only: the 'backfill_created' event, to follow the pipeline's
  // events from (0 otherwise).
  int64_t event_id = 0;
  int64_t done() const { return succeeded + failed + cancelled; }
  // running while any run has not ended; then cancelled (when asked), failed (any run not
  // successful) or success.
  std::string state() const {
    if (done() < total) return "running";
    if (cancel_requested) return "cancelled";
    return succeeded == total ? "success" : "failed";
  }
};

struct RunPage {
  std::vector<RunRecord> runs;  // without tasks
  std::optional<RunId> next;    // cursor for the next page; empty on the last page
};

// A page of a pipeline's grid: recent runs, each with the state of every one of its tasks.
struct GridRun {
  RunRecord run;  // without tasks
  // The run's tasks in pipeline order; runs of one version share one list.
  std::shared_ptr<const std::vector<std::string>> task_ids;
  std::string states;  // one dag::StateLetter per task of task_ids
};

struct GridPage {
  std::vector<GridRun> runs;  // newest first
  std::optional<RunId> next;  // cursor for the next (older) page; empty on the last page
};

// Which events to read: those with id > after, oldest first.
struct EventFilter {
  int64_t after = 0;
  std::optional<std::string> pipeline;
  std::optional<RunId> run;
  int limit = 1000;
};

// The metrics of one successful attempt (its `metrics` file, as collected).
struct MetricsPoint {
  RunId run{};
  std::string task_id;
  int attempt = 0;
  Instant logical_date{};
  std::optional<Instant> ended_at;
  std::string values;    // a JSON object of numbers
  bool skipped = false;  // a kind's "no" (a gate that did not pass), not a success
};

// A page of a pipeline's metrics: the points of its newest runs that have any, newest run first
// (a run's points by task id), runs older than the cursor.
struct MetricsPage {
  std::vector<MetricsPoint> points;
  std::optional<RunId> next;  // cursor (a run id) for the next page; empty on the last page
};

// A registered version of a model (kind = "gate" with promote = true).
struct ModelVersionRecord {
  std::string model;
  int version = 0;
  std::string sha256;  // of the artifact, kept as <data_dir>/models/<sha256>
  int64_t bytes = 0;
  std::string metrics;   // a JSON object of numbers
  std::string decision;  // the gate's report: conditions with their numbers, the champion then
  RunId run{};
  std::string task_id;
  std::string pipeline;
  std::string version_hash;  // of the pipeline
  std::vector<std::pair<std::string, dag::ParamValue>> params;
  Instant created_at{};
  bool champion = false;               // the model's champion now
  std::optional<Instant> promoted_at;  // when it last became champion
  std::string promoted_by;             // who made it champion then ("gate" or a token name)
  std::string promoted_how;            // gate | promote | rollback
};

struct ModelRecord {
  std::string name;
  std::optional<int> champion;
  int64_t versions = 0;  // in listings
  Instant created_at{};
  std::vector<ModelVersionRecord> history;  // GetModel: every version, newest first
};

// Which file's lineage: by path (the newest record of it) or by content.
struct LineageQuery {
  std::optional<std::string> path;  // absolute
  std::optional<std::string> sha256;
  int max_depth = 20;   // producers followed upstream at most this far
  int max_files = 500;  // files in the whole answer at most
};

struct LineageStep;

// A file as kiln recorded it, with the successful attempt that wrote that content (none: no
// run of kiln produced it, e.g. raw data).
struct LineageFile {
  std::string path;
  std::string sha256;
  int64_t bytes = 0;
  std::shared_ptr<const LineageStep> produced_by;
  // Its producer is not followed: the depth or the file limit was reached.
  bool truncated = false;
};

// The attempt that produced a file: which run, params, pipeline version and inputs.
struct LineageStep {
  RunId run{};
  std::string pipeline;
  std::string version_hash;
  std::string trigger;
  Instant logical_date{};
  std::vector<std::pair<std::string, dag::ParamValue>> params;
  std::string task_id;
  int attempt = 0;
  std::optional<Instant> ended_at;
  std::vector<LineageFile> inputs;  // with their own producers, transitively
};

}  // namespace kiln::scheduler
