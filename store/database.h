// kiln's PostgreSQL database: the schema, creating runs, reading runs and events back, writing
// batches of scheduler transitions, and the operator's changes of the HTTP API (pause, retry,
// mark, cancel). libpqxx stays inside store/.
//
// Every transaction that appends events makes their ids visible in id order and notifies the
// channel 'kiln_events' when it commits (EventListener, store/event_listener.h).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
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
  std::optional<RunId> triggered_by;  // a completion trigger: the run whose success started it
  std::optional<int64_t> backfill;    // set by CreateBackfill
  // The daemon that will drive the run (runs.lease_owner); empty: whichever claims it first.
  std::optional<std::string> lease_owner;
  // A run asked for by a task of another run (a drift trigger). Unless the idempotency key
  // matches, no run is created when one of this pipeline with this trigger was created less than
  // `cooldown` ago (CreatedRun::cooled); either way the asking run gets an event naming its task
  // ("drift_triggered" with the run, or "drift_trigger_skipped" with the recent one), in the same
  // transaction: a crash leaves the ask answered or not, never half.
  struct Ask {
    RunId run{};
    std::string task;
    Duration cooldown{0};
  };
  std::optional<Ask> asked_by;
  struct Task {
    std::string id;
    std::string pool;
    int priority = 0;
  };
  std::vector<Task> tasks;  // in pipeline order; GetRun returns them in this order
};

// A drift task's success whose ask has no answer yet (no drift_triggered,
// drift_trigger_skipped or drift_trigger_failed event of its task on its run).
struct PendingAsk {
  RunId run{};
  std::string pipeline;  // the asking run's
  std::string task_id;
  std::string results;  // the attempt's results (with the report)
};

// A version a passed gate registers (Database::RegisterModelVersion).
struct NewModelVersion {
  std::string model;
  std::string sha256;  // of the artifact, already kept by the daemon under its data folder
  int64_t bytes = 0;
  std::string metrics;   // JSON object of numbers
  std::string decision;  // the gate's report
  RunId run{};           // the pipeline, its version and the params are read from the run
  std::string task_id;
};

struct Registered {
  int version = 0;
  bool champion = false;  // it became (or, existing, is) the champion
  bool existing = false;  // this gate task of this run registered it before
};

struct CreatedRun {
  RunId id{};
  bool existing = false;  // the run already existed (same idempotency key or scheduled date)
  // NewRun::asked_by: none was created, `id` is the recent run within the cooldown.
  bool cooled = false;
};

// A scheduled pipeline's bookkeeping, as FireSchedule sees it.
struct ScheduleState {
  std::optional<Instant> cursor;  // the latest fire dealt with (run created or skipped)
  int64_t fires_skipped = 0;      // every fire skipped so far (catch-up and overlap)
  std::optional<bool> paused;     // set through the API; nullopt = the file's `paused`
  std::vector<RunId> active;      // queued and running runs, oldest first (backfills aside)
};

// What one check of a schedule decided (scheduler/fire_plan.h), given its ScheduleState.
struct FireDecision {
  std::vector<NewRun> runs;                  // scheduled runs to create, oldest first
  std::optional<Instant> cursor;             // the new cursor; nullopt = unchanged
  int64_t skipped = 0;                       // fires skipped by this check
  std::vector<std::string> skipped_details;  // one 'fire_skipped' event each (JSON objects)
};

struct NewBackfill {
  std::string pipeline;
  Instant from{};
  Instant to{};
  int max_active_runs = 1;
  std::string created_by;
};

struct FireResult {
  ScheduleState before;
  std::vector<CreatedRun> runs;  // one per FireDecision::runs, in order
};

using scheduler::AttemptRecord;
using scheduler::EventFilter;
using scheduler::EventRecord;
using scheduler::GridPage;
using scheduler::GridRun;
using scheduler::RunFilter;
using scheduler::RunPage;
using scheduler::RunRecord;
using scheduler::TaskInstanceRecord;

// An update that CommitBatches did not apply: fenced (the row had moved on, or the run is driven
// by another daemon) or rejected (the database refused its values; refusal.message says why).
struct RefusedUpdate {
  size_t batch = 0;            // which of the batches
  scheduler::Refusal refusal;  // which update of it, and why
  RunId run{};
  std::string task_id;  // empty for a run update
  int attempt = 0;
  std::string wanted;                      // the state the update asked for
  std::optional<std::string> found_state;  // nullopt: no such row
  std::optional<int> found_attempt;
  std::optional<std::string> found_owner;  // the daemon driving the run
  std::string committer;                   // the daemon that committed
  std::string Describe() const;            // one line for the log
};

