// DaemonService: runs resumed from the database. At start the runs this daemon drove go on
// (their attempts adopted); runs taken over from expired daemons go on the same way; a run the
// store fenced is read again; cancels asked through other daemons reach the runs driven here.
#include <boost/asio/post.hpp>
#include <set>

#include "common/log.h"
#include "daemon/service.h"

namespace kiln::daemon {

Status DaemonService::Recover() {
  auto runs = store_.ActiveRunsOf(options_.owner);
  if (!runs.ok()) return runs.status();
  size_t running = 0, attempts = 0;
  for (const store::ActiveRun& run : *runs) {
    if (run.run.state != dag::RunState::kRunning) continue;
    ++running;
    attempts += run.open.size();
  }
  if (running > 0) {
    log::Info("resuming " + std::to_string(running) + " runs with " + std::to_string(attempts) +
              " attempts under way");
  }
  AdoptRuns(*runs, /*at_start=*/true);
  timer_.Post([this] {
    AnswerPendingDriftAsks();
    RegisterPendingModels();
  });
  return Status::Ok();
}

void DaemonService::AdoptRuns(const std::vector<store::ActiveRun>& runs, bool at_start) {
  std::set<std::string> queued;
  for (const store::ActiveRun& active : runs) {
    const scheduler::RunRecord& run = active.run;
    if (active.owner != options_.owner || dag::IsTerminal(run.state)) continue;
    dag::PipelinePtr current;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      if (auto it = pipelines_.find(run.pipeline); it != pipelines_.end()) {
        current = it->second.entry.pipeline;
      }
    }
    if (run.state == dag::RunState::kQueued) {
      // Waiting runs start through the pipeline's queue, in their turn.
      if (current) queued.insert(run.pipeline);
      continue;
    }
    auto pipeline = PipelineForRun(
        run, current, [&] { return store_.PipelineSource(run.pipeline, run.version_hash); });
    if (!pipeline.ok()) {
      log::Error(pipeline.message() + "; it is cancelled");
      auto cancelled = store_.CancelOrphanedRun(run.id, options_.owner, pipeline.message());
      if (!cancelled.ok()) log::Error(cancelled.message());
      continue;
    }
    auto ctx = ResumeContext(active, *pipeline);
    if (!ctx.ok()) {
      log::Error("run " + ToString(run.id) + ": " + ctx.message());
      continue;
    }
    ctx->resumed_at_start = at_start;
    {
      std::lock_guard lock(mu_);
      if (!AnnounceLocked(run.id, run.pipeline, run.backfill)) continue;  // driven here already
    }
    StartRun(std::move(ctx).value(), /*wait=*/false);
  }
  if (queued.empty()) return;
  std::shared_lock pause_lock(pause_mu_);
  for (const std::string& name : queued) {
    dag::PipelinePtr pipeline;
    bool paused = false;
    {
      std::lock_guard lock(mu_);
      auto it = pipelines_.find(name);
      if (it == pipelines_.end() || !it->second.entry.pipeline) continue;
      pipeline = it->second.entry.pipeline;
      paused = it->second.paused;
    }
    if (paused) continue;
    if (Status s = StartQueued(name, pipeline, /*wait=*/false); !s.ok()) log::Error(s.message());
  }
}

void DaemonService::OnTaken(const store::Takeover& taken) {
  for (RunId id : taken.cancelled) {
    log::Info("run " + ToString(id) + " ended cancelled: the kiln run process driving it is gone");
  }
  if (taken.taken.empty()) return;
  log::Info("took over " + std::to_string(taken.taken.size()) +
            " runs from daemons whose lease expired");
  auto runs = store_.ActiveRuns(taken.taken);
  if (!runs.ok()) {
    log::Error(runs.message());
    return;
  }
  AdoptRuns(*runs);
}

void DaemonService::OnLapsed() {
  auto runs = store_.ActiveRunsOf(options_.owner);
  if (!runs.ok()) {
    log::Error(runs.message());
    return;
  }
  std::set<RunId> owned;
  for (const store::ActiveRun& r : *runs) owned.insert(r.run.id);
  std::vector<RunId> lost;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, pipeline] : run_pipeline_) {
      if (!owned.count(id)) lost.push_back(id);
    }
  }
  if (lost.empty()) return;
  log::Error(std::to_string(lost.size()) +
             " runs are driven by another daemon now; they are let go of here");
  // Posted, never awaited: the keeper's thread must not wait for a loop that may be stopping.
  boost::asio::post(io_, [this, lost] {
    for (RunId id : lost) {
      sched_.Release(id);
      Forget(id);
    }
  });
}

void DaemonService::OnCancelRequested(RunId run, const std::string& reason) {
  // Posted, never awaited (see OnLapsed). A run not driven here may be one this daemon keeps
  // waiting for its turn: its rows end now.
  boost::asio::post(io_, [this, run, reason] {
    if (sched_.IsActive(run)) {
      sched_.CancelRun(run, reason);
      return;
    }
    timer_.Post([this, run, reason] {
      {
        std::lock_guard lock(mu_);
        if (run_pipeline_.count(run)) return;  // being started: the scheduler sees the request
      }
      auto runs = store_.ActiveRuns(std::vector<RunId>{run});
      if (!runs.ok() || runs->empty() || (*runs)[0].owner != options_.owner) return;
      auto cancelled = store_.CancelOrphanedRun(run, options_.owner, reason);
      if (!cancelled.ok()) log::Error(cancelled.message());
    });
  });
}

void DaemonService::OnRunFenced(RunId run) {
  timer_.Post([this, run] { Resync(run); });
}

void DaemonService::Resync(RunId run) {
  auto runs = store_.ActiveRuns(std::vector<RunId>{run});
  if (!runs.ok()) {
    log::Error(runs.message());
    return;
  }
  OnLoop([&] {
    sched_.Release(run);
    return 0;
  });
  Forget(run);
  if (runs->empty() || (*runs)[0].owner != options_.owner) {
    log::Info("run " + ToString(run) + " is no longer driven here");
    return;
  }
  log::Info("run " + ToString(run) + " changed in the database; it goes on from its rows");
  AdoptRuns(*runs);
}

void DaemonService::SetHealthy(bool healthy) {
  std::lock_guard lock(mu_);
  healthy_ = healthy;
}

}  // namespace kiln::daemon
