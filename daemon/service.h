// The daemon's implementation of the API facade (scheduler/service.h): reads go to the database
// through a bounded connection pool, changes are made durable in the database and then handed to
// the scheduler by posting to its io_context. Thread-safe; called from the HTTP worker threads.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "config/pipeline_loader.h"
#include "daemon/env.h"
#include "daemon/fire_timer.h"
#include "daemon/lease_keeper.h"
#include "daemon/models.h"
#include "daemon/notifier.h"
#include "daemon/pipeline_watcher.h"
#include "daemon/recovery.h"
#include "scheduler/scheduler.h"
#include "scheduler/service.h"

namespace kiln::daemon {

// The pipelines folder as loaded: good pipelines and broken files, by pipeline name.
struct PipelineEntry {
  std::string file;
  dag::PipelinePtr pipeline;              // null when the file never loaded
  std::optional<std::string> load_error;  // the diagnostics, one per line
  // False when the file is too broken to name its pipeline: it is listed under its file's name.
  bool named = true;
};
// `secrets`: the names kiln.toml declares ({{ secrets.NAME }} naming another is a load error).
std::map<std::string, PipelineEntry> LoadPipelineEntries(const std::filesystem::path& dir,
                                                         const dag::SecretNames& secrets);
// At start: records the versions that loaded (pipeline_versions), and gives each file that did
// not the version last loaded of its pipeline (or from it, when it names none), by this daemon
// before it stopped or by another on the database, so that a file broken while no daemon watched
// it runs as it would have without the restart: its last good version, its errors shown. What
// the database cannot answer is logged: the files are then served as they loaded.
void KeepLastLoaded(DaemonStore& store, std::map<std::string, PipelineEntry>& entries);

// Whether the last read of kiln.toml applied whole, and when the last one that did was.
struct ConfigHealth {
  std::atomic<bool> ok{true};
  std::atomic<int64_t> loaded_at_s{0};  // seconds since the epoch
};

struct DaemonServiceOptions {
  std::filesystem::path logs_dir;
  // Who this daemon is to the other daemons on its database: stable across restarts (host and
  // data folder), recorded as the owner of the runs it drives (Database::ClaimRun).
  std::string owner;
  int catchup_cap = 100;             // config::DaemonConfig::catchup_cap
  Duration clock_offset{0};          // added to the clock schedules are read with
  std::filesystem::path runs_dir;    // run folders: <runs>/<pipeline>/<run>
  std::filesystem::path models_dir;  // registered artifacts: <models>/<sha256>
  // Whose rights a gate's artifact is read with: its run's tasks' (RunIdentity).
  Identity task_user;
  UidRange task_uids;
  // Shared with the scheduler's kind_argv (gates start with the champion's metrics).
  std::shared_ptr<ChampionCache> champions;
  // Told about run ends, retries and new runs (daemon/notifier.h); none when null.
  Notifier* notifier = nullptr;
  // Whether this daemon leads the daemons on its database (set by its lease keeper): only the
  // leader fires schedules, each fire fenced by its term. Null: it fires, unfenced (tests).
  std::shared_ptr<Leadership> leadership;
  // Reads kiln.toml again and applies what may change while the daemon runs
  // (daemon/config_reload.cc). Called before a reload is asked of every daemon (its errors refuse
  // the ask), on SIGHUP, and on a reload asked through the database by another daemon. Null:
  // nothing to read (tests).
  std::function<Result<scheduler::ConfigReload>()> reload_config;
  // How the last read of kiln.toml went, for /metrics (set by the daemon). Null: not shown.
  std::shared_ptr<const ConfigHealth> config_health;
};

// Also the scheduler's observer (run ends start waiting runs and completion triggers): register
// it with Scheduler::SetObserver.
// What a drift task's success asks for (daemon/drift_trigger.cc): a run of `pipeline`, at most
// one per `cooldown`, with a note naming the drifted columns.
struct DriftAsk {
  std::string pipeline;
  Duration cooldown{0};
  std::string note;
};
// The ask of `task` (kind drift, on_drift = "trigger") from its attempt's results; none when
// nothing drifted or the task asks for nothing.
std::optional<DriftAsk> DriftAskOf(const dag::TaskSpec& task, const std::string& results);

// What a passed gate with promote = true registers (daemon/gate_registry.cc): the artifact its
// process hashed, its metrics and decision, and its conditions to check again against the
// champion when the version is registered.
struct GateRegistration {
  std::string model;
  std::string artifact;  // absolute path, as the gate read it
  std::string sha256;
  int64_t bytes = -1;    // its size as the gate read it (-1: not said)
  std::string metrics;   // JSON object
  std::string decision;  // the gate's report
  std::vector<std::string> require;
};
std::optional<GateRegistration> RegistrationOf(const dag::TaskSpec& task,
                                               const std::string& results);

class DaemonService final : public scheduler::Service, public scheduler::Observer {
 public:
  // Runs on `env` (daemon/env.h; not owned, must outlive the service).
  DaemonService(boost::asio::io_context& io, scheduler::Scheduler& sched, DaemonEnv env,
                DaemonServiceOptions options);
  ~DaemonService() override;

