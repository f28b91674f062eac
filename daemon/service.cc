#include "daemon/service.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "daemon/log_files.h"
#include "daemon/loop_call.h"
#include "daemon/runtime.h"
#include "dag/params.h"
#include "scheduler/run_plan.h"

namespace kiln::daemon {

namespace {

// How long a mark waits for the scheduler to decide it before the request gives up waiting.
constexpr std::chrono::seconds kMarkWait{30};

}  // namespace

namespace asio = boost::asio;
using scheduler::RunRecord;

DaemonService::DaemonService(asio::io_context& io, scheduler::Scheduler& sched, DaemonEnv env,
                             DaemonServiceOptions options)
    : io_(io),
      sched_(sched),
      store_(*env.store),
      events_(*env.events),
      disk_(*env.files),
      clock_(*env.clock),
      options_(std::move(options)),
      timer_([this](const std::string& name, Instant now) { return CheckPipeline(name, now); },
             [this] { return Now(); }) {}

DaemonService::~DaemonService() {
  if (watcher_) watcher_->Stop();
  timer_.Stop();
  store_.Stop();
  events_.Stop();
}

Instant DaemonService::Now() const { return clock_.Now() + options_.clock_offset; }

Status DaemonService::Start(std::map<std::string, PipelineEntry> pipelines) {
  if (Status s = store_.Start(); !s.ok()) return s;
  KeepLastLoaded(store_, pipelines);
  auto paused = store_.PausedPipelines();
  if (!paused.ok()) return paused.status();
  const Instant now = Now();
  {
    std::lock_guard lock(mu_);
    for (auto& [name, entry] : pipelines) {
      files_[entry.file] = name;
      Known known{std::move(entry), false, now, std::nullopt};
      if (auto it = paused->find(name); it != paused->end()) {
        known.paused = it->second;
      } else if (known.entry.pipeline) {
        known.paused = known.entry.pipeline->spec.paused;
      }
      pipelines_.emplace(name, std::move(known));
    }
  }
  events_.Start();
  // Runs that wait, queued, from before this start (triggered while paused, or left by a daemon
  // that stopped) run now if their pipeline is not paused. Posted: the loop runs after Start.
  std::vector<std::pair<std::string, dag::PipelinePtr>> runnable;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, known] : pipelines_) {
      if (known.entry.pipeline && !known.paused) runnable.emplace_back(name, known.entry.pipeline);
    }
  }
  {
    std::unique_lock pause_lock(pause_mu_);
    for (const auto& [name, pipeline] : runnable) {
      if (Status s = StartQueued(name, pipeline, /*wait=*/false); !s.ok()) return s;
    }
  }
  return Status::Ok();
}

void DaemonService::StartSchedules() {
  timer_.Start();
  std::string report;
  {
    std::lock_guard lock(mu_);
    // Every pipeline's first check: schedules catch up, waiting runs start.
    for (const auto& [name, known] : pipelines_) {
      first_checks_.insert(name);
      timer_.Touch(name);
    }
    if (first_checks_.empty()) report = FirstChecksLine();
  }
  if (!report.empty()) std::cout << report << std::endl;
}

void DaemonService::StopAccepting() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  if (watcher_) watcher_->Stop();
  timer_.Stop();
  store_.Stop();
  events_.Stop();
}

Status DaemonService::Refuse() const {
  return Status::Error(ErrorCode::kUnavailable, "the daemon is stopping");
}

// ---- pipelines ----

scheduler::PipelineInfo DaemonService::Info(const std::string& name, const Known& known) const {
  scheduler::PipelineInfo info;
  info.name = name;
  info.file = known.entry.file;
  info.pipeline = known.entry.pipeline;
  info.load_error = known.entry.load_error;
  info.paused = known.paused;
  return info;
}

