// DaemonService: firing schedules, and runs that wait for their turn under max_active_runs.
// Runs on the fire timer's thread (daemon/fire_timer.h); database work never touches the loop.
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/text.h"
#include "daemon/runtime.h"
#include "daemon/service.h"
#include "dag/params.h"
#include "scheduler/fire_plan.h"

namespace kiln::daemon {

namespace {

// How long a schedule waits after a failed check (the database is unreachable) before the next.
constexpr Duration kRetryAfterError = std::chrono::seconds(5);

}  // namespace

std::optional<Instant> DaemonService::CheckPipeline(const std::string& name, Instant now) {
  // Shared with triggers: no fire is created while an unpause scans the waiting runs.
  std::shared_lock pause_lock(pause_mu_);
  dag::PipelinePtr pipeline;
  bool paused = false;
  Instant live_since{};
  std::optional<Instant> schedule_since;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return std::nullopt;
    // The first check of each pipeline counts for the start's report, whatever it finds.
    const bool first = first_checks_.erase(name) != 0;
    if (first) ++first_checked_;
    auto it = pipelines_.find(name);
    if (it == pipelines_.end() || !it->second.entry.pipeline) {
      if (first && first_checks_.empty() && first_pending_.empty()) {
        std::cout << FirstChecksLine() << std::endl;
      }
      return std::nullopt;
    }
    pipeline = it->second.entry.pipeline;
    paused = it->second.paused;
    live_since = it->second.live_since;
    schedule_since = it->second.schedule_since;
    if (first) first_pending_.insert(name);
  }
  std::optional<Instant> next;
  // Only the leader fires; the others look again when they come to lead (OnLeading).
  std::optional<store::LeaderFence> fence;
  if (options_.leadership) fence = options_.leadership->Fence();
  const bool leads = !options_.leadership || fence.has_value();
  if (pipeline->schedule && !paused && leads) {
    auto cursor = Fire(name, pipeline, live_since, schedule_since, now, fence);
    if (cursor.ok()) {
      // Never before the cursor: a clock stepped back waits for the fires it has not seen yet.
      next = dag::NextFire(*pipeline->schedule, std::max(now, *cursor));
    } else {
      // A conflict too: the fence can refuse a leader whose renewal, slow, keeps its term (it
      // leads on, and nothing else would look at this pipeline again). One that lost the lead
      // for good is no longer leading at the next look and stops there.
      next = now + kRetryAfterError;
    }
  }
  if (!paused) {
    StartWaiting(name, pipeline);
    std::vector<int64_t> backfills;
    {
      std::lock_guard lock(mu_);
      for (const auto& [id, b] : backfills_) {
        if (b.pipeline == name && !b.waiting.empty()) backfills.push_back(id);
      }
    }
    for (int64_t id : backfills) StartBackfill(id);
  }
  std::string report;
  {
    std::lock_guard lock(mu_);
    if (first_pending_.erase(name) && first_checks_.empty() && first_pending_.empty()) {
      report = FirstChecksLine();
    }
  }
  if (!report.empty()) std::cout << report << std::endl;
  return next;
}

std::string DaemonService::FirstChecksLine() const {
  return "kiln: schedules: " + std::to_string(first_checked_) + " pipelines checked; " +
         std::to_string(first_created_) + " runs created, " + std::to_string(first_skipped_) +
         " fires skipped";
}