  // Reads the pause state kept in the database, starts the event hub and the queued runs.
  Status Start(std::map<std::string, PipelineEntry> pipelines);
  // Starts firing schedules. The first check of each pipeline catches up on what it missed;
  // once every pipeline has had it, one line on stdout says what catching up did:
  // "kiln: schedules: 3 pipelines checked; 2 runs created, 4 fires skipped".
  void StartSchedules();
  // Watches the pipelines folder: a new, changed or deleted file takes effect at once (see
  // Reload). Errors name the folder.
  Status WatchPipelines(const std::filesystem::path& dir);
  // Pipeline files that changed since the start read the folder (before the watch began): loaded
  // again on the schedules' thread, and the folder compared with what is loaded. Nothing when
  // `changed` is empty.
  void LoadChangedSinceStart(const std::set<std::string>& changed);
  // The folder a reload rescans (ReloadHere), before it is watched: set before the first request.
  void SetPipelinesDir(const std::filesystem::path& dir);
  // Applies changed pipeline files (daemon/reload.cc): `changed` files are loaded again (or
  // dropped when gone); with `rescan`, the whole folder is compared with what is loaded. A file
  // that loads replaces its pipeline's version (running runs finish on theirs); a broken edit
  // keeps the last good version running and shows its errors (API load_error, the log, a
  // 'pipeline_load_failed' event); a deleted file's pipeline is dropped. With `same_is_quiet` (the
  // start's catch-up, which re-reads files that may not have changed), a broken file with the
  // same errors as before is not reported again.
  void Reload(const std::set<std::string>& changed, bool rescan, bool same_is_quiet = false);
  // One check of `name`'s schedule at `now` (what the fire timer calls; tests call it directly):
  // fires what is due, then starts the pipeline's waiting runs. Returns when to look again.
  std::optional<Instant> CheckSchedule(const std::string& name, Instant now) {
    return CheckPipeline(name, now);
  }
  // From now on changes are refused with 503 and streams end. Call before stopping the server.
  void StopAccepting();

  std::vector<scheduler::PipelineInfo> ListPipelines() override;
  Result<scheduler::PipelineInfo> GetPipeline(const std::string& name) override;
  Status SetPaused(const std::string& name, bool paused, const std::string& actor) override;
  Result<scheduler::ConfigReload> ReloadPipelines(const std::string& actor) override;
  Result<scheduler::TriggerResult> Trigger(const scheduler::TriggerRequest& request) override;
  Result<scheduler::RunPage> ListRuns(const scheduler::RunFilter& filter) override;
  Result<scheduler::RunRecord> GetRun(RunId id) override;
  Status CancelRun(RunId id, const std::string& actor) override;
  Result<scheduler::RetryResult> RetryRun(const scheduler::RetryRequest& request) override;
  Status MarkTask(const scheduler::MarkRequest& request) override;
  Status DecideApproval(const scheduler::ApprovalRequest& request) override;
  Result<std::vector<scheduler::ApprovalRecord>> ListApprovals() override;
  Result<std::vector<scheduler::DecisionRecord>> ListDecisions(RunId run) override;
  Result<int64_t> InvalidateCache(const std::string& pipeline,
                                  const std::optional<std::string>& task,
                                  const std::string& actor) override;
  Result<std::vector<scheduler::AttemptRecord>> ListAttempts(RunId run,
                                                             const std::string& task) override;
  Result<dag::PipelinePtr> PipelineVersion(const std::string& name,
                                           const std::optional<std::string>& version) override;
  Result<scheduler::GridPage> Grid(const std::string& pipeline, std::optional<RunId> before,
                                   int limit) override;
  Result<std::vector<scheduler::AttemptRecord>> RunAttempts(RunId run) override;
  Result<scheduler::MetricsPage> PipelineMetrics(const std::string& pipeline,
                                                 const std::optional<std::string>& task,
                                                 std::optional<RunId> before, int limit) override;
  Result<scheduler::LineageFile> Lineage(const scheduler::LineageQuery& query) override;
  Result<std::vector<scheduler::ModelRecord>> ListModels() override;
  Result<scheduler::ModelRecord> GetModel(const std::string& name) override;
  Result<scheduler::ModelRecord> PromoteModel(const std::string& name, int version,
                                              const std::string& actor) override;
  Result<scheduler::ModelRecord> RollbackModel(const std::string& name,
                                               const std::string& actor) override;
  Result<std::string> ModelCard(const std::string& name, int version) override;
  Result<scheduler::LogChunk> ReadLog(RunId run, const std::string& task, int attempt,
                                      uint64_t offset, size_t max_bytes) override;
  bool WaitForLog(RunId run, const std::string& task, int attempt, uint64_t offset,
                  std::chrono::milliseconds timeout) override;
  Result<int64_t> LastEventId() override;
  int64_t NewestEventSeen() override;
  Result<std::vector<scheduler::EventRecord>> ListEvents(
      const scheduler::EventFilter& filter) override;
  bool WaitForEvents(int64_t after, std::chrono::milliseconds timeout) override;
  Status Ready() override;
  Result<scheduler::MetricsSnapshot> Metrics() override;