void DaemonService::AddSchedule(scheduler::PipelineInfo& info,
                                const std::map<std::string, store::ScheduleState>& states) const {
  std::optional<Instant> cursor;
  if (auto it = states.find(info.name); it != states.end()) {
    cursor = it->second.cursor;
    info.last_fire = it->second.cursor;
    info.fires_skipped = it->second.fires_skipped;
  }
  if (info.pipeline && info.pipeline->schedule && !info.paused) {
    const Instant now = Now();
    Instant after = std::max(now, cursor.value_or(now));
    for (int i = 0; i < scheduler::kNextFires; ++i) {
      auto next = dag::NextFire(*info.pipeline->schedule, after);
      if (!next) break;
      info.next_fires.push_back(*next);
      after = *next;
    }
  }
}

std::vector<scheduler::PipelineInfo> DaemonService::ListPipelines() {
  std::vector<scheduler::PipelineInfo> out;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, known] : pipelines_) out.push_back(Info(name, known));
  }
  auto states = store_.ScheduleStates();
  if (states.ok()) {
    for (auto& info : out) AddSchedule(info, *states);
  } else {
    log::Error(states.message());
  }
  auto recent = store_.RecentRuns(scheduler::kRecentRuns);
  if (!recent.ok()) {
    log::Error(recent.message());
    return out;
  }
  for (auto& info : out) {
    auto it = recent->find(info.name);
    if (it == recent->end() || it->second.empty()) continue;
    info.last_run = it->second.front().first;
    info.last_run_state = it->second.front().second;
    info.recent_runs = std::move(it->second);
  }
  return out;
}

Result<scheduler::PipelineInfo> DaemonService::GetPipeline(const std::string& name) {
  scheduler::PipelineInfo info;
  {
    std::lock_guard lock(mu_);
    auto it = pipelines_.find(name);
    if (it == pipelines_.end()) {
      return Status::Error(ErrorCode::kNotFound, "no pipeline named '" + name + "'");
    }
    info = Info(name, it->second);
  }
  scheduler::RunFilter filter;
  filter.pipeline = name;
  filter.limit = scheduler::kRecentRuns;
  auto page = store_.ListRuns(filter);
  if (page.ok() && !page->runs.empty()) {
    info.last_run = page->runs[0].id;
    info.last_run_state = page->runs[0].state;
    for (const auto& run : page->runs) info.recent_runs.emplace_back(run.id, run.state);
  }
  auto states = store_.ScheduleStates();
  if (!states.ok()) return states.status();
  AddSchedule(info, *states);
  return info;
}

Status DaemonService::CheckTaskOf(const std::string& pipeline, const std::string& task) {
  std::lock_guard lock(mu_);
  auto it = pipelines_.find(pipeline);
  if (it == pipelines_.end()) {
    return Status::Error(ErrorCode::kNotFound, "no pipeline named '" + pipeline + "'");
  }
  const dag::PipelinePtr& loaded = it->second.entry.pipeline;
  if (!loaded) return Status::Ok();  // its file has errors: its tasks are not known
  // An instance of a mapped task ("train[3]") is its task's.
  const std::string base = task.substr(0, task.find('['));
  std::string known;
  for (const dag::TaskSpec& t : loaded->spec.tasks) {
    if (t.id == task || t.id == base) return Status::Ok();
    if (known.size() < 200) known += (known.empty() ? "" : ", ") + t.id;
  }
  return Status::Error(ErrorCode::kNotFound, "pipeline '" + pipeline + "' has no task '" + task +
                                                 "' (its tasks: " + known +
                                                 (known.size() >= 200 ? ", ..." : "") + ")");
}

Result<dag::PipelinePtr> DaemonService::Runnable(const std::string& name, bool* paused) {
  std::lock_guard lock(mu_);
  if (stopping_) return Refuse();
  auto it = pipelines_.find(name);
  if (it == pipelines_.end()) {
    return Status::Error(ErrorCode::kNotFound, "no pipeline named '" + name + "'");
  }
  if (!it->second.entry.pipeline) {
    return Status::Error(ErrorCode::kConflict, "pipeline '" + name +
                                                   "' cannot run: its file has errors: " +
                                                   it->second.entry.load_error.value_or(""));
  }
  if (paused) *paused = it->second.paused;
  return it->second.entry.pipeline;
}