// What Database::RenewLease found.
struct LeaseRenewal {
  int64_t term = 0;  // grows when another process took over what the lease held
  // Daemons only: its active runs with a cancel requested (Database::RequestCancel), and why.
  std::vector<std::pair<RunId, std::string>> cancels;
};

// An attempt that may still be running, as the rows of its run have it.
// Where a notification goes: a [[notify]] webhook (a template, rendered when sent) and its body
// format (json | slack).
struct NotificationHook {
  std::string webhook;
  std::string format;
};
struct SlaScan {
  std::vector<RunId> past;      // active, past logical date + sla, not marked yet
  std::optional<Instant> next;  // the earliest logical date + sla still to come
};
// A delivery claimed for sending (Database::ClaimNotifications).
struct DueNotification {
  int64_t id = 0;
  RunId run{};
  std::string pipeline;
  std::string event;
  std::string subject;
  std::string webhook;
  std::string format;
  int tries = 0;  // counting this one
  // {"id", "state", "logical_date", "params", "failed_tasks": [{"task", "state", "exit_code"}]}
  std::string run_json;
};

struct OpenAttempt {
  std::string task_id;
  int attempt = 0;
  std::string supervisor;         // the lease owner recorded with its start
  bool supervisor_alive = false;  // its supervisor's lease has not expired
  // Its end as the supervisor recorded it, not yet decided by the run's owner.
  std::optional<scheduler::AttemptOutcome> outcome;
};

// A run some daemon drives, with what resuming it needs.
// A version of a pipeline as a daemon loaded it from its folder (pipeline_versions).
struct LoadedVersion {
  std::string pipeline;
  std::string hash;
  std::string source;
  std::string file;
};
struct LastLoaded {
  std::string pipeline;
  std::string hash;
  std::string source;
  Instant loaded_at{};
};

struct ActiveRun {
  RunRecord run;      // with its tasks (round_base, retry_at)
  std::string owner;  // the daemon driving it (runs.lease_owner), empty for none
  std::vector<OpenAttempt> open;
  std::optional<std::string> cancel_reason;  // a cancel was requested
};

// The leader lease a schedule fire or a takeover is fenced by: it commits only while `holder`
// holds the leader lease (table `leader`) in `term` and that lease has not expired.
struct LeaderFence {
  std::string holder;
  int64_t term = 0;
};

// The leader lease as the database has it (Database::Leader).
struct LeaderState {
  std::string holder;
  int64_t term = 0;
  Instant since{};       // when this term began
  Instant expires_at{};  // on the database's clock
  bool live = false;     // expires_at is still ahead of the database's clock
};

// What TakeOverRuns did.
struct Takeover {
  std::vector<RunId> taken;      // now driven by the caller
  std::vector<RunId> cancelled;  // `kiln run` runs whose process is gone: ended cancelled
};

// What a supervisor must stop (Database::RenewSupervisor).
struct StopOrder {
  scheduler::AttemptKey key;
  // "cancel" (its run is being cancelled) | "superseded" (not running, or not under this
  // supervisor) | "stop" (the run's owner asked for it to stop: attempts.stop_requested)
  std::string cause;
};

// Mapped tasks a retry reopens or makes again (Database::PrepareRetry).
struct Reopen {
  std::vector<std::string> running;  // back to running with their instances
  std::vector<std::string> drop;     // their instances deleted: they expand again
};

// An attempt's end recorded by its supervisor.
struct RecordedOutcome {
  scheduler::AttemptKey key;
  scheduler::AttemptOutcome outcome;
};

// ---- remote workers (Database::Dispatch and the rest, store/database_workers.cc) ----

// The lease owner of an attempt handed to workers until a worker's supervisor claims it, and of
// one taken back before any did.
inline constexpr std::string_view kDispatchedOwner = "(dispatched)";
inline constexpr std::string_view kWithdrawnOwner = "(withdrawn)";

// An attempt whose start is committed, for a worker of its pool to run.
struct Dispatch {
  scheduler::AttemptKey key;
  std::string pool;
  int priority = 0;
  int slots = 1;       // of its pool, while it runs
  std::string launch;  // bytes: the supervisor protocol's start body (executor/wire.h)
};

// An attempt a worker claimed (Database::Claim).
struct Claimed {
  scheduler::AttemptKey key;
  std::string pool;
  int slots = 1;
  std::string launch;
};