  Result<scheduler::BackfillRecord> CreateBackfill(
      const scheduler::BackfillRequest& request) override;
  Result<std::vector<scheduler::BackfillRecord>> ListBackfills(const std::string& name) override;
  Result<scheduler::BackfillRecord> GetBackfill(int64_t id) override;
  Result<scheduler::BackfillRecord> CancelBackfill(int64_t id, const std::string& actor) override;

  // scheduler::Observer, on the loop thread.
  void OnRunFinished(RunId run, dag::RunState state) override;
  // A task to be retried is a notification (on = ["retry"]).
  void OnTaskState(RunId run, const dag::TaskSpec& task, const std::string& name,
                   dag::TaskState state, int attempt, const std::string& reason) override;
  // What the notifier asks, on its thread: a pipeline's notify rules and SLA, every SLA.
  std::optional<NotifyRules> NotifyRulesOf(const std::string& pipeline);
  std::map<std::string, Duration> Slas();
  // A drift task asks for a run: answered on the fire timer's thread.
  void OnTaskResults(RunId run, const dag::TaskSpec& task, const std::string& name, int attempt,
                     const std::string& results) override;
  // The store refused an update of `run`: it is read again; released when another daemon drives
  // it (or it ended), added again from its rows when it is still this daemon's.
  void OnRunFenced(RunId run) override;

  // ---- runs resumed from the database (daemon/service_recovery.cc) ----
  // At start: resumes the runs this daemon drove that were running when it stopped (their
  // attempts adopted from the supervisor, their ends recorded while it was away decided).
  // Queued runs start through Start(). Off the loop.
  Status Recover();
  // Starts the runs of `runs` that this daemon drives and does not drive yet. Off the loop.
  // `at_start`: resumed by this daemon as it starts (RunContext::resumed_at_start).
  void AdoptRuns(const std::vector<store::ActiveRun>& runs, bool at_start = false);
  // The lease keeper's hooks (daemon/lease_keeper.h), on its thread.
  void OnTaken(const store::Takeover& taken);
  void OnLapsed();
  // The leader term changed (-1: another daemon leads): a new leader checks every schedule now.
  void OnLeading(int64_t term);
  // A 'kiln_pipelines' notification (LeaseKeeperHooks::on_pipelines): "pause <name>" applies the
  // pause state another daemon (or this one) recorded; "reload" reads the folder again.
  void OnPipelinesNotified(const std::string& payload);
  // This daemon reads kiln.toml (unless `config` is false: read already) and its pipelines folder
  // again, on the thread that checks schedules; the outcome is logged. SIGHUP, and each daemon on
  // a reload asked through the database.
  void ReloadHere(const std::string& why, bool config = true);
  void OnCancelRequested(RunId run, const std::string& reason);
  // Whether the daemon can make progress: the database answers its lease renewals.
  void SetHealthy(bool healthy);