Status DaemonService::SetPaused(const std::string& name, bool paused, const std::string& actor) {
  std::unique_lock pause_lock(pause_mu_);
  bool was = false;  // in effect now: set by a daemon, else the file's (under pause_mu_, as here)
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Refuse();
    auto it = pipelines_.find(name);
    if (it == pipelines_.end()) {
      return Status::Error(ErrorCode::kNotFound, "no pipeline named '" + name + "'");
    }
    was = it->second.paused;
  }
  Status s = store_.SetPaused(name, paused, actor, was);
  if (!s.ok()) return s;
  return ApplyPause(name, paused, /*wait=*/true);
}

Status DaemonService::ApplyPause(const std::string& name, bool paused, bool wait) {
  dag::PipelinePtr pipeline;
  {
    std::lock_guard lock(mu_);
    auto it = pipelines_.find(name);
    if (it == pipelines_.end()) {
      // Deleted by a reload meanwhile; the recorded pause state applies if it comes back.
      return Status::Error(ErrorCode::kNotFound, "no pipeline named '" + name + "'");
    }
    Known& known = it->second;
    // Fires while it was paused were missed: they follow the catchup policy.
    if (known.paused && !paused) known.live_since = Now();
    known.paused = paused;
    pipeline = known.entry.pipeline;
  }
  if (paused || !pipeline) return Status::Ok();
  Status started = StartQueued(name, pipeline, wait);
  timer_.Touch(name);
  return started;
}

Result<scheduler::ConfigReload> DaemonService::ReloadPipelines(const std::string& actor) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Refuse();
  }
  log::Info("reload of kiln.toml and the pipelines folders asked by " + actor);
  scheduler::ConfigReload config;
  if (options_.reload_config) {
    // This daemon's answer is told to the caller; a broken file asks nothing of anyone.
    auto read = options_.reload_config();
    if (!read.ok()) return read.status();
    config = std::move(read).value();
  }
  // On the notification every other daemon reads its kiln.toml and folder again, and this one
  // its folder.
  if (Status asked = store_.AskReload(options_.owner); !asked.ok()) {
    if (options_.reload_config) {
      return Status::Error(asked.code(),
                           "this daemon's kiln.toml was reloaded, but the other "
                           "daemons could not be asked: " +
                               asked.message());
    }
    return asked;
  }
  return config;
}

Status DaemonService::StartQueued(const std::string& name, const dag::PipelinePtr& pipeline,
                                  bool wait) {
  auto queued = store_.QueuedRuns(name);
  if (!queued.ok()) return queued.status();
  std::vector<const RunRecord*> now;
  for (const RunRecord& run : *queued) {
    if (!SameTasks(run, *pipeline)) {
      log::Error("run " + ToString(run.id) + " of '" + name +
                 "' stays queued: the pipeline's tasks have changed since it was created");
      continue;
    }
    if (run.backfill) {
      // A backfill's runs take their turn under its own limit.
      auto backfill = store_.GetBackfill(*run.backfill);
      if (!backfill.ok()) return backfill.status();
      QueueBackfillRun(*run.backfill, name, backfill->max_active_runs, run.id);
      continue;
    }
    std::lock_guard lock(mu_);
    if (started_[name].count(run.id)) continue;
    if (run.trigger == "schedule") {
      // Scheduled runs take their turn under max_active_runs (StartWaiting).
      auto& waiting = waiting_[name];
      if (std::find(waiting.begin(), waiting.end(), run.id) == waiting.end()) {
        waiting.push_back(run.id);
      }
      continue;
    }
    now.push_back(&run);
  }
  std::vector<const RunRecord*> claimed;
  for (const RunRecord* run : now) {
    if (Claim(run->id)) claimed.push_back(run);
  }
  for (const RunRecord* run : claimed) BeginStart(run->id, name);
  // Oldest first.
  for (const RunRecord* run : claimed) StartRun(ContextOf(*run, pipeline), wait);
  StartWaiting(name, pipeline);
  std::vector<int64_t> backfills;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, b] : backfills_) {
      if (b.pipeline == name) backfills.push_back(id);
    }
  }
  for (int64_t id : backfills) StartBackfill(id);
  return Status::Ok();
}

