// The scheduler service: owns the active runs and drives them on one Boost.Asio io_context.
// Everything here runs on that io_context's thread; no method is thread-safe — other threads
// hand work over with boost::asio::post.
//
// The shape of one turn of the loop:
//   an event arrives (run added, attempt exited, retry timer fired, commit finished, cancel,
//   mark)
//     -> the pure core decides (RunPlan::Finish / TakeReady, PoolQueue::TakeStartable)
//     -> every resulting transition is appended to the pending batch
//   after the turn: the pending batch is committed in ONE transaction (group commit); while a
//   commit is in flight the next batch accumulates. Attempts whose start is in a batch are
//   launched only after that batch is durable ("recorded before the process starts"), unless
//   the runner says a start may launch while it commits (TaskRunner::StartsBeforeCommit).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "common/time.h"
#include "dag/graph.h"
#include "dag/template.h"
#include "scheduler/clock.h"
#include "scheduler/metrics.h"
#include "scheduler/pool_queue.h"
#include "scheduler/run_plan.h"
#include "scheduler/state_store.h"
#include "scheduler/task_runner.h"

namespace boost::asio {
class io_context;
}

namespace kiln::scheduler {

// The files of an attempt to collect after it exits 0: its declared inputs, outputs and metrics
// with templates rendered, and the two folders relative and absolute paths are read from.
struct FilesToCollect {
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::string metrics;  // empty = none
  std::string report;   // a kind's report in the run folder; empty = none
  std::filesystem::path pipeline_dir;
  std::filesystem::path run_dir;
  // cache = true: the report of `kiln task cache` (<run>/.kiln/<task>/cache.json) and the store
  // its outputs are kept in by content (SchedulerOptions::cache_dir).
  std::string cache_report;
  std::filesystem::path cache_store;
};

// The program of an attempt of a task with cache = true (plugins/cache.h): its files, the
// earlier successes of its cache key the store found (a JSON array, Database::CacheCandidates)
// and its own program, run when none of them can be reused.
struct CacheLaunch {
  FilesToCollect files;
  std::string candidates;
  std::vector<std::string> argv;
};

// One look at what a wait task (kind = "wait") waits for: a file (`target` a path, relative ones
// read from `dir`) or a URL that must answer 2xx to a GET.
struct WaitProbe {
  std::string what;  // "file" | "http"
  std::string target;
  std::filesystem::path dir;
  // Whose rights a file is looked at with: the run's tasks' (switch_user false: this process's).
  // A path may come from a param: what the run's tasks could not see, the look does not either.
  Identity user;
};
struct WaitAnswer {
  bool ready = false;
  std::string seen;  // what the look found when not ready: "no such file", "HTTP 503", ...
};

struct SchedulerOptions {
  std::map<std::string, int> pools;  // slots per pool; must contain "default"
  int max_parallel_tasks = 16;       // over all pools (0 = no limit)
  std::string lease_owner;           // the supervisor recorded on each attempt it starts
  std::filesystem::path logs_dir;    // attempt logs: <logs>/<pipeline>/<run>/<task>/<attempt>.log
  std::filesystem::path runs_dir;    // run working folders: <runs>/<pipeline>/<run>
  // Environment every task starts from (e.g. PATH, HOME, LANG of the daemon); the task's declared
  // env and the KILN_* variables are added on top. Never database credentials.
  std::vector<std::pair<std::string, std::string>> base_env;
  // Who tasks run as (switch_user = false: the scheduler's own user). When set, every task also
  // gets USER and LOGNAME = its name and HOME = the run folder (its own, unlike the daemon's).
  Identity task_user;
  // With ids in it, each run's tasks take a user and group id of their own (RunIdentity).
  UidRange task_uids;
  // The program of one attempt of a task of a kind other than shell, from its kind and its keys
  // with templates rendered (plugins::Registry::Argv). Unset: such tasks fail to start.
  std::function<Result<std::vector<std::string>>(std::string_view kind, const dag::Value& options)>
      kind_argv;
  // The program that collects an attempt's files (plugins/collect.h). Unset: tasks that declare
  // inputs, outputs or metrics fail to start.
  std::function<Result<std::vector<std::string>>(const FilesToCollect& files)> collect_argv;
  // The result cache: where outputs are kept by content, and the program that reuses them
  // (`kiln task cache`). Either unset: tasks with cache = true simply run.
  std::filesystem::path cache_dir;
  std::function<Result<std::vector<std::string>>(const CacheLaunch& launch)> cache_argv;
  // The value of {{ secrets.NAME }} (config::SecretReader), read at each launch of a task whose
  // env or argv names it. Unset: such tasks fail to start.
  std::function<Result<std::string>(std::string_view name)> secret;
  // Looks once at what a wait task waits for, off the scheduler's thread (a file system or the
  // network may block); `done` may be called on any thread, exactly once. Unset: waits for
  // files and URLs fail (waits for an instant need no look).
  std::function<void(const WaitProbe& probe, std::function<void(WaitAnswer)> done)> probe;
  // Reads the items of a for_each file (config::ReadItems), off the scheduler's thread, with the
  // rights of `user` (the run's tasks', as WaitProbe::user); `done` may be called on any thread,
  // exactly once. Unset: tasks whose for_each names a file fail.
  std::function<void(const std::filesystem::path& file, const Identity& user,
                     std::function<void(Result<std::vector<dag::Value>>)> done)>
      read_items;
  // After a failed commit, the next try waits this long, doubling up to the maximum.
  Duration commit_retry_delay = std::chrono::seconds(1);
  Duration max_commit_retry_delay = std::chrono::seconds(2);
};

// How Shutdown stops.
enum class StopMode {
  kCancel,  // cancel every active run: processes stopped, every row ends in a final state
  kLeave,   // stop scheduling and leave running attempts to their supervisors, to be adopted
};

// A run that exists in the store and is handed to the scheduler.
struct RunContext {
  RunId id{};
  dag::PipelinePtr pipeline;
  std::vector<std::pair<std::string, dag::ParamValue>> params;  // every declared param, resolved
  Instant logical_date{};
  Instant data_interval_start{};
  Instant data_interval_end{};
  std::string triggered_by;  // id of the run whose success triggered this one, or empty
  bool background = false;   // a backfill run: its tasks yield to every other run's (Ticket)