 private:
  struct Known {
    PipelineEntry entry;
    bool paused = false;
    // Since when the daemon has been firing this pipeline's schedule: fires before it were
    // missed (scheduler/fire_plan.h).
    Instant live_since{};
    // When a reload last changed the schedule or its zone: the new schedule's instants before
    // it are not due (nullopt: unchanged since the daemon started).
    std::optional<Instant> schedule_since;
  };
  // The loaded pipeline `name`, or kNotFound / kConflict (file broken).
  // Whether a file declares `name` now (loaded or broken).
  bool Declared(const std::string& name);
  Result<dag::PipelinePtr> Runnable(const std::string& name, bool* paused);
  // kNotFound when the pipeline is not loaded here, or its current version has no task `task`
  // (nor a mapped task of which it is an instance); Ok when its file has errors.
  Status CheckTaskOf(const std::string& pipeline, const std::string& task);
  scheduler::PipelineInfo Info(const std::string& name, const Known& known) const;
  Status Refuse() const;
  // Fills in next_fires, last_fire and fires_skipped from the schedules' bookkeeping.
  void AddSchedule(scheduler::PipelineInfo& info,
                   const std::map<std::string, store::ScheduleState>& states) const;
  // True once the scheduler no longer holds `run` (false after a few seconds of holding it).
  bool WaitUntilReleased(RunId run);
  // Runs `f` on the scheduler's thread and waits for its result.
  template <typename F>
  auto OnLoop(F&& f) -> decltype(f());
  // Announces that `id`, a run of `pipeline`, is about to be handed to the scheduler (before the
  // answer reveals it); from now until it ends it counts as one of the pipeline's active runs.
  // A backfill's run counts against the backfill's limit instead.
  void BeginStart(RunId id, const std::string& pipeline,
                  std::optional<int64_t> backfill = std::nullopt);
  // Hands the run to the scheduler and waits until it has taken it, unless it was cancelled
  // since BeginStart. `wait` = false only posts (before the loop runs, at start).
  void StartRun(scheduler::RunContext ctx, bool wait = true);
  // Starts the runs of `name` that wait, queued (triggered while it was paused, or left by a
  // daemon that stopped). Call with pause_mu_ held.
  Status StartQueued(const std::string& name, const dag::PipelinePtr& pipeline, bool wait);
  // The context of a run that starts from its rows (ResumeContext), on a pipeline whose tasks
  // are the run's.
  scheduler::RunContext ContextOf(const scheduler::RunRecord& run, dag::PipelinePtr pipeline);
  // Re-reads `run` and resumes or releases it (OnRunFenced), off the loop.
  void Resync(RunId run);
  // Reload of one file, with mu_ held; returns the event to record (kind, pipeline, detail).
  struct ReloadEvent {
    std::string kind, pipeline, detail;
  };
  std::optional<ReloadEvent> ApplyFile(const config::LoadResult& result,
                                       const std::map<std::string, bool>& paused, Instant now,
                                       bool same_is_quiet);
  std::optional<ReloadEvent> RemoveFile(const std::string& file);
  // Backfills (daemon/backfills.cc). Queues a backfill's waiting run (known or read).
  void QueueBackfillRun(int64_t backfill, const std::string& pipeline, int max_active_runs,
                        RunId run);
  // Starts the backfill's waiting runs, oldest first, while fewer than its limit are active.
  void StartBackfill(int64_t backfill);
  // Starts the pipelines whose trigger_on_success names `upstream`, after its run `run`
  // succeeded. On the fire timer's thread.
  void TriggerDownstream(const std::string& upstream, RunId run);
  // Creates the run a drift task asked for, unless within its cooldown. On the fire timer's
  // thread.
  void AnswerDriftAsk(RunId run, const std::string& task, const DriftAsk& ask);
  // At start: asks that a crash left without an answer (no event on the asking run).
  void AnswerPendingDriftAsks();
  // Keeps a passed gate's artifact and registers the version (champion when its conditions hold
  // against the champion now). On the fire timer's thread.
  void RegisterModel(RunId run, const std::string& task, const GateRegistration& reg);
  // At start: passed gates whose version a crash left unregistered.
  void RegisterPendingModels();
  // The run no longer counts as active here; returns its pipeline ("" when unknown).
  std::string Forget(RunId id);
  // BeginStart's bookkeeping with mu_ held; false (nothing done) when the run is already driven
  // or being started here. UnannounceLocked undoes it (a run that will not start after all).
  bool AnnounceLocked(RunId id, const std::string& pipeline, std::optional<int64_t> backfill);
  void UnannounceLocked(RunId id);
  // Starts a run announced by AnnounceLocked when it is still queued, has the pipeline's tasks
  // and this daemon claims it; else undoes the announcement.
  void StartAnnounced(RunId id, const std::string& name, const dag::PipelinePtr& pipeline);
  // Claims a queued run for this daemon; false (logged) when another daemon drives it.
  bool Claim(RunId id);
  // Cancels an active or waiting run, recording `actor` and `reason`.
  Status Cancel(RunId id, const std::string& actor, const std::string& reason);