Result<Instant> DaemonService::Fire(const std::string& name, const dag::PipelinePtr& pipeline,
                                    Instant live_since, std::optional<Instant> schedule_since,
                                    Instant now, const std::optional<store::LeaderFence>& fence) {
  const dag::PipelineSpec& spec = pipeline->spec;
  auto params = dag::ResolveParams(spec, {});
  if (!params.ok()) {
    log::Error(name + ": schedule: " + params.message());
    return params.status();
  }
  std::vector<RunId> cancel;
  std::optional<Instant> cursor;
  int64_t skipped = 0;
  auto fired = store_.FireSchedule(
      name, spec.content_hash, spec.source,
      [&](const store::ScheduleState& state) {
        store::FireDecision d;
        cursor = state.cursor;
        // Paused through the API of another daemon on the same database.
        if (state.paused.value_or(spec.paused)) return d;
        // A schedule changed by a reload starts from the change: the new expression's instants
        // before it are not due.
        std::optional<Instant> from = state.cursor;
        if (from && schedule_since && *from < *schedule_since) from = schedule_since;
        auto due =
            scheduler::PlanFires(*pipeline->schedule, from, live_since, now,
                                 scheduler::ParseCatchup(spec.catchup), options_.catchup_cap);
        auto overlap = scheduler::ApplyOverlap(due.run, state.active.size(), spec.max_active_runs,
                                               scheduler::ParseOverlap(spec.overlap));
        for (const scheduler::Fire& fire : overlap.run) {
          store::NewRun run = MakeNewRun(*pipeline, *params, "schedule", fire.logical_date);
          run.data_interval_start = fire.data_interval_start;
          run.created_by = "schedule";
          run.lease_owner = options_.owner;
          if (fire.missed) run.note = "catch-up (" + spec.catchup + ")";
          d.runs.push_back(std::move(run));
        }
        d.cursor = due.cursor;
        if (due.cursor) cursor = std::max(cursor.value_or(*due.cursor), *due.cursor);
        d.skipped = due.skipped_missed + static_cast<int64_t>(overlap.skipped.size());
        skipped = d.skipped;
        if (due.skipped_missed > 0) {
          d.skipped_details.push_back(
              nlohmann::json{{"reason", "catchup"},
                             {"catchup", spec.catchup},
                             {"count", due.skipped_missed},
                             {"through", FormatRfc3339Millis(*due.cursor)}}
                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        }
        for (const scheduler::Fire& fire : overlap.skipped) {
          d.skipped_details.push_back(nlohmann::json{
              {"reason", "overlap"},
              {"logical_date", FormatRfc3339Millis(fire.logical_date)},
              {"active_runs", state.active.size()},
              {"max_active_runs",
               spec.max_active_runs}}.dump(-1, ' ', false,
                                           nlohmann::json::error_handler_t::replace));
        }
        cancel.assign(state.active.begin(),
                      state.active.begin() + static_cast<std::ptrdiff_t>(overlap.cancel_oldest));
        return d;
      },
      fence);
  if (!fired.ok()) {
    if (fired.status().code() == ErrorCode::kConflict) {
      log::Info(name + ": schedule: " + fired.message());
    } else {
      log::Error(name + ": schedule: " + fired.message());
    }
    return fired.status();
  }
  for (RunId id : cancel) {
    Status s = Cancel(id, "schedule",
                      "cancelled by the schedule: a newer run of '" + name +
                          "' replaces it (overlap = \"cancel_running\")");
    if (!s.ok() && s.code() != ErrorCode::kConflict) log::Error(name + ": " + s.message());
  }
  std::lock_guard lock(mu_);
  if (first_pending_.count(name)) first_skipped_ += skipped;
  // Deleted or renamed by a reload meanwhile: its runs stay queued for the next start.
  auto known = pipelines_.find(name);
  const bool current = known != pipelines_.end() && known->second.entry.pipeline;
  for (const store::CreatedRun& run : fired->runs) {
    if (run.existing) continue;
    if (first_pending_.count(name)) ++first_created_;
    log::Info(name + ": schedule fired: run " + ToString(run.id));
    if (current) waiting_[name].push_back(run.id);
  }
  return cursor.value_or(now);
}

void DaemonService::OnLeading(int64_t term) {
  if (term < 0) return;
  std::vector<std::string> scheduled;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, known] : pipelines_) {
      if (known.entry.pipeline && known.entry.pipeline->schedule) scheduled.push_back(name);
    }
  }
  // Fires due while no daemon led are on time (after live_since): they run now.
  for (const std::string& name : scheduled) timer_.Touch(name);
}

void DaemonService::OnPipelinesNotified(const std::string& payload) {
  // "reload <daemon>": the daemon asked has read its kiln.toml already ("reload" alone: asked by
  // an older daemon).
  if (payload == "reload" || payload.rfind("reload ", 0) == 0) {
    const bool asked_here = payload.size() > 7 && payload.substr(7) == SafeUtf8(options_.owner);
    ReloadHere("asked through the database", /*config=*/!asked_here);
  } else if (payload.rfind("pause ", 0) == 0) {
    timer_.Post([this, name = payload.substr(6)] { ApplyRecordedPause(name); });
  }
}

void DaemonService::ReloadHere(const std::string& why, bool config) {
  timer_.Post([this, why, config] {
    // kiln.toml first: its [secrets] do not change without a restart, so the folder reads the
    // same either way; the outcome (or the file's errors) is logged by reload_config.
    if (config && options_.reload_config) (void)options_.reload_config();
    std::set<std::string> files;
    {
      std::lock_guard lock(mu_);
      if (pipelines_dir_.empty()) return;
      for (const auto& [file, name] : files_) files.insert(file);
    }
    log::Info("reloading the pipelines folder: " + why);
    Reload(files, /*rescan=*/true);
  });
}

void DaemonService::ApplyRecordedPause(const std::string& name) {
  std::unique_lock pause_lock(pause_mu_);
  auto recorded = store_.PausedPipelines();
  if (!recorded.ok()) {
    log::Error("reading the pause state of '" + name + "': " + recorded.message());
    return;
  }
  bool paused = false;
  {
    std::lock_guard lock(mu_);
    auto it = pipelines_.find(name);
    if (it == pipelines_.end() || stopping_) return;
    const Known& known = it->second;
    auto r = recorded->find(name);
    paused = r != recorded->end() ? r->second
                                  : (known.entry.pipeline && known.entry.pipeline->spec.paused);
    if (paused == known.paused) return;  // this daemon's own change, or nothing new
  }
  log::Info(name + (paused ? ": paused" : ": unpaused") + " through another daemon");
  if (Status s = ApplyPause(name, paused, /*wait=*/false); !s.ok()) log::Error(s.message());
}

