// The facade the HTTP layer talks to. Implemented by daemon/ (daemon/service.h), which ties the
// store and the scheduler together. Every method is thread-safe: it may be called from any HTTP
// worker thread, and never touches scheduler state directly (work is posted to its thread).
//
// Errors are Status values whose code maps to HTTP: kInvalidArgument 400, kNotFound 404,
// kConflict 409, kUnavailable 503, anything else 500. Messages name the subject first.
// `actor` is the name of the token that asked; every mutating call records it in an event.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "common/time.h"
#include "dag/graph.h"
#include "scheduler/metrics.h"
#include "scheduler/records.h"

namespace kiln::scheduler {

struct TriggerRequest {
  std::string pipeline;
  std::vector<std::pair<std::string, std::string>> params;  // name, value as text
  std::optional<std::string> idempotency_key;
  std::string note;
  std::string actor;  // who asked (token name, "cli", ...)
  // Set by the daemon itself for a pipeline-completion trigger (never from a request): the run
  // whose success starts this one. The run's trigger is then "pipeline".
  std::optional<RunId> triggered_by;
  // Set by the daemon itself for a drift trigger: the trigger recorded instead ("drift"), the
  // task of `triggered_by` that asked, and the cooldown (store::NewRun::asked_by).
  std::string trigger;
  std::optional<std::string> asking_task;
  Duration cooldown{0};
};

struct TriggerResult {
  RunId id{};
  bool existing = false;  // the idempotency key matched an earlier run
  bool cooled = false;    // an asked run within the cooldown of a recent one: `id` is that one
  // The new run as created (queued, tasks pending), when the service has it at hand; empty
  // means: read it with GetRun.
  std::optional<RunRecord> run;
};

struct PipelineInfo {
  std::string name;
  std::string file;                       // the pipeline file, as loaded
  dag::PipelinePtr pipeline;              // the version in use; null when it never loaded
  std::optional<std::string> load_error;  // every diagnostic of the file, one per line
  bool paused = false;                    // by the API, else the file's `paused`
  std::optional<RunId> last_run;
  std::optional<dag::RunState> last_run_state;
  // Its newest runs, newest first (at most kRecentRuns; in listings only).
  std::vector<std::pair<RunId, dag::RunState>> recent_runs;
  // The next kNextFires fires, soonest first; empty without a schedule or while paused.
  std::vector<Instant> next_fires;
  std::optional<Instant> last_fire;  // the latest fire dealt with (run created or skipped)
  int64_t fires_skipped = 0;         // fires skipped so far: catch-up policy and overlap
};

// How many fires ahead a pipeline listing shows.
inline constexpr int kNextFires = 3;

// How many of its newest runs a pipeline listing shows.
inline constexpr int kRecentRuns = 10;

struct RetryRequest {
  RunId run{};
  // Exactly one: re-run failed, upstream_failed and cancelled tasks and everything downstream of
  // them (successes are kept) — or re-run `from_task` and everything downstream of it.
  bool failed = false;
  std::optional<std::string> from_task;
  std::string actor;
};

struct RetryResult {
  RunId id{};
  std::vector<std::string> tasks;  // the tasks that run again, in pipeline order
  int64_t event_id = 0;            // the 'run_retried' event: follow the run's events after it
};

struct MarkRequest {
  RunId run{};
  std::string task;
  dag::TaskState state = dag::TaskState::kSuccess;  // success or failed
  std::string reason;
  std::string actor;
};

// An operator's decision on an approval task that is waiting.
struct ApprovalRequest {
  RunId run{};
  std::string task;
  bool approve = true;  // false: reject
  std::string note;     // why (may be empty)
  std::string actor;
};

struct BackfillRequest {
  std::string pipeline;
  Instant from{};                      // every fire of the pipeline's schedule at or after `from`
  Instant to{};                        // and at or before `to`
  std::optional<int> max_active_runs;  // runs of the backfill active at once; default: the
                                       // pipeline's max_active_runs
  std::string actor;
};

// A byte range of an attempt's log.
struct LogChunk {
  std::string data;
  uint64_t offset = 0;    // where `data` starts
  uint64_t size = 0;      // the log's size when read
  bool finished = false;  // the attempt has ended: the log will not grow
};

// What a reload of kiln.toml did on the daemon asked (config::DiffDaemonConfig).
struct ConfigReload {
  std::string file;                         // the kiln.toml read; "" without one (defaults)
  std::vector<std::string> applied;         // keys whose new values are in effect
  std::vector<std::string> restart_needed;  // keys that changed but keep their running values
  // Keys whose new values were refused, and why (the running values stay): e.g. a pool left
  // out while tasks wait in it.
  std::vector<std::pair<std::string, std::string>> refused;
};

class Service {
 public:
  virtual ~Service() = default;