// ---- runs ----

scheduler::RunContext DaemonService::ContextOf(const RunRecord& run, dag::PipelinePtr pipeline) {
  store::ActiveRun active;
  active.run = run;
  auto ctx = ResumeContext(active, std::move(pipeline));
  KILN_CHECK(ctx.ok());  // callers check SameTasks first
  return std::move(ctx).value();
}

void DaemonService::BeginStart(RunId id, const std::string& pipeline,
                               std::optional<int64_t> backfill) {
  std::lock_guard lock(mu_);
  AnnounceLocked(id, pipeline, backfill);
}

bool DaemonService::AnnounceLocked(RunId id, const std::string& pipeline,
                                   std::optional<int64_t> backfill) {
  if (run_pipeline_.count(id)) return false;  // already driven (or being started) here
  starting_.emplace(id, false);
  run_pipeline_[id] = pipeline;
  if (backfill) {
    BackfillRuns& b = backfills_[*backfill];
    if (b.pipeline.empty()) b.pipeline = pipeline;
    b.started.insert(id);
    run_backfill_[id] = *backfill;
  } else {
    started_[pipeline].insert(id);
  }
  return true;
}

void DaemonService::UnannounceLocked(RunId id) {
  starting_.erase(id);
  auto it = run_pipeline_.find(id);
  if (it == run_pipeline_.end()) return;
  started_[it->second].erase(id);
  run_pipeline_.erase(it);
  if (auto b = run_backfill_.find(id); b != run_backfill_.end()) {
    backfills_[b->second].started.erase(id);
    run_backfill_.erase(b);
  }
}

void DaemonService::StartRun(scheduler::RunContext ctx, bool wait) {
  if (options_.notifier != nullptr) options_.notifier->Touch();  // an SLA to watch
  // On the loop, where CancelRun also decides: either the run is taken first and a cancel then
  // finds it active, or a cancel came first and the run is not started at all.
  auto start = [this](scheduler::RunContext& ctx) {
    bool cancelled = false;
    {
      std::lock_guard lock(mu_);
      if (auto it = starting_.find(ctx.id); it != starting_.end()) {
        cancelled = it->second;
        starting_.erase(it);
      }
    }
    {
      // Cancelled in the store after it was read as queued, before it was announced.
      std::lock_guard lock(mu_);
      if (cancelled_.erase(ctx.id)) cancelled = true;
    }
    if (cancelled || sched_.IsActive(ctx.id)) {
      // Not started here after all: it no longer counts as active (unless it already runs).
      if (cancelled) Forget(ctx.id);
      return 0;
    }
    sched_.AddRun(std::move(ctx));
    return 0;
  };
  if (!wait) {
    asio::post(io_, [start, ctx = std::move(ctx)]() mutable { start(ctx); });
    return;
  }
  // Waits until the scheduler has taken the run, so that a cancel right after the answer finds
  // it active.
  OnLoop([&] { return start(ctx); });
}