// Bytes of a worker's attempt's log, at `offset`.
struct ShippedLog {
  scheduler::AttemptKey key;
  uint64_t offset = 0;
  std::string data;
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
  // Opens a connection. `url` is a libpq URI or keyword string; unless it says otherwise, a
  // server that does not answer within 5 s (connect_timeout) fails the attempt. An unreachable or
  // refusing server gives one line naming the redacted URL (ErrorCode::kUnavailable), e.g.
  // "postgresql://kiln:***@db:5432/kiln: connection refused ...". Never throws.
  static Result<std::unique_ptr<Database>> Connect(const std::string& url);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // The connection's socket, for a watchdog on another thread: shutdown() of it makes a call
  // that waits on a server that stopped answering fail as a lost connection (kUnavailable).
  // Only shutdown(), never close(): the connection still owns it.
  int Socket() const;
  // Bounds every later statement of this connection on the server's side (SET
  // statement_timeout); a statement past it fails with kInternal.
  Status SetStatementTimeout(std::chrono::milliseconds timeout);

  // Applies the migrations this database lacks (store/migrations.cc) in one transaction under an
  // advisory lock, so that daemons starting together migrate once. A no-op when up to date. Fails
  // when the database was migrated by a newer kiln.
  Status Migrate();

  // Prepares every statement on the server now, on the connection that commits batches (made
  // now if it is not yet), all in one round trip, so that a schema that does not match shows at
  // start. On this connection each is prepared at its first use. Needs the migrated schema.
  Status PrepareStatements();

  // One transaction: records the pipeline version, inserts the run (queued), its task rows
  // (pending, attempt 0) and a 'run_created' event. When the (pipeline, idempotency key) exists,
  // or a scheduled run for (pipeline, logical date) exists, returns that run with existing = true
  // and writes nothing. Safe under concurrent calls with the same key or date (also from other
  // connections and daemons): exactly one run is created, every other call returns it.
  // ErrorCode::kConflict "idempotency key 'K' was already used for run N with other params"
  // when the key's run has other params (compared by name, whatever their order).
  Result<CreatedRun> CreateRun(const NewRun& run);
  // CreateRun for several runs in ONE transaction (one commit for all: group commit of
  // triggers). Each run gets its own result (a conflict is per run and does not abort the
  // others); a database error fails the whole call and writes nothing.
  Result<std::vector<Result<CreatedRun>>> CreateRuns(std::span<const NewRun* const> runs);

  // One transaction: the backfill row, its runs (as CreateRun, with backfill set; none may exist
  // already) and a 'backfill_created' event. Returns the new backfill's id and the event's id.
  Result<std::pair<int64_t, int64_t>> CreateBackfill(const NewBackfill& backfill,
                                                     std::span<const NewRun> runs);
  // The ids of a backfill's runs, oldest first.
  Result<std::vector<RunId>> BackfillRuns(int64_t id);
  // A backfill with its progress. kNotFound "backfill N not found".
  Result<scheduler::BackfillRecord> GetBackfill(int64_t id);
  // The backfills of `pipeline`, newest first, at most `limit` (clamped to 1..100).
  Result<std::vector<scheduler::BackfillRecord>> ListBackfills(const std::string& pipeline,
                                                               int limit);
  // Records that the backfill is cancelled (with a 'backfill_cancelled' event naming `actor`)
  // and returns its runs that have not ended, oldest first; the caller cancels them. kNotFound;
  // kConflict "backfill N has already ended (success)" when every run has ended.
  Result<std::vector<RunId>> CancelBackfill(int64_t id, std::string_view actor);

  // One check of `pipeline`'s schedule, in one transaction that locks the pipeline's row (made
  // when missing): reads its ScheduleState, calls `decide` once with it (inside the transaction:
  // keep it short and pure), creates the decided runs as CreateRun does (a scheduled run whose
  // (pipeline, logical date) exists is returned with existing = true, not created again), moves
  // the cursor and adds to the skipped count, with a 'fire_skipped' event (no run) per detail.
  // Two daemons checking one pipeline take turns on the row: the second sees the cursor the
  // first moved. Nothing is written when the decision is empty.
  // `version_hash` and `source` are the pipeline version the decided runs use (recorded first).
  // With `fence`, nothing is written unless the fence holds when the pipeline's row is locked:
  // kConflict "... is not the leader ...".
  Result<FireResult> FireSchedule(const std::string& pipeline, const std::string& version_hash,
                                  const std::string& source,
                                  const std::function<FireDecision(const ScheduleState&)>& decide,
                                  const std::optional<LeaderFence>& fence = std::nullopt);
  // Cursor, skipped count and pause state of every pipeline that has a row (`active` empty).
  Result<std::map<std::string, ScheduleState>> ScheduleStates();

  // Claims a queued run for the daemon `owner` (runs.lease_owner): true when the run is queued
  // and unclaimed or already `owner`'s. Several daemons on one database thus never start the
  // same run (a retry clears the claim). Runs are not leased yet: a claim has no expiry.
  Result<bool> ClaimRun(RunId run, const std::string& owner);