  // Pipelines by name, loaded or broken.
  virtual std::vector<PipelineInfo> ListPipelines() = 0;
  virtual Result<PipelineInfo> GetPipeline(const std::string& name) = 0;
  // kNotFound for an unknown pipeline. Unpausing starts the runs that waited while paused.
  virtual Status SetPaused(const std::string& name, bool paused, const std::string& actor) = 0;
  // Reads this daemon's kiln.toml again and applies what may change while it runs, then asks
  // every daemon on the database, this one included, to do the same and to read its pipelines
  // folder again (for changes its watch does not see: a file behind a symbolic link, a network
  // share). kConflict, with nothing applied or asked, when kiln.toml has errors (each named by
  // file:line:col); kUnavailable when the database does not answer.
  virtual Result<ConfigReload> ReloadPipelines(const std::string& actor) = 0;

  // Creates a run durably and hands it to the scheduler (a paused pipeline's run waits, queued,
  // until it is unpaused). Errors: kNotFound (no such pipeline), kInvalidArgument (params),
  // kConflict (pipeline has a load error; key reused with other params), kUnavailable (database).
  virtual Result<TriggerResult> Trigger(const TriggerRequest& request) = 0;

  virtual Result<RunPage> ListRuns(const RunFilter& filter) = 0;
  // A run with its task instances.
  virtual Result<RunRecord> GetRun(RunId id) = 0;
  // Active run: its running tasks get SIGTERM then SIGKILL, pending and queued ones end
  // cancelled; returns at once (the run ends cancelled shortly after). kConflict when it has
  // already ended.
  virtual Status CancelRun(RunId id, const std::string& actor) = 0;
  // kConflict when the run is still active or there is nothing to re-run; kNotFound for an
  // unknown task.
  virtual Result<RetryResult> RetryRun(const RetryRequest& request) = 0;
  // Sets a task's state by hand. A running attempt is stopped first; downstream tasks then
  // follow their trigger rules. On an ended run, the run's state is recomputed.
  virtual Status MarkTask(const MarkRequest& request) = 0;
  // Approves (the task succeeds) or rejects (it fails) an approval task that is waiting; who,
  // when and the note are in its task_state event. kNotFound: no such run or task; kConflict:
  // not an approval task, not waiting, or the run is driven by another daemon.
  virtual Status DecideApproval(const ApprovalRequest& request) = 0;
  // Approval tasks waiting for a decision, longest waiting first (at most 1,000).
  virtual Result<std::vector<ApprovalRecord>> ListApprovals() = 0;
  // Every decision on the run's approval tasks, oldest first (a retried run may have several
  // for one task). kNotFound for an unknown run.
  virtual Result<std::vector<DecisionRecord>> ListDecisions(RunId run) = 0;
  // Forgets the cached results of a pipeline's tasks (of `task` only, when given): their next
  // runs run them again. How many attempts were forgotten; kNotFound for an unknown pipeline.
  virtual Result<int64_t> InvalidateCache(const std::string& pipeline,
                                          const std::optional<std::string>& task,
                                          const std::string& actor) = 0;

  // Creates a run for every fire of the pipeline's schedule in [from, to], run oldest first, at
  // most max_active_runs at once, their tasks after every other run's waiting tasks (they never
  // hold back scheduled or triggered runs). Errors: kNotFound; kConflict (load error);
  // kInvalidArgument (no schedule, from after to, no fire in the range, more than 10,000).
  virtual Result<BackfillRecord> CreateBackfill(const BackfillRequest& request) = 0;
  // The pipeline's backfills, newest first (at most 100). kNotFound for an unknown pipeline.
  virtual Result<std::vector<BackfillRecord>> ListBackfills(const std::string& pipeline) = 0;
  virtual Result<BackfillRecord> GetBackfill(int64_t id) = 0;
  // Cancels the runs of the backfill that have not ended (waiting ones never start). kConflict
  // when it has already ended.
  virtual Result<BackfillRecord> CancelBackfill(int64_t id, const std::string& actor) = 0;