Result<scheduler::TriggerResult> DaemonService::Trigger(const scheduler::TriggerRequest& request) {
  std::shared_lock pause_lock(pause_mu_);
  bool paused = false;
  auto pipeline = Runnable(request.pipeline, &paused);
  if (!pipeline.ok()) return pipeline.status();
  auto params = dag::ResolveParams((*pipeline)->spec, request.params);
  if (!params.ok()) return Status::Error(ErrorCode::kInvalidArgument, params.message());
  Instant now = clock_.Now();
  const std::string trigger =
      !request.trigger.empty() ? request.trigger : (request.triggered_by ? "pipeline" : "manual");
  store::NewRun row = MakeNewRun(**pipeline, *params, trigger, now);
  row.triggered_by = request.triggered_by;
  if (request.asking_task && request.triggered_by) {
    row.asked_by =
        store::NewRun::Ask{*request.triggered_by, *request.asking_task, request.cooldown};
  }
  row.idempotency_key = request.idempotency_key;
  // Started here at once unless paused; a paused pipeline's run goes to whichever daemon
  // unpauses it.
  if (!paused) row.lease_owner = options_.owner;
  row.created_by = request.actor;
  row.note = request.note;
  auto created = store_.CreateRun(row);
  if (!created.ok()) return created.status();
  scheduler::TriggerResult result{created->id, created->existing, created->cooled, std::nullopt};
  if (!created->existing) {
    // What the rows say right after creation, without reading them back.
    RunRecord run;
    run.id = created->id;
    run.pipeline = row.pipeline;
    run.version_hash = row.version_hash;
    run.trigger = row.trigger;
    run.logical_date = row.logical_date;
    run.data_interval_start = row.data_interval_start;
    run.data_interval_end = row.data_interval_end;
    run.params = row.params;
    run.idempotency_key = row.idempotency_key;
    run.triggered_by = row.triggered_by;
    run.created_by = row.created_by;
    run.note = row.note;
    run.created_at = now;
    for (const auto& task : row.tasks) {
      scheduler::TaskInstanceRecord t;
      t.task_id = task.id;
      t.pool = task.pool;
      t.priority = task.priority;
      run.tasks.push_back(std::move(t));
    }
    if (!paused) {
      // Posted, not awaited: the answer does not wait for a busy loop. A cancel that arrives
      // before the loop takes the run finds it in starting_ and the run never starts.
      BeginStart(created->id, request.pipeline);
      StartRun(ContextOf(run, *pipeline), /*wait=*/false);
    }
    result.run = std::move(run);
  }
  return result;
}

Result<scheduler::RunPage> DaemonService::ListRuns(const scheduler::RunFilter& filter) {
  return store_.ListRuns(filter);
}

Result<RunRecord> DaemonService::GetRun(RunId id) { return store_.GetRun(id); }

bool DaemonService::Claim(RunId id) {
  auto claimed = store_.ClaimRun(id, options_.owner);
  if (!claimed.ok()) {
    log::Error(claimed.message());
    return false;
  }
  if (!*claimed) log::Info("run " + ToString(id) + " is driven by another daemon");
  return *claimed;
}

Status DaemonService::CancelRun(RunId id, const std::string& actor) {
  return Cancel(id, actor, "cancelled by " + actor);
}

Status DaemonService::Cancel(RunId id, const std::string& actor, const std::string& reason) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Refuse();
  }
  // Durable first: whichever daemon drives the run (now or after a takeover) acts on it, and the
  // attempts' supervisors stop them even if no daemon does.
  auto owner = store_.RequestCancel(id, actor, reason);
  if (!owner.ok()) return owner.status();
  // Decided on the loop, where runs are started (see StartRun).
  bool active = OnLoop([&] {
    if (sched_.IsActive(id)) {
      sched_.CancelRun(id, reason);
      return true;
    }
    std::lock_guard lock(mu_);
    if (auto it = starting_.find(id); it != starting_.end()) {
      it->second = true;
    } else {
      cancelled_.insert(id);
    }
    return false;
  });
  if (active || (!owner->empty() && *owner != options_.owner)) {
    // Driven by another daemon: notified, it cancels the run (or whoever takes it over does).
    return Status::Ok();
  }
  // Not driven by any scheduler: waiting (paused, or for its turn), or not started yet.
  auto cancelled = store_.CancelOrphanedRun(id, actor, reason);
  if (!cancelled.ok()) return cancelled.status();
  return Status::Ok();
}