  // A run with its task instances. ErrorCode::kNotFound "run N not found".
  Result<RunRecord> GetRun(RunId id);
  // Runs matching `filter`, newest (highest id) first, without their tasks. The limit is clamped
  // to 1..100; `next` is set only when more matching runs exist (pass it as filter.before).
  Result<RunPage> ListRuns(const RunFilter& filter);
  // Runs of `pipeline` in state queued, oldest first, with params and tasks: those that waited
  // while the pipeline was paused.
  Result<std::vector<RunRecord>> QueuedRuns(const std::string& pipeline);
  // The newest `per_pipeline` runs (1..100) of every pipeline that has runs, newest first, with
  // their states.
  Result<std::map<std::string, std::vector<std::pair<RunId, dag::RunState>>>> RecentRuns(
      int per_pipeline);
  // A page of the pipeline's grid: its newest `limit` runs (1..100) older than `before`, each
  // with its tasks' states (store/database_grid.cc).
  Result<GridPage> Grid(const std::string& pipeline, std::optional<RunId> before, int limit);
  // Every attempt of every task of the run, by task then attempt; kNotFound for an unknown run.
  Result<std::vector<AttemptRecord>> RunAttempts(RunId id);

  // Every event of the run, oldest first.
  Result<std::vector<EventRecord>> ListEvents(RunId id);
  // Events with id > filter.after of the filter's run and/or pipeline, oldest first, at most
  // filter.limit (clamped to 1..10000). Event ids become visible in id order (a transaction that
  // commits later never adds an id below one already visible), so a reader that resumes after
  // the last id it saw misses nothing and sees nothing twice.
  Result<std::vector<EventRecord>> ListEvents(const EventFilter& filter);
  // The highest event id so far, 0 when there are none. Every event committed later has a
  // higher id: a stream that starts "with new events" starts after it.
  Result<int64_t> LastEventId();

  // Every attempt of one task, first attempt first.
  Result<std::vector<AttemptRecord>> ListAttempts(RunId id, std::string_view task_id);
  // One attempt. ErrorCode::kNotFound "run N task 'T' attempt K not found".
  Result<AttemptRecord> GetAttempt(RunId id, std::string_view task_id, int attempt);

  // The metrics of a pipeline's successful attempts (attempts.results), a page of its newest
  // runs that have any (1..100 runs), optionally of one task only.
  Result<scheduler::MetricsPage> PipelineMetrics(const std::string& pipeline,
                                                 const std::optional<std::string>& task,
                                                 std::optional<RunId> before, int limit);
  // Which successful attempts wrote a file and what they read, transitively (artifacts). A path
  // is looked up in what attempts wrote, then in what they read; ErrorCode::kNotFound when no
  // attempt recorded it.
  Result<scheduler::LineageFile> Lineage(const scheduler::LineageQuery& query);
  // The result cache: the newest successful attempts (at most 5) with cache key `key`, as a
  // JSON array of {"run", "task", "attempt", "results"}; forgetting every cached result of a
  // pipeline (or of one of its tasks), with a 'cache_invalidated' event: how many attempts.
  // kNotFound for a pipeline that is neither known nor has runs.
  Result<std::string> CacheCandidates(const std::string& key);
  Result<int64_t> InvalidateCache(const std::string& pipeline,
                                  const std::optional<std::string>& task, std::string_view actor);
  // ---- notifications (database_notify.cc) ----
  // Queues a delivery of `event` about `run` to each hook, once per (run, event, subject,
  // webhook): an existing one is left alone. Returns how many were queued.
  Result<int> QueueNotifications(RunId run, std::string_view event, std::string_view subject,
                                 const std::vector<NotificationHook>& hooks);
  // The active runs of `pipeline` past their SLA and not yet marked, and when the next one not
  // yet past will be. The SLA counts from the logical date, or from when the run was created if
  // that is later (a backfill or catch-up run of an old date is not late at birth).
  Result<SlaScan> ScanSla(const std::string& pipeline, Duration sla);
  // Marks the run as having missed its SLA, once: an 'sla_missed' event and its notifications,
  // in one transaction with the run locked. False when the run ended or was marked meanwhile.
  Result<bool> MarkSlaMissed(RunId run, Duration sla, const std::vector<NotificationHook>& hooks);
  // Takes up to `limit` due deliveries (oldest first, SKIP LOCKED), moving each `lease` ahead so
  // that no other daemon takes it while it is being sent; each with its run as JSON.
  Result<std::vector<DueNotification>> ClaimNotifications(Duration lease, int limit);
  // Records a try's outcome: delivered, to be tried again at `retry_at`, or given up (neither);
  // with a 'notification' event of the run carrying `detail_json`. The row changes only if this
  // try is still its latest claim (its lease did not run out and let another claim it).
  Status FinishNotification(const DueNotification& n, bool delivered,
                            std::optional<Instant> retry_at, const std::string& detail_json);
  // Runs that ended in the last `window`: (run, pipeline, state), oldest first.
  Result<std::vector<std::tuple<RunId, std::string, std::string>>> RecentlyEndedRuns(
      Duration window);
  // When the next pending delivery is due; nullopt when none is pending.
  Result<std::optional<Instant>> NextNotificationDue();