  // The pipeline `name` as of `version` (a content hash; none: the version in use), also one that
  // is no longer loaded while the database keeps it. kNotFound for an unknown pipeline or a
  // version that is not kept; kConflict when a kept version no longer loads.
  virtual Result<dag::PipelinePtr> PipelineVersion(const std::string& name,
                                                   const std::optional<std::string>& version) = 0;
  // A page of the pipeline's grid: its newest `limit` runs (1..100) older than `before`, with
  // every task's state. kNotFound for an unknown pipeline.
  virtual Result<GridPage> Grid(const std::string& pipeline, std::optional<RunId> before,
                                int limit) = 0;
  // Every attempt of the run's tasks (kNotFound for an unknown run).
  virtual Result<std::vector<AttemptRecord>> RunAttempts(RunId run) = 0;

  // Every attempt of a task, first attempt first (kNotFound for an unknown run or task).
  virtual Result<std::vector<AttemptRecord>> ListAttempts(RunId run, const std::string& task) = 0;

  // The metrics its successful attempts recorded, a page of its newest runs with any (kNotFound
  // for a pipeline that is neither loaded nor has runs; `limit` 1..100).
  virtual Result<MetricsPage> PipelineMetrics(const std::string& pipeline,
                                              const std::optional<std::string>& task,
                                              std::optional<RunId> before, int limit) = 0;
  // Which run, params, pipeline version and inputs made a file, transitively (kNotFound when no
  // successful attempt declared it).
  virtual Result<LineageFile> Lineage(const LineageQuery& query) = 0;

  // The model registry: models with their champion; one model with every version (kNotFound);
  // make a version the champion, or the one before the champion again (kConflict when there is
  // none); a version's card in Markdown.
  virtual Result<std::vector<ModelRecord>> ListModels() = 0;
  virtual Result<ModelRecord> GetModel(const std::string& name) = 0;
  virtual Result<ModelRecord> PromoteModel(const std::string& name, int version,
                                           const std::string& actor) = 0;
  virtual Result<ModelRecord> RollbackModel(const std::string& name, const std::string& actor) = 0;
  virtual Result<std::string> ModelCard(const std::string& name, int version) = 0;
  // At most `max_bytes` of the attempt's log from `offset`. Reads only beneath the daemon's log
  // folder, never following a symlink.
  virtual Result<LogChunk> ReadLog(RunId run, const std::string& task, int attempt, uint64_t offset,
                                   size_t max_bytes) = 0;
  // Blocks until the log may have grown past `offset` or the attempt may have ended, or until
  // `timeout`. For following a log. Returns false (at once) when the service is stopping.
  virtual bool WaitForLog(RunId run, const std::string& task, int attempt, uint64_t offset,
                          std::chrono::milliseconds timeout) = 0;

  // Events matching `filter`, oldest first.
  virtual Result<std::vector<EventRecord>> ListEvents(const EventFilter& filter) = 0;
  // The id of the newest committed event (0 when none): where a stream of only new events starts.
  virtual Result<int64_t> LastEventId() = 0;
  // The newest event id known without a query (the daemon's event hub): every event up to it is
  // committed and listed by ListEvents. It may lag LastEventId by a commit or two.
  virtual int64_t NewestEventSeen() = 0;
  // Blocks until an event with id > `after` may exist, or until `timeout`. Returns false when
  // the service is stopping (streams should end).
  virtual bool WaitForEvents(int64_t after, std::chrono::milliseconds timeout) = 0;

  // Ok when the database answers.
  virtual Status Ready() = 0;
  // The figures; kUnavailable when the scheduler did not answer in time.
  virtual Result<MetricsSnapshot> Metrics() = 0;
};

}  // namespace kiln::scheduler