bool DaemonService::WaitUntilReleased(RunId run) {
  // The scheduler lets go of an ended run when its loop takes the commit's answer, a moment
  // after the end is visible to readers: wait for that moment, not for the caller to try again.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (true) {
    int64_t seen = 0;
    {
      std::lock_guard lock(mu_);
      seen = runs_released_;
    }
    if (!OnLoop([&] { return sched_.IsActive(run); })) return true;
    std::unique_lock lock(mu_);
    if (!released_.wait_until(lock, deadline, [&] { return runs_released_ != seen; })) {
      return false;
    }
  }
}

Result<scheduler::RetryResult> DaemonService::RetryRun(const scheduler::RetryRequest& request) {
  std::shared_lock pause_lock(pause_mu_);
  auto run = GetRun(request.run);
  if (!run.ok()) return run.status();
  if (!dag::IsTerminal(run->state)) {
    return Status::Error(ErrorCode::kConflict, "run " + ToString(request.run) + " is still " +
                                                   std::string(dag::Name(run->state)) +
                                                   "; wait for it to end or cancel it");
  }
  bool paused = false;
  auto pipeline = Runnable(run->pipeline, &paused);
  if (pipeline.status().code() == ErrorCode::kNotFound) {
    return Status::Error(ErrorCode::kConflict,
                         "run " + ToString(request.run) + " cannot be retried: pipeline '" +
                             run->pipeline +
                             "' is not loaded (its file was deleted or renamed), and a retry "
                             "runs the pipeline's current version");
  }
  if (!pipeline.ok()) return pipeline.status();
  const dag::Pipeline& p = **pipeline;
  // The run's tasks must still be the pipeline's: a retry runs the current version.
  if (!SameTasks(*run, p)) {
    return Status::Error(ErrorCode::kConflict, "run " + ToString(request.run) +
                                                   " cannot be retried: the tasks of '" +
                                                   run->pipeline + "' have changed since it ran");
  }
  auto choice = ChooseRetry(*run, p, request.from_task);
  if (!choice.ok()) return choice.status();
  // Its end is committed, but the scheduler may not have let go of it yet.
  if (!WaitUntilReleased(request.run)) {
    return Status::Error(ErrorCode::kConflict, "run " + ToString(request.run) +
                                                   " is still finishing; retry it in a moment");
  }
  if (choice->pending.empty()) {
    return Status::Error(ErrorCode::kConflict,
                         "run " + ToString(request.run) +
                             " has nothing to retry: no task failed, was cancelled or was "
                             "skipped because of a failure");
  }
  std::vector<std::string> names = choice->pending;
  int64_t event_id = 0;
  auto reset = store_.PrepareRetry(request.run, names, request.actor, &event_id,
                                   store::Reopen{choice->reopen, choice->drop});
  if (!reset.ok()) return reset.status();
  // A paused pipeline's retried run waits, queued, like a triggered one.
  if (!paused && Claim(request.run)) {
    BeginStart(request.run, run->pipeline, run->backfill);
    StartRun(ContextOf(*reset, *pipeline));
  }
  return scheduler::RetryResult{request.run, std::move(names), event_id};
}

Status DaemonService::MarkEnded(const scheduler::MarkRequest& request,
                                const dag::Pipeline* pipeline) {
  // The run's state follows its tasks, as when it ended (scheduler::RunPlan::Outcome).
  auto outcome = [pipeline](const RunRecord& run) {
    // The pipeline's tasks decide (a mapped task's state is its instances' aggregate).
    std::vector<dag::TaskState> states;
    for (const auto& t : run.tasks) {
      if (t.parent.empty()) states.push_back(t.state);
    }
    return scheduler::OutcomeOf(states, [&](size_t i) {
      if (!pipeline) return false;
      auto id = pipeline->dag.Find(run.tasks[i].task_id);
      return id && pipeline->task(*id).allow_failure;
    });
  };
  auto marked = store_.MarkTaskInEndedRun(request.run, request.task, request.state, request.reason,
                                          request.actor, outcome);
  return marked.ok() ? Status::Ok() : marked.status();
}