  // Tasks waiting for an operator's decision (kind = "approval"), longest waiting first, at most
  // `limit` (1..1000).
  Result<std::vector<scheduler::ApprovalRecord>> ListApprovals(int limit);
  // The decisions on the run's approval tasks, from their task_state events, oldest first.
  // kNotFound for an unknown run.
  Result<std::vector<scheduler::DecisionRecord>> ListDecisions(RunId run);
  // Drift asks of attempts that ended in the last `window` and were never answered, of runs
  // `owner` drove (its run folders are its own), oldest first.
  Result<std::vector<PendingAsk>> PendingDriftAsks(Duration window, const std::string& owner);

  // The model registry. RegisterModelVersion creates the model when new, then, holding its
  // row's lock, asks `make_champion` with the champion's metrics (nullopt: none) whether the new
  // version becomes champion, inserts the version (the next number) and records a
  // "model_registered" event on the run, in one transaction. The same (run, task) again returns
  // the version it registered.
  Result<Registered> RegisterModelVersion(
      const NewModelVersion& version,
      const std::function<bool(const std::optional<std::string>&)>& make_champion);
  Result<std::vector<scheduler::ModelRecord>> ListModels();
  // With every version, newest first. kNotFound for an unknown model.
  Result<scheduler::ModelRecord> GetModel(const std::string& name);
  // Makes `version` the champion (no change when it is). kNotFound: no such model or version.
  Result<scheduler::ModelRecord> PromoteModel(const std::string& name, int version,
                                              std::string_view actor);
  // Makes the newest version older than the champion that was ever champion the champion again.
  // kConflict when there is no champion or none before it.
  Result<scheduler::ModelRecord> RollbackModel(const std::string& name, std::string_view actor);
  // Passed gates with promote = true that ended in the last `window` and registered nothing
  // (no version, no model_registration_failed event), of runs `owner` drove, oldest first.
  Result<std::vector<PendingAsk>> PendingRegistrations(Duration window, const std::string& owner);
  // The files the tasks of a run declared as inputs (each path and content once), for a card.
  Result<std::vector<scheduler::LineageFile>> RunInputs(RunId run);

  // The pause state set through SetPaused, by pipeline name. A pipeline without an entry
  // follows its file's `paused`.
  Result<std::map<std::string, bool>> PausedPipelines();
  // Records the pause state of `pipeline` and appends a 'pipeline_paused' or 'pipeline_unpaused'
  // event (no run) naming `actor`, unless `was` (the state in effect before, the file's `paused`
  // included) says nothing changes. Does not check that the pipeline exists. Notifies
  // 'kiln_pipelines' with "pause <pipeline>" on commit, so that every daemon on the database
  // applies it.
  Status SetPaused(const std::string& pipeline, bool paused, std::string_view actor,
                   std::optional<bool> was = std::nullopt);
  // Asks every daemon on the database to read its kiln.toml and pipelines folder again
  // ('kiln_pipelines', "reload <asker>": the daemon named `asker` has read its kiln.toml already).
  Status AskReload(const std::string& asker);

  // Appends one event of `kind` about a pipeline, with no run (e.g. "pipeline_reloaded");
  // `detail_json` must be a JSON object.
  Status RecordPipelineEvent(std::string_view pipeline, std::string_view kind,
                             std::string_view actor, const std::string& detail_json);
  // Appends one event of `kind` (e.g. "cancel_requested") for the run, with its pipeline;
  // `detail_json` must be a JSON object ("{}" for none). ErrorCode::kNotFound "run N not found".
  Status RecordEvent(std::string_view kind, RunId run, std::string_view actor,
                     const std::string& detail_json);