  // Schedules (daemon/schedules.cc). On the fire timer's thread: fires `name`'s schedule if
  // due, then starts its waiting runs; returns when to look again.
  std::optional<Instant> CheckPipeline(const std::string& name, Instant now);
  // The line of StartSchedules. With mu_ held (print it without).
  std::string FirstChecksLine() const;
  // A pipeline gone (deleted, renamed) before its first check; under mu_.
  void ForgetFirstCheckLocked(const std::string& name);
  // Fires the schedule, fenced by `fence` (the leader's term) when set; returns the cursor
  // afterwards, kConflict when the term is over.
  Result<Instant> Fire(const std::string& name, const dag::PipelinePtr& pipeline,
                       Instant live_since, std::optional<Instant> schedule_since, Instant now,
                       const std::optional<store::LeaderFence>& fence);
  // Applies the pause state of `name` recorded in the database (on the fire timer's thread).
  void ApplyRecordedPause(const std::string& name);
  // Sets `name`'s pause state in memory, with pause_mu_ held exclusively. Unpaused: fires before
  // now were missed, the runs that waited start (`wait`: until the scheduler has them) and the
  // schedule is looked at. kNotFound when no such pipeline is loaded.
  Status ApplyPause(const std::string& name, bool paused, bool wait);
  // Starts the pipeline's waiting scheduled runs, oldest first, while fewer than its
  // max_active_runs runs are active here.
  void StartWaiting(const std::string& name, const dag::PipelinePtr& pipeline);
  Status MarkEnded(const scheduler::MarkRequest& request, const dag::Pipeline* pipeline);
  // The daemon that drives an active run, when it is another than this one.
  std::optional<std::string> OtherOwner(RunId run);

  // The instant schedules are read at: the clock plus clock_offset.
  Instant Now() const;

  boost::asio::io_context& io_;
  scheduler::Scheduler& sched_;
  DaemonStore& store_;
  EventSource& events_;
  DaemonFiles& disk_;
  scheduler::Clock& clock_;
  DaemonServiceOptions options_;
  FireTimer timer_;
  // Held shared by triggers and retries (read the pause state, create, start), exclusively by
  // pause and unpause, so that no run is created between an unpause and its scan of waiting runs.
  std::shared_mutex pause_mu_;
  mutable std::mutex mu_;
  // Counts runs the scheduler has let go of (under mu_); WaitUntilReleased waits on it.
  int64_t runs_released_ = 0;
  std::condition_variable released_;
  bool stopping_ = false;
  bool healthy_ = true;  // the last lease renewal worked
  // Runs announced by BeginStart, not yet taken by the scheduler; true once cancelled meanwhile.
  std::map<RunId, bool> starting_;
  // Runs a cancel found neither active nor announced (it cancelled them in the store): a start
  // that was already under way drops them.
  std::set<RunId> cancelled_;
  std::map<std::string, Known> pipelines_;
  std::map<std::string, std::string> files_;  // pipeline file -> the name it is listed under
  std::filesystem::path pipelines_dir_;       // under mu_
  // Held for a whole Reload: the watcher's and one asked through the database never interleave
  // (an older parse applied after a newer one). Taken before pause_mu_.
  std::mutex reload_mu_;
  std::unique_ptr<PipelineWatcher> watcher_;
  // Runs announced by BeginStart and not ended yet, by pipeline, and the pipeline of each.
  std::map<std::string, std::set<RunId>> started_;
  std::map<RunId, std::string> run_pipeline_;
  // Scheduled runs created by this daemon that wait for a free place (max_active_runs).
  std::map<std::string, std::deque<RunId>> waiting_;
  // Backfills with runs this daemon waits to start or has started.
  struct BackfillRuns {
    std::string pipeline;
    int max_active_runs = 1;
    std::deque<RunId> waiting;
    std::set<RunId> started;
  };
  std::map<int64_t, BackfillRuns> backfills_;
  std::map<RunId, int64_t> run_backfill_;
  // Pipelines whose first check is still to come, and what the first checks did.
  std::set<std::string> first_checks_;   // not begun
  std::set<std::string> first_pending_;  // begun, not finished
  size_t first_checked_ = 0;
  int64_t first_created_ = 0;
  int64_t first_skipped_ = 0;
};

// Runs `f` on the loop thread and waits for its result (never call it from that thread).
template <typename F>
auto DaemonService::OnLoop(F&& f) -> decltype(f()) {
  std::packaged_task<decltype(f())()> task(std::forward<F>(f));
  auto future = task.get_future();
  boost::asio::post(io_, [&task] { task(); });
  return future.get();
}

}  // namespace kiln::daemon