std::optional<std::string> DaemonService::OtherOwner(RunId run) {
  auto active = store_.ActiveRuns(std::vector<RunId>{run});
  if (active.ok() && !active->empty() && !(*active)[0].owner.empty() &&
      (*active)[0].owner != options_.owner) {
    return (*active)[0].owner;
  }
  return std::nullopt;
}

Status DaemonService::MarkTask(const scheduler::MarkRequest& request) {
  auto run = GetRun(request.run);
  if (!run.ok()) return run.status();
  bool known = false;
  for (const auto& t : run->tasks) known = known || t.task_id == request.task;
  if (!known) {
    return Status::Error(ErrorCode::kNotFound,
                         "run " + ToString(request.run) + " has no task '" + request.task + "'");
  }
  dag::PipelinePtr pipeline;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Refuse();
    if (auto it = pipelines_.find(run->pipeline); it != pipelines_.end()) {
      pipeline = it->second.entry.pipeline;
    }
  }
  const bool instance = request.task.find('[') != std::string::npos;
  if (!dag::IsTerminal(run->state) && pipeline) {
    if (instance || pipeline->dag.Find(request.task)) {
      const std::string reason = "marked " + std::string(dag::Name(request.state)) + " by " +
                                 request.actor +
                                 (request.reason.empty() ? "" : ": " + request.reason);
      nlohmann::json detail = {
          {"task", request.task}, {"state", dag::Name(request.state)}, {"reason", request.reason}};
      // The mark's event, by whoever learns that it was decided.
      auto record = [this, run = request.run, actor = request.actor,
                     detail =
                         detail.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)] {
        return store_.RecordEvent("task_marked", run, actor, detail);
      };
      const LoopAnswer answer = CallOnLoop(
          io_, kMarkWait,
          [this, run = request.run, task = request.task, state = request.state, reason](auto done) {
            // A task of the pipeline, or an instance of a mapped one ("train[3]").
            auto unit = sched_.FindUnit(run, task);
            if (!unit) return done(Status::Error(ErrorCode::kNotFound, "not active here"));
            sched_.MarkTask(run, *unit, state, reason, std::move(done));
          },
          /*finish_begun=*/false,
          [this, record, run = request.run, task = request.task](const Status& late) {
            if (!late.ok()) return;
            const bool posted = timer_.Post([record] {
              if (Status s = record(); !s.ok()) log::Error(s.message());
            });
            if (!posted) {
              log::Error("run " + ToString(run) + ": the mark of " + task +
                         " was decided, but its task_marked event could not be recorded (the "
                         "daemon is stopping)");
            }
          });
      if (answer.state != LoopAnswer::State::kAnswered) {
        return Status::Error(
            ErrorCode::kUnavailable,
            answer.state == LoopAnswer::State::kNotBegun
                ? "the scheduler did not take the mark up within 30 s (it is very busy, or "
                  "stuck); nothing was marked, so mark again"
                : "the scheduler took the mark up but could not confirm it within 30 s; look "
                  "at the task's state before marking again");
      }
      const Status& s = answer.status;
      if (s.code() != ErrorCode::kNotFound) {
        if (!s.ok()) return s;
        return record();
      }
    }
  }
  if (!dag::IsTerminal(run->state)) {
    // Active, but not here: marks need the scheduler that drives the run.
    if (auto owner = OtherOwner(request.run)) {
      return Status::Error(ErrorCode::kConflict,
                           "run " + ToString(request.run) + " is driven by the daemon " + *owner +
                               "; send the mark to that daemon, or cancel the run from any");
    }
  }
  if (instance) {
    // Its task's state is its instances' aggregate, decided while the run is active.
    return Status::Error(ErrorCode::kConflict,
                         "'" + request.task +
                             "' is an instance of a task with for_each; in a run " +
                             "that has ended, retry it instead (kiln retry " +
                             ToString(request.run) + " --from '" + request.task + "')");
  }
  return MarkEnded(request, pipeline.get());
}

}  // namespace kiln::daemon