  // The store's part of re-running tasks of an ended run, in one transaction that locks the
  // run: the named tasks go back to pending (their attempt number is kept: the next attempt is
  // attempt + 1; exit code, signal, times, retry time and lease are cleared), the run goes back
  // to queued (ended_at cleared, started_at kept), and a 'run_retried' event (from the old run
  // state to queued, detail {"tasks": [...]}) names `actor`. Returns the run with its tasks.
  // Errors: kNotFound "run N not found" / "run N has no task 'T'"; kConflict "run N is still
  // <state>; wait for it to end or cancel it" while it is queued or running; kConflict "run N has
  // nothing to re-run" when `tasks` is empty. `event_id`, when given, receives the id of the
  // 'run_retried' event: a client following the run's events from there sees only this round.
  // `reopen`: mapped tasks (for_each) that go back to running with their instances (some of
  // which are in `tasks`), and mapped tasks in `tasks` whose instance rows are deleted (with
  // their attempts) so that they expand again.
  Result<RunRecord> PrepareRetry(RunId run, std::span<const std::string> tasks,
                                 std::string_view actor, int64_t* event_id = nullptr,
                                 const Reopen& reopen = {});

  // Marks a task of an ended run by hand, in one transaction that locks the run: the task gets
  // `state` (success or failed, else kInvalidArgument) and ended_at now, with a 'task_marked'
  // event (from, to, detail {"reason": ...}, `actor`). Then `outcome` (called once, inside the
  // transaction: keep it short and pure) gives the run's state from the run with the updated
  // task; it must be an ended state. If it differs, the run takes it (ended_at kept) with a
  // 'run_state' event. Returns the updated run with its tasks. Errors: kNotFound "run N not
  // found" / "run N has no task 'T'"; kConflict "run N is still <state>; it has not ended".
  Result<RunRecord> MarkTaskInEndedRun(
      RunId run, const std::string& task, dag::TaskState state, const std::string& reason,
      std::string_view actor, const std::function<dag::RunState(const RunRecord&)>& outcome);

  // Ends a run that the database says is queued or running but that no live scheduler drives
  // (left behind by a daemon that died), in one transaction that locks the run: every task that
  // has not ended becomes cancelled (ended_at now, lease and retry time cleared; a running
  // attempt's row becomes cancelled with ended_at and `reason`), then the run becomes cancelled,
  // each with a 'task_state' / 'run_state' event (detail {"reason": reason}, `actor`). Returns
  // false and changes nothing when the run has already ended. kNotFound "run N not found".
  // Only for runs no scheduler drives: a live scheduler's later updates to them are fenced.
  Result<bool> CancelOrphanedRun(RunId run, std::string_view actor, const std::string& reason);

  // Writes `batches` in order in ONE transaction with the fencing rules of scheduler/state_store.h:
  // every update also appends an event ('task_state' / 'run_state'); an update the rules refuse
  // changes nothing but appends a 'fenced' event and is returned. Within a batch, run updates to
  // a non-terminal state come first, then the task updates in order, then run updates to a
  // terminal state (a run starts before its tasks and ends after them). Texts are stored as
  // safe UTF-8 (common/text.h). When the database refuses the values of an update (an error that
  // a retry cannot fix), the batches are written again with each update in a savepoint of its
  // own: the updates that fail are returned as rejected and the rest commits. On any other error
  // (the connection, the server) nothing is written.
  // `actor` is the committing daemon: recorded in events, the default lease owner of attempts,
  // and the only one (besides nobody) whose runs these updates may change. Leases of attempts are
  // stamped `lease` after their start.
  Result<std::vector<RefusedUpdate>> CommitBatches(std::span<const scheduler::Batch* const> batches,
                                                   std::string_view actor, Duration lease);

  // ---- leases and recovery (store/database_lease.cc) ----

  // Moves the lease of `name` (kind "daemon" or "supervisor"; `daemon`: the daemon a supervisor
  // serves) to now + `lease` on the database's clock, making the row when missing. For a daemon,
  // also returns its active runs whose cancel was requested. One statement.
  Result<LeaseRenewal> RenewLease(const std::string& name, std::string_view kind,
                                  const std::string& daemon, Duration lease);
  // A supervisor's renewal, in one statement: RenewLease, and which of `running` (the attempts it
  // runs) it must stop because the database no longer has them running or their run is being
  // cancelled.
  Result<std::pair<LeaseRenewal, std::vector<StopOrder>>> RenewSupervisor(
      const std::string& name, const std::string& daemon, Duration lease,
      std::span<const scheduler::AttemptKey> running);
  // Deletes the lease row of `name` (a process that exits holding nothing).
  Status ReleaseLease(const std::string& name);