  // A retry of an ended run (same id; the store has reset the chosen tasks to pending and the run
  // to queued). One state per task: kPending = run it again; a terminal state = keep it as it
  // ended (it counts as a finished upstream with that state and is never written). Empty = a
  // fresh run, every task pending. See RunPlan's resuming constructor.
  std::vector<dag::TaskState> initial_states;
  // The latest attempt number per task (0 = never started); empty = all 0. Attempt numbers
  // continue from there (the store fences a start on attempt - 1), and each re-run task gets its
  // full retry budget again: retries count from the first attempt of this round.
  std::vector<int> initial_attempts;

  // Resuming a run that was active before (a restart of the daemon, or a run taken over from a
  // daemon whose lease expired): initial_states then holds each task's state as recorded, and
  // may also hold kQueued (decided again), kRunning (its attempt initial_attempts[i] is adopted
  // from supervisors[i], TaskRunner::Adopt), kUpForRetry (the next attempt waits until
  // retry_at[i]) and kWaiting (an approval waits on, rejected at its deadline retry_at[i]).
  bool resumed = false;  // the run's row is already `running`
  // Resumed by a daemon that has just started (this process never drove the run): an attempt
  // under its own supervisor that the supervisor has no record of never reached it
  // (AdoptRequest::at_start).
  bool resumed_at_start = false;
  std::vector<std::string> supervisors;  // per task (resumed runs); empty = none
  // Per task: an end its supervisor recorded in the store that was not decided yet; it is taken
  // as the attempt's end at once (the runner is not asked). Empty = none.
  std::vector<std::optional<AttemptOutcome>> recorded;
  std::vector<std::optional<Instant>> retry_at;  // per task (resumed runs); empty = none
  // Per task, the attempt number before this round's first: retries count from there. Empty =
  // initial_attempts (a fresh round).
  std::vector<int> round_base;
  // A cancel was requested before the run was resumed: it is cancelled at once.
  std::optional<std::string> cancel_reason;
  // Instances of mapped tasks (for_each) recorded before: units after the pipeline's tasks, in
  // the order of their rows; the per-task vectors above then have one entry per task and
  // instance (initial_states is required). Empty = none.
  struct Instance {
    TaskId parent{};
    uint32_t index = 0;
    dag::Value item;
  };
  std::vector<Instance> instances;
};

// Notifications, on the io_context thread, after the transition is durable.
class Observer {
 public:
  virtual ~Observer() = default;
  // `name` is the task's id, or an instance's ("train[3]", whose `task` is its parent's).
  virtual void OnTaskState(RunId /*run*/, const dag::TaskSpec& /*task*/,
                           const std::string& /*name*/, dag::TaskState /*state*/, int /*attempt*/,
                           const std::string& /*reason*/) {}
  // A successful attempt's results (AttemptOutcome::results), once its success is committed.
  virtual void OnTaskResults(RunId /*run*/, const dag::TaskSpec& /*task*/,
                             const std::string& /*name*/, int /*attempt*/,
                             const std::string& /*results*/) {}
  virtual void OnRunFinished(RunId /*run*/, dag::RunState /*state*/) {}
  // The store fenced an update of `run`: the database has moved on from what the scheduler holds
  // (another daemon drives the run now, or an operator changed it directly). Nothing of the
  // refused update was announced or acted on (a refused start was not launched). The observer
  // decides: Release() the run, or Release() it and add it again from the database.
  virtual void OnRunFenced(RunId /*run*/) {}
};

class Scheduler {
 public:
  Scheduler(boost::asio::io_context& io, StateStore& store, TaskRunner& runner, Clock& clock,
            SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void SetObserver(Observer* observer) { observer_ = observer; }
  // Takes over a run whose rows exist (state queued; tasks pending, or as `initial_states` says
  // for a retry; or a resumed run, RunContext::resumed) and starts it. Sizes of the per-task
  // vectors other than 0 or the number of tasks are a bug (KILN_CHECKed). Ignored while stopping
  // with StopMode::kLeave.
  void AddRun(RunContext context);
  // Forgets a run without writing anything and without stopping its attempts: another daemon
  // drives it now (or it is about to be added again from the database). Its slots are freed;
  // exits of its attempts that come later are ignored (their supervisors keep them). No effect
  // on unknown runs.
  void Release(RunId run);
  // True while `run` is active here: added and its end not yet recorded.
  // Whether the run is driven here: added and not yet ended, or ended but its final state not
  // yet committed.
  bool IsActive(RunId run) const { return runs_.count(run) != 0 || finishing_.count(run) != 0; }
  // The unit of an active run named `name`: a task of its pipeline, or an instance of a mapped
  // one ("train[3]"); nullopt when the run is not active or has none such.
  std::optional<TaskId> FindUnit(RunId run, const std::string& name) const;
  // Ends a task of an active run by hand with `state` (success or failed) and `reason`:
  //   pending, queued, up_for_retry or waiting: it ends now (its queue place or retry timer is
  //   dropped)
  //     and its downstream follow their trigger rules (marking success lets them run);
  //   running: its attempt is killed, and once the process is gone the task ends with `state`
  //     and `reason` (not the outcome of the kill), even if the run is cancelled meanwhile;
  //     only then does its downstream move.
  // `done` is called on the io_context thread, never from inside MarkTask, once the mark is
  // decided (not necessarily committed), with:
  //   Ok; kInvalidArgument "mark state 'skipped' is not allowed: mark a task success or failed";
  //   kNotFound "run 7 is not active" (not here, or ended: the caller marks it in the store),
  //   "run 7 has no task #9";
  //   kConflict "task 'train' has already ended (failed); mark it once the run has ended, or
  //   retry it", "task 'train' is already being marked success; its attempt is being stopped".
  void MarkTask(RunId run, TaskId task, dag::TaskState state, std::string reason,
                std::function<void(Status)> done);
  // Decides an approval task (Execution::kApproval) that is waiting: approved = it ends success,
  // else failed, with `reason` and the fields of `detail` in its event. `done` is called on the
  // io_context thread, never from inside Decide: once the decision is durable, with Ok (or, if
  // the store refused it, kConflict "... was not recorded: ..."); at once with kNotFound "run 7
  // is not active", "run 7 has no task 'x'", or kConflict "task 'ship' is not an approval task",
  // "task 'ship' is not waiting for approval (it is pending)".
  // The task is named: the run's own pipeline version says which it is.
  void Decide(RunId run, const std::string& task, bool approved, std::string reason,
              std::vector<std::pair<std::string, std::string>> detail,
              std::function<void(Status)> done);
  // A copy of the operational figures: finish counters and histograms kept as transitions are
  // recorded, pool gauges and counts read from counters (no scan of runs or tasks).
  MetricsSnapshot Metrics() const;
  // Cancels a run: queued and pending tasks end cancelled, running attempts are killed and end
  // cancelled when their process is gone. Unknown or finished runs: no effect.
  void CancelRun(RunId run, const std::string& reason = "run cancelled");
  // Stopping the daemon, and `done` once it is safe to exit:
  //   kCancel: cancels every active run (and every run added from now on) with `reason`; done
  //     once no run is active and every transition is committed.
  //   kLeave: nothing new starts (no retries, nothing from the pool queue, no new runs) and exits
  //     that arrive are left to their supervisors (not recorded, not acknowledged); the pending
  //     batch is committed and the starts in it launched, so that every recorded start has a
  //     process; done once no commit is in flight. Attempts keep running; a later daemon adopts
  //     them from the rows.
  void Shutdown(StopMode mode, const std::string& reason, std::function<void()> done);
  // While the store fails, the daemon waits for it: the time of the first failure of the batch
  // being retried now, or nullopt when the last commit worked.
  std::optional<Instant> failing_since() const { return failing_since_; }

  size_t active_runs() const { return runs_.size(); }
  const PoolQueue& pools() const { return pools_; }
  // New pool sizes and parallel limit (kiln.toml reloaded): PoolQueue::Resize, then whatever
  // now fits starts. On the loop thread.
  Status SetPools(std::map<std::string, int> pools, int max_parallel_tasks);

 private:
  struct Run;
  // What the scheduler does with each update once its commit has answered. Kept beside the
  // pending batch, one per update, in the same order.
  struct TaskExtra {
    TaskId task{};
    bool launch = false;          // a start: launch the attempt once it is durable
    bool launched_early = false;  // ... or already, while its batch commits (StartsBeforeCommit)
    bool handed_out = false;      // ... in its batch (TaskRunner::HandOut)
    bool ack = false;            // an end reported by the runner: TaskRunner::Recorded once durable
    bool replacement = false;    // written instead of a rejected end; not replaced again
    std::function<void()> note;  // observers, once the update is accepted
    // FinishTask moves these into its update's event detail (TaskUpdate::detail).
    std::vector<std::pair<std::string, std::string>> detail;
    // Once the update's batch has committed: whether the update was applied (not refused).
    std::function<void(bool accepted)> committed;
  };
  struct RunExtra {
    std::function<void(bool accepted)> note;  // always called; accepted = not refused
  };

  void Pump(Run& run);
  void Queue(Run& run, Ticket ticket);
  // for_each (mapping.cc): a mapped task's items read (inline, or its file off the loop), its
  // expansion into instances, and max_parallel's window of instances under way.
  void StartMapping(Run& run, TaskId task);
  void OnItemsRead(RunId run_id, TaskId task, Result<std::vector<dag::Value>> items);
  void Expand(Run& run, TaskId task, std::vector<dag::Value> items);
  void OpenWindows(Run& run);
  bool TakePlace(Run& run, TaskId instance);
  void LeavePlace(Run& run, TaskId instance, dag::TaskState before);
  std::string InstancesEnded(const Run& run, TaskId parent) const;
  void StartStartable();
  void AdoptTask(Run& run, TaskId task);
  void Relaunch(RunId id, TaskId task, int attempt, const std::string& why);
  void OnAttemptExit(RunId run_id, TaskId task, int attempt, const AttemptOutcome& outcome);
  void OnRetryDue(RunId run_id, TaskId task);
  void StartRetryTimer(Run& run, TaskId task, Duration delay);
  void Wait(Run& run, TaskId task);
  void StartDeadlineTimer(Run& run, TaskId task, Instant deadline);
  void OnDeadline(RunId run_id, TaskId task);
  // kind = "wait" (waits.cc): entering the wait, (re)arming its look, a look's answer.
  void StartWaiting(Run& run, TaskId task, std::optional<Instant> deadline, bool resumed);
  void ArmWaitTimer(Run& run, TaskId task, Instant when);
  void OnWaitTimer(RunId run_id, TaskId task);
  void OnWaitAnswer(RunId run_id, TaskId task, uint64_t generation, WaitAnswer answer);
  void FinishTask(Run& run, TaskId task, dag::TaskState state, int attempt,
                  std::optional<AttemptEnd> end, const std::string& reason);
  void FinishTask(Run& run, TaskId task, dag::TaskState state, int attempt,
                  std::optional<AttemptEnd> end, const std::string& reason, TaskExtra extra);
  void RecordDecided(Run& run, const std::vector<Change>& changes, Instant now);
  void MaybeFinishRun(Run& run);
  // `values`: the run's template values instead of its own (the cache key's); `candidates`:
  // wrap the program in `kiln task cache` with these earlier successes.
  Result<LaunchRequest> BuildLaunch(const Run& run, TaskId task, int attempt,
                                    const dag::TemplateValues* values = nullptr,
                                    const std::string* candidates = nullptr) const;
  void Launch(Run& run, TaskId task, int attempt);
  // Its launch waits for a read of the result cache (so it is never launched early).
  bool LooksUpCache(const Run& run, TaskId task) const;
  void StartAttempt(RunId run_id, TaskId task, int attempt, std::optional<std::string> candidates);
  // Hands the attempt to the runner for its start's commit (TaskRunner::HandOut), filling
  // `start.handout`; false when its launch cannot be built (it is then launched after the
  // commit, which reports why).
  bool HandOut(Run& run, TaskId task, int attempt, AttemptStart& start);
  // The attempt is the runner's now: counted, and its scheduling lag observed.
  void Launched(Run& run, size_t i, int attempt);
  std::function<void(AttemptOutcome)> OnExitOf(RunId id, TaskId task, int attempt);
  // The task's cache key: its program, environment, params and declared files with what differs
  // between two runs of the same work (run id, run folder, attempt) left out; empty when it
  // cannot be rendered.
  std::string CacheKeyOf(const Run& run, TaskId task) const;
  void MaybeShutdownDone();
  void FreeSlot(Run& run, size_t i);
  std::filesystem::path LogPath(const Run& run, TaskId task, int attempt) const;

  void Record(TaskUpdate update);
  void Record(TaskUpdate update, TaskExtra extra);
  void Append(TaskUpdate update, TaskExtra extra);
  void Record(RunUpdate update);
  void Record(RunUpdate update, RunExtra extra);
  void ScheduleFlush();
  void Flush();
  void OnCommitted(CommitResult result, Batch batch, std::vector<TaskExtra> task_extras,
                   std::vector<RunExtra> run_extras);
  void OnRejected(const TaskUpdate& update, const TaskExtra& extra, const std::string& message);
  void StopUnrecorded(const TaskUpdate& update, TaskId task);
  void StartSettled(const TaskUpdate& update, TaskId task, bool recorded, bool handed_out);
  void LaunchEarly(RunId run, TaskId task, int attempt);
  // Whether `task` of `run` is the unit `update` was written for.
  bool SameUnit(const Run& run, TaskId task, const TaskUpdate& update) const;
  void Reply(std::function<void(Status)> done, Status status);

  boost::asio::io_context& io_;
  StateStore& store_;
  TaskRunner& runner_;
  Clock& clock_;
  SchedulerOptions options_;
  PoolQueue pools_;
  Observer* observer_ = nullptr;
  std::unordered_map<RunId, std::unique_ptr<Run>> runs_;
  std::unordered_set<RunId> finishing_;  // ended; final state not yet committed

  std::vector<std::pair<RunId, TaskId>> newly_queued_;  // written at flush if still queued
  Batch pending_;
  std::vector<TaskExtra> pending_task_extras_;  // one per pending_.tasks
  std::vector<RunExtra> pending_run_extras_;    // one per pending_.runs
  bool stopping_ = false;
  StopMode stop_mode_ = StopMode::kCancel;
  std::string stop_reason_;
  std::function<void()> on_stopped_;
  bool flush_posted_ = false;
  bool commit_in_flight_ = false;
  std::optional<Instant> failing_since_;
  Duration retry_delay_{0};  // the wait before the next try of a failing commit
  std::shared_ptr<bool> alive_;
  MetricsSnapshot metrics_;        // counters and histograms; gauges are filled in by Metrics()
  uint64_t running_attempts_ = 0;  // attempts whose process was started and has not exited
  uint64_t wait_generation_ = 0;   // numbers looks of wait tasks (OnWaitAnswer)
  size_t lookups_in_flight_ = 0;   // cache lookups of recorded starts not launched yet
};

}  // namespace kiln::scheduler