void DaemonService::StartWaiting(const std::string& name, const dag::PipelinePtr& pipeline) {
  const size_t limit = static_cast<size_t>(std::max(pipeline->spec.max_active_runs, 1));
  while (true) {
    RunId id{};
    {
      // The limit check, the pop and the announcement in one step: two threads starting this
      // pipeline's runs cannot both pass the limit.
      std::lock_guard lock(mu_);
      auto& waiting = waiting_[name];
      if (stopping_ || waiting.empty() || started_[name].size() >= limit) return;
      id = waiting.front();
      waiting.pop_front();
      if (!AnnounceLocked(id, name, std::nullopt)) continue;
    }
    StartAnnounced(id, name, pipeline);
  }
}

void DaemonService::StartAnnounced(RunId id, const std::string& name,
                                   const dag::PipelinePtr& pipeline) {
  auto run = GetRun(id);
  const bool queued = run.ok() && run->state == dag::RunState::kQueued;
  const bool same = queued && SameTasks(*run, *pipeline);
  if (queued && !same) {
    log::Error("run " + ToString(id) + " of '" + name +
               "' stays queued: the pipeline's tasks have changed since it was created");
  }
  if (!same || !Claim(id)) {
    std::lock_guard lock(mu_);
    UnannounceLocked(id);
    return;
  }
  StartRun(ContextOf(*run, pipeline), /*wait=*/false);
}

std::string DaemonService::Forget(RunId id) {
  std::lock_guard lock(mu_);
  auto it = run_pipeline_.find(id);
  if (it == run_pipeline_.end()) return "";
  std::string name = it->second;
  run_pipeline_.erase(it);
  started_[name].erase(id);
  if (auto b = run_backfill_.find(id); b != run_backfill_.end()) {
    const int64_t backfill = b->second;
    run_backfill_.erase(b);
    backfills_[backfill].started.erase(id);
    // A place is free in the backfill.
    timer_.Post([this, backfill] { StartBackfill(backfill); });
  }
  return name;
}

void DaemonService::OnRunFinished(RunId run, dag::RunState state) {
  {
    std::lock_guard lock(mu_);
    ++runs_released_;
  }
  released_.notify_all();
  std::string name = Forget(run);
  if (name.empty()) return;
  if (options_.notifier != nullptr) {
    options_.notifier->OnRunEnded(run, name, std::string(dag::Name(state)));
  }
  // A place is free: the pipeline's waiting runs may start.
  timer_.Touch(name);
  if (state == dag::RunState::kSuccess) {
    timer_.Post([this, name, run] { TriggerDownstream(name, run); });
  }
}

void DaemonService::OnTaskState(RunId run, const dag::TaskSpec& /*task*/, const std::string& name,
                                dag::TaskState state, int attempt, const std::string& /*reason*/) {
  if (state != dag::TaskState::kUpForRetry || options_.notifier == nullptr) return;
  std::string pipeline;
  {
    std::lock_guard lock(mu_);
    auto it = run_pipeline_.find(run);
    if (it == run_pipeline_.end()) return;
    pipeline = it->second;
  }
  options_.notifier->OnRetry(run, pipeline, name, attempt);
}

std::optional<NotifyRules> DaemonService::NotifyRulesOf(const std::string& pipeline) {
  std::lock_guard lock(mu_);
  auto it = pipelines_.find(pipeline);
  if (it == pipelines_.end() || !it->second.entry.pipeline) return std::nullopt;
  const dag::PipelineSpec& spec = it->second.entry.pipeline->spec;
  return NotifyRules{spec.sla, spec.notify};
}

std::map<std::string, Duration> DaemonService::Slas() {
  std::lock_guard lock(mu_);
  std::map<std::string, Duration> out;
  for (const auto& [name, known] : pipelines_) {
    if (known.entry.pipeline && known.entry.pipeline->spec.sla > Duration(0)) {
      out.emplace(name, known.entry.pipeline->spec.sla);
    }
  }
  return out;
}

void DaemonService::TriggerDownstream(const std::string& upstream, RunId run) {
  std::vector<std::string> targets;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, known] : pipelines_) {
      const dag::PipelinePtr& p = known.entry.pipeline;
      if (!p) continue;
      const auto& on = p->spec.trigger_on_success;
      if (std::find(on.begin(), on.end(), upstream) != on.end()) targets.push_back(name);
    }
  }
  for (const std::string& name : targets) {
    scheduler::TriggerRequest request;
    request.pipeline = name;
    request.actor = "trigger_on_success";
    request.triggered_by = run;
    request.note = "started by run " + ToString(run) + " of '" + upstream + "'";
    // Once per upstream run, whatever happens to it later (a retry that succeeds again).
    request.idempotency_key = "after-run-" + ToString(run);
    auto created = Trigger(request);
    if (!created.ok()) {
      log::Error(name + ": trigger_on_success of run " + ToString(run) + " of '" + upstream +
                 "': " + created.message());
    } else if (!created->existing) {
      log::Info(name + ": run " + ToString(created->id) + " started by run " + ToString(run) +
                " of '" + upstream + "'");
    }
  }
}

}  // namespace kiln::daemon