  // The active (queued and running) runs that `owner` drives, oldest first, with their tasks and
  // open attempts: what a daemon resumes at its start and after a takeover.
  Result<std::vector<ActiveRun>> ActiveRunsOf(const std::string& owner);
  // The same for the given runs (those still active; the ones taken over by `owner`, say).
  Result<std::vector<ActiveRun>> ActiveRuns(std::span<const RunId> runs);
  // One transaction: every active run whose daemon's lease has expired (or that has no lease
  // row) becomes `owner`'s, with a 'run_taken_over' event each (detail {"from": old owner}), and
  // the term of each expired lease grows. Runs of `kiln run` (trigger "cli") are not taken: their
  // foreground process is gone, so they end cancelled like CancelOrphanedRun does. Daemons taking
  // over at the same time skip each other's rows (SKIP LOCKED). At most `limit` runs per call.
  // With `fence` (the leader's), nothing is taken unless it holds: kConflict.
  Result<Takeover> TakeOverRuns(const std::string& owner, int limit,
                                const std::optional<LeaderFence>& fence = std::nullopt);

  // The leader lease (docs/design.md, "Several daemons"), in one statement: `holder` keeps it when
  // it holds it and it has not expired, or takes it when it has expired (or was never taken),
  // moving it to now + `lease` on the database's clock. The term stays while `holder` keeps the
  // lease and grows by one each time it is taken (a lapsed holder taking it back included); each
  // term is recorded in `leader_terms`. Returns the term when `holder` leads, nullopt while
  // another holder's lease is live.
  Result<std::optional<int64_t>> Lead(const std::string& holder, Duration lease);
  // Ends `holder`'s leader lease now (a daemon that stops) and tells the other daemons
  // ('kiln_leader'), so that one of them takes it at once. Nothing when `holder` does not lead.
  Status ResignLead(const std::string& holder);
  // The leader lease as it stands; nullopt when no daemon ever led.
  Result<std::optional<LeaderState>> Leader();
  // Where the given open attempts stand now: as OpenAttempt, plus whether the task row still has
  // that attempt running (false: it ended or moved on; the attempt is of no interest any more).
  struct AttemptStatus {
    scheduler::AttemptKey key;
    OpenAttempt attempt;
    bool current = false;
  };
  // One per key found, in the order of `keys`.
  Result<std::vector<AttemptStatus>> AttemptStatuses(std::span<const scheduler::AttemptKey> keys);
  // A supervisor records the ends of attempts it ran (first report wins; nothing for an attempt
  // that is not running any more) and notifies 'kiln_outcomes' with the runs' ids.
  Status RecordOutcomes(const std::string& supervisor, std::span<const RecordedOutcome> outcomes);
  // Which of `keys` the database has running under `supervisor` (their start is recorded), read
  // once every session that holds the committer lock of `supervisor` (HoldCommitterLock) has
  // ended, and after any batch commit in flight has finished: what a supervisor asks about
  // starts its daemon never confirmed, once the daemon is gone. A batch the dead daemon sent and
  // the server had not begun yet is then committed or gone for good. Waits at most `wait` for
  // each lock (an error after that: a daemon still alive holds the lock).
  // For as long as this connection lives, holds the committer lock of `supervisor` (shared):
  // the connection on which a daemon commits the starts it sends that supervisor before the
  // commit, so that StartsRecorded can wait for a daemon that died to be gone from the server
  // too. Waits while a StartsRecorded of that supervisor waits (at most its `wait`).
  Status HoldCommitterLock(const std::string& supervisor);
  Result<std::set<scheduler::AttemptKey>> StartsRecorded(
      const std::string& supervisor, std::span<const scheduler::AttemptKey> keys, Duration wait);

  // ---- remote workers (store/database_workers.cc; docs/design.md, "Remote workers") ----
  // Hands attempts to workers: each attempt still running under `from` (the daemon's supervisor
  // name, recorded with its start) becomes kDispatchedOwner with its pool, priority and launch.
  // One statement; notifies 'kiln_dispatch' with the pools. Returns the keys handed out (an
  // attempt ended meanwhile is not).
  Result<std::vector<scheduler::AttemptKey>> Dispatch(const std::string& from,
                                                      std::span<const store::Dispatch> attempts);
  // Takes back an attempt no worker claimed yet (its task was cancelled or marked): true when
  // it was unclaimed (it never ran); false when a worker has it, which is then told to stop it
  // ('kiln_kills', payload "<run>/<task>/<attempt>", and stop_requested, which its supervisor's
  // next renewal returns if the notification was missed).
  Result<bool> Withdraw(const scheduler::AttemptKey& key);
  // The slots of each pool across all daemons and workers (claims count against them).
  Status SetPools(const std::string& daemon, const std::map<std::string, int>& slots);
  // One transaction: locks the rows of `pools` that have slots, sums the slots of the claimed
  // attempts of each still running, and claims dispatched attempts of those pools (highest
  // priority, then oldest first; FOR UPDATE SKIP LOCKED) whose slots fit in what the pool has
  // left and in `slots` (the worker's free slots); only attempts whose task still runs them in
  // a run not being cancelled, and only while `supervisor`'s lease is alive and the worker's row
  // is this host's (kConflict otherwise: claiming would waste the attempts). They become
  // `supervisor`'s (its lease holds them from now on) and `worker`'s; one 'claim' row each in
  // worker_history.
  Result<std::vector<Claimed>> Claim(const std::string& worker, const std::string& supervisor,
                                     std::span<const std::string> pools, int slots);
  // The attempts `supervisor` holds that run with no end recorded, with their launch: what a
  // worker must be running (a claim whose answer was lost, a start that never happened).
  Result<std::vector<Claimed>> ClaimedBy(const std::string& supervisor);
  // Records ends of attempts a worker ran (as RecordOutcomes, and their launch is dropped), with
  // an 'end' row each in worker_history, or 'refused' for an end the database does not take (the
  // attempt is no longer the worker's or no longer running). Notifies 'kiln_outcomes'. Returns
  // the refused keys.
  Result<std::vector<scheduler::AttemptKey>> RecordWorkerEnds(
      const std::string& worker, const std::string& supervisor,
      std::span<const RecordedOutcome> outcomes);
  // Moves a worker's lease forward (kind 'worker', its pools and slots) with a 'renew' row in
  // worker_history. Returns the term. kConflict while a worker of that name on another host
  // holds a lease that has not expired.
  Result<int64_t> RenewWorker(const std::string& name, std::span<const std::string> pools,
                              int slots, Duration lease);
  // Appends log bytes of attempts a worker runs (a chunk already stored is skipped), in one
  // transaction; notifies 'kiln_logs' with "<run>/<task>/<attempt>" of each.
  Status ShipLogs(std::span<const ShippedLog> chunks);
  // At most `max_bytes` of a shipped log from `offset`, and the log's size so far.
  Result<std::pair<std::string, uint64_t>> ReadShippedLog(const scheduler::AttemptKey& key,
                                                          uint64_t offset, size_t max_bytes);

  // Asks for a run's cancel (kept until the run ends, whichever daemon drives it) with a
  // 'cancel_requested' event naming `actor`, and notifies 'kiln_commands' ("<run id> <reason>").
  // Returns the run's owner (empty when none). kNotFound; kConflict "run N has already ended
  // (state)".
  Result<std::string> RequestCancel(RunId run, std::string_view actor, const std::string& reason);
  // ---- retention (store/database_retention.cc) ----

  // Up to `limit` ended runs that ended before `ended_before`, oldest end first, leaving the
  // newest `keep_per_pipeline` runs of every pipeline (whatever their age) out.
  struct RunRef {
    RunId id{};
    std::string pipeline;
  };
  Result<std::vector<RunRef>> OldRuns(Instant ended_before, int keep_per_pipeline, int limit);
  // Deletes those of `runs` that are still ended before `ended_before` (not retried meanwhile),
  // with their task rows and attempts, and backfills left without runs; runs they triggered keep
  // going without the link; each deleted run is recorded in `deleted_runs`. One transaction.
  // Returns how many runs went.
  Result<int64_t> DeleteRuns(std::span<const RunId> runs, Instant ended_before);
  // Deletes up to `limit` events older than `before`, none of an active run. Returns how many.
  Result<int64_t> DeleteEvents(Instant before, int limit);
  // Which of `runs` a retention sweep deleted (DeleteRuns records them, DeleteEvents forgets
  // them with the events of the same age).
  Result<std::set<RunId>> DeletedRuns(std::span<const RunId> runs);

  // The pipeline file text of a version (pipeline_versions). kNotFound when it is not kept.
  Result<std::string> PipelineSource(const std::string& pipeline, const std::string& hash);
  // Versions a daemon loaded from its pipelines folder, now: each becomes the last one loaded of
  // its pipeline and file. One transaction.
  Status RecordLoaded(std::span<const LoadedVersion> versions);
  // The version last loaded of `pipeline`, or, with an empty name (a file too broken to name
  // its pipeline), the last loaded from `file`. nullopt when none was.
  Result<std::optional<LastLoaded>> LastLoadedVersion(const std::string& pipeline,
                                                      const std::string& file);
  // The files were deleted (or their pipeline moved): no version is found by them any more.
  Status ForgetLoadedFiles(std::span<const std::string> files);

  // Ok when the server answers a query (for readiness probes); kUnavailable when the
  // connection is lost.
  Status Ping();

  const std::string& redacted_url() const;

 private:
  explicit Database(std::unique_ptr<DatabaseImpl> impl);
  std::unique_ptr<DatabaseImpl> impl_;
};

}  // namespace kiln::store
