#include "scheduler/scheduler.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/log.h"
#include "scheduler/retry.h"
#include "scheduler/run_plan.h"
#include "scheduler/scheduler_run.h"

namespace kiln::scheduler {

namespace asio = boost::asio;
using dag::TaskState;

Scheduler::Scheduler(asio::io_context& io, StateStore& store, TaskRunner& runner, Clock& clock,
                     SchedulerOptions options)
    : io_(io),
      store_(store),
      runner_(runner),
      clock_(clock),
      options_(std::move(options)),
      pools_(options_.pools, options_.max_parallel_tasks),
      alive_(std::make_shared<bool>(true)) {}

Scheduler::~Scheduler() { *alive_ = false; }

void Scheduler::AddRun(RunContext context) {
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  RunId id = context.id;
  auto run = std::make_unique<Run>(std::move(context));
  const RunContext& ctx = run->ctx;
  const std::string& name = ctx.pipeline->spec.name;
  run->dir = options_.runs_dir / name / ToString(id);
  for (const auto& [param, value] : ctx.params) run->values["params." + param] = dag::ToText(value);
  run->values["run.id"] = ToString(id);
  run->values["run.dir"] = run->dir.string();
  run->values["run.logical_date"] = FormatRfc3339(ctx.logical_date);
  run->values["run.data_interval_start"] = FormatRfc3339(ctx.data_interval_start);
  run->values["run.data_interval_end"] = FormatRfc3339(ctx.data_interval_end);
  run->values["run.triggered_by"] = ctx.triggered_by;
  run->values["pipeline.name"] = name;
  auto [it, inserted] = runs_.try_emplace(id, std::move(run));
  if (!inserted) {
    log::Error("run " + ToString(id) + " is already active; second start ignored");
    return;
  }
  finishing_.erase(id);
  Run& r = *it->second;
  Instant now = clock_.Now();
  if (!r.ctx.resumed) Record(RunUpdate{id, dag::RunState::kRunning, now, ""});
  // A retry: pending tasks that kept upstreams already decide end now (before any cancel, so
  // that their rows are not left pending).
  RecordDecided(r, r.plan.TakeInitialChanges(), now);
  // A resumed run: attempts under way are adopted, retries and approvals wait for their time.
  const size_t n = r.plan.units();
  for (size_t i = 0; i < n && r.ctx.resumed; ++i) {
    const auto task = static_cast<TaskId>(i);
    if (r.plan.IsExpanded(task)) continue;  // runs as its instances, holding no attempt
    if (r.plan.state(task) == TaskState::kRunning) {
      AdoptTask(r, task);
    } else if (r.plan.state(task) == TaskState::kUpForRetry) {
      std::optional<Instant> due = r.ctx.retry_at.empty() ? std::nullopt : r.ctx.retry_at[i];
      StartRetryTimer(r, task, std::max(due.value_or(now) - now, Duration(0)));
    } else if (r.plan.state(task) == TaskState::kWaiting) {
      // The deadline set when it began to wait holds: a restart does not extend it.
      std::optional<Instant> deadline = r.ctx.retry_at.empty() ? std::nullopt : r.ctx.retry_at[i];
      if (r.spec(task).execution == dag::Execution::kWait) {
        StartWaiting(r, task, deadline, /*resumed=*/true);
      } else if (deadline) {
        StartDeadlineTimer(r, task, *deadline);
      }
    }
  }
  OpenWindows(r);
  if (stopping_) {
    CancelRun(id, stop_reason_);
    return;
  }
  if (r.ctx.cancel_reason) {
    CancelRun(id, *r.ctx.cancel_reason);
    return;
  }
  Pump(r);
  StartStartable();
  MaybeFinishRun(r);
}

void Scheduler::AdoptTask(Run& run, TaskId task) {
  const size_t i = Index(task);
  const dag::TaskSpec& spec = run.spec(task);
  run.running[i] = true;
  run.launched[i] = true;
  ++run.running_count;
  ++running_attempts_;
  ++metrics_.attempts_adopted;
  run.tickets[i] =
      Ticket{run.ctx.id, task, spec.pool, spec.slots, spec.priority, run.ctx.background};
  run.holds[i] = pools_.Occupy(run.tickets[i]);
  AdoptRequest request;
  request.run = run.ctx.id;
  request.task = task;
  request.attempt = run.attempts[i];
  request.task_id = run.name(task);
  request.supervisor = run.ctx.supervisors.empty() ? "" : run.ctx.supervisors[i];
  request.timeout = spec.timeout;
  request.at_start = run.ctx.resumed_at_start;
  const RunId id = run.ctx.id;
  const int attempt = request.attempt;
  if (!run.ctx.recorded.empty() && run.ctx.recorded[i]) {
    asio::post(io_, [this, alive = alive_, id, task, attempt, o = *run.ctx.recorded[i]] {
      if (*alive) OnAttemptExit(id, task, attempt, o);
    });
    return;
  }
  runner_.Adopt(request, [this, alive = alive_, id, task, attempt](AttemptOutcome outcome) {
    if (!*alive) return;
    if (outcome.never_launched) {
      Relaunch(id, task, attempt, outcome.error);
      return;
    }
    OnAttemptExit(id, task, attempt, outcome);
  });
}

// An adopted attempt of which nothing runs and whose supervisor has no end: its start is
// recorded, so it starts now as the same attempt (not a retry: it never ran).
void Scheduler::Relaunch(RunId id, TaskId task, int attempt, const std::string& why) {
  auto it = runs_.find(id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  const size_t i = Index(task);
  if (!run.running[i] || run.attempts[i] != attempt || !run.launched[i]) return;
  // Left for the next daemon, which finds it the same way.
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  log::Warn("run " + ToString(id) + ": attempt " + std::to_string(attempt) + " of " +
            run.name(task) + ": " + why + "; starting it now");
  run.launched[i] = false;
  --running_attempts_;
  ++metrics_.attempts_relaunched;
  Launch(run, task, attempt);
}

void Scheduler::Release(RunId run_id) {
  finishing_.erase(run_id);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  ++metrics_.runs_released;
  pools_.RemoveRun(run_id);
  for (size_t i = 0; i < run.running.size(); ++i) {
    if (run.running[i]) FreeSlot(run, i);
    run.retry_timers[i].reset();
  }
  runs_.erase(it);
  StartStartable();  // its slots may let other runs' tasks start
  MaybeShutdownDone();
}

// A running task gives back its slot (its attempt ended, or its run was released).
void Scheduler::FreeSlot(Run& run, size_t i) {
  run.running[i] = false;
  if (run.launched[i]) --running_attempts_;
  run.launched[i] = false;
  --run.running_count;
  if (run.holds[i]) pools_.Release(run.tickets[i]);
  run.holds[i] = false;
}

void Scheduler::Shutdown(StopMode mode, const std::string& reason, std::function<void()> done) {
  stopping_ = true;
  stop_mode_ = mode;
  stop_reason_ = reason;
  on_stopped_ = std::move(done);
  if (mode == StopMode::kCancel) {
    std::vector<RunId> ids;
    for (const auto& [id, run] : runs_) ids.push_back(id);
    for (RunId id : ids) CancelRun(id, reason);
  } else {
    // Nothing new: waiting retries and queued tasks stay as recorded, for the next daemon.
    for (auto& [id, run] : runs_) {
      for (auto& timer : run->retry_timers) timer.reset();
      pools_.RemoveRun(id);
    }
  }
  if (!pending_.empty()) ScheduleFlush();
  MaybeShutdownDone();
}

void Scheduler::MaybeShutdownDone() {
  if (!stopping_ || !on_stopped_ || commit_in_flight_ || flush_posted_ || !pending_.empty() ||
      lookups_in_flight_ > 0) {
    return;
  }
  if (stop_mode_ == StopMode::kCancel && !runs_.empty()) return;
  auto done = std::move(on_stopped_);
  on_stopped_ = nullptr;
  done();
}

void Scheduler::CancelRun(RunId run_id, const std::string& reason) {
  auto it = runs_.find(run_id);
  if (it == runs_.end() || it->second->cancelling) return;
  Run& run = *it->second;
  run.cancelling = true;
  pools_.RemoveRun(run_id);
  Instant now = clock_.Now();
  for (TaskId task : run.plan.CancelAll()) {
    size_t i = Index(task);
    run.retry_timers[i].reset();
    if (run.running[i]) {
      // Ends when its process is gone (or, if not launched yet, when its start is durable).
      if (run.launched[i]) runner_.Kill(run_id, task);
      continue;
    }
    TaskExtra extra;
    extra.task = task;
    Record(TaskUpdate{run_id, run.name(task), run.attempts[i], TaskState::kCancelled, now,
                      std::nullopt, std::nullopt, std::nullopt, reason},
           std::move(extra));
  }
  MaybeFinishRun(run);
  StartStartable();  // tickets of other runs may have waited behind removed ones
}

void Scheduler::Pump(Run& run) {
  for (auto ready = run.plan.TakeReady(); !ready.empty(); ready = run.plan.TakeReady()) {
    // The upstream that decided them ended in this turn (or the run was just added).
    Instant now = clock_.Now();
    for (TaskId task : ready) {
      run.ready_at[Index(task)] = now;
      const dag::TaskSpec& spec = run.spec(task);
      if (spec.for_each && run.instance(task) == nullptr) {
        StartMapping(run, task);
        continue;
      }
      if (spec.execution != dag::Execution::kProcess) {
        Wait(run, task);
        continue;
      }
      Ticket ticket{run.ctx.id, task, spec.pool, spec.slots, spec.priority, run.ctx.background};
      if (auto why = pools_.Reject(ticket)) {
        FinishTask(run, task, TaskState::kFailed, 0, std::nullopt, *why);
        continue;
      }
      if (!TakePlace(run, task)) continue;  // an instance beyond its task's max_parallel
      Queue(run, ticket);
    }
  }
}

void Scheduler::Queue(Run& run, Ticket ticket) {
  const TaskId task = ticket.task;
  pools_.Push(std::move(ticket));
  run.plan.SetState(task, TaskState::kQueued);
  // A task waiting for a slot is written queued; an instance is not (its row stays pending until
  // it starts): 10,000 instances expand in one statement, not 10,000. Either is decided again
  // when a run is resumed.
  if (run.instance(task) == nullptr) newly_queued_.emplace_back(run.ctx.id, task);
}

Status Scheduler::SetPools(std::map<std::string, int> pools, int max_parallel_tasks) {
  if (auto why = pools_.Resize(pools, max_parallel_tasks)) {
    return Status::Error(ErrorCode::kConflict, *why);
  }
  options_.pools = std::move(pools);
  options_.max_parallel_tasks = max_parallel_tasks;
  StartStartable();
  return Status::Ok();
}

void Scheduler::StartStartable() {
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  for (Ticket& ticket : pools_.TakeStartable()) {
    auto it = runs_.find(ticket.run);
    if (it == runs_.end() || it->second->plan.state(ticket.task) != TaskState::kQueued) {
      pools_.Release(ticket);
      continue;
    }
    Run& run = *it->second;
    size_t i = Index(ticket.task);
    int attempt = run.attempts[i] + 1;
    run.attempts[i] = attempt;
    run.plan.SetState(ticket.task, TaskState::kRunning);
    run.running[i] = true;
    run.holds[i] = true;
    run.tickets[i] = ticket;
    ++run.running_count;
    TaskExtra extra;
    extra.task = ticket.task;
    extra.launch = true;
    // A runner whose attempts cannot outlive an unrecorded start launches while the start commits
    // (docs/design.md, "Launching while the start commits"); not while commits fail, so that
    // nothing runs unrecorded for longer than one commit.
    extra.launched_early =
        !failing_since_ && !LooksUpCache(run, ticket.task) && runner_.StartsBeforeCommit();
    if (extra.launched_early) {
      run.unrecorded[i] = attempt;
      LaunchEarly(run.ctx.id, ticket.task, attempt);
    }
    AttemptStart start{LogPath(run, ticket.task, attempt).string(), options_.lease_owner,
                       std::nullopt};
    // A start handed to other machines goes out in its own commit, and settles like one
    // launched while it commits.
    if (!extra.launched_early && !failing_since_ && runner_.HandsOut(run.spec(ticket.task).pool) &&
        !LooksUpCache(run, ticket.task) && HandOut(run, ticket.task, attempt, start)) {
      extra.launched_early = true;
      extra.handed_out = true;
      run.unrecorded[i] = attempt;
    }
    Record(TaskUpdate{run.ctx.id, run.name(ticket.task), attempt, TaskState::kRunning, clock_.Now(),
                      std::move(start), std::nullopt, std::nullopt, ""},
           std::move(extra));
  }
}

// Posted, not called: a launch that fails at once ends its attempt, which may end the run, and
// the callers of StartStartable still hold it.
void Scheduler::LaunchEarly(RunId id, TaskId task, int attempt) {
  asio::post(io_, [this, alive = alive_, id, task, attempt] {
    if (!*alive) return;
    auto it = runs_.find(id);
    if (it == runs_.end()) return;
    Launch(*it->second, task, attempt);
    MaybeShutdownDone();
  });
}

void Scheduler::OnAttemptExit(RunId run_id, TaskId task, int attempt,
                              const AttemptOutcome& outcome) {
  // While leaving, ends are not recorded: the supervisor keeps them for the next daemon.
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;  // released: its supervisor keeps the end for the new owner
  Run& run = *it->second;
  size_t i = Index(task);
  if (!run.running[i] || run.attempts[i] != attempt) {
    runner_.Recorded(run_id, task, attempt);  // a stale report: nothing to keep
    return;
  }
  FreeSlot(run, i);
  if (outcome.started) {
    metrics_.task_duration.Observe(
        Seconds(std::max(outcome.ended_at - outcome.started_at, Duration(0))));
  }
  if (outcome.lost) ++metrics_.attempts_lost;

  const dag::TaskSpec& spec = run.spec(task);
  const std::string name = run.name(task);
  AttemptEnd end{outcome.exit_code, outcome.signal,     outcome.timed_out,       outcome.started_at,
                 outcome.cpu,       outcome.max_rss_kb, Describe(spec, outcome), outcome};
  TaskExtra ack;
  ack.task = task;
  ack.ack = true;
  // The database asked for the run's cancel and the supervisor stopped the attempt on its own
  // before this daemon saw the request: the run is cancelled, not retried.
  if (outcome.stop_cause == "cancel" && !run.cancelling) {
    run.plan.Finish(task, TaskState::kCancelled);
    end.reason = "cancelled";
    Record(TaskUpdate{run_id, name, attempt, TaskState::kCancelled, clock_.Now(), std::nullopt, end,
                      std::nullopt, "run cancelled"},
           ack);
    CancelRun(run_id, "run cancelled");
    return;
  }
  if (auto mark = run.marks.extract(i); !mark.empty()) {
    // The operator's state and reason, not the outcome of the kill. Recorded even when the run
    // was cancelled meanwhile: the mark was decided first.
    Run::Mark m = std::move(mark.mapped());
    end.reason = m.reason;
    FinishTask(run, task, m.state, attempt, std::move(end), m.reason, ack);
    Pump(run);
  } else if (run.plan.state(task) == TaskState::kCancelled) {
    end.reason = "cancelled";
    Record(TaskUpdate{run_id, name, attempt, TaskState::kCancelled, clock_.Now(), std::nullopt, end,
                      std::nullopt, "run cancelled"},
           ack);
  } else {
    TaskState state = Classify(spec, outcome);
    // Counted within this round: a retried run gives each re-run task its full budget again.
    const int round_attempt = attempt - run.round_base[i];
    if (state == TaskState::kFailed && !run.cancelling && ShouldRetry(spec.retry, round_attempt)) {
      Duration delay = RetryDelay(spec.retry, round_attempt);
      Instant retry_at = clock_.Now() + delay;
      run.plan.SetState(task, TaskState::kUpForRetry);
      std::string reason = end.reason + "; retrying in " + FormatDuration(delay);
      Record(TaskUpdate{run_id, name, attempt, TaskState::kUpForRetry, clock_.Now(), std::nullopt,
                        end, retry_at, reason},
             ack);
      StartRetryTimer(run, task, delay);
    } else {
      std::string reason = end.reason;
      if (state == TaskState::kSuccess && spec.cache) end.cache_key = CacheKeyOf(run, task);
      FinishTask(run, task, state, attempt, std::move(end), reason, ack);
      Pump(run);
    }
  }
  StartStartable();
  MaybeFinishRun(run);
}

void Scheduler::StartRetryTimer(Run& run, TaskId task, Duration delay) {
  auto& timer = run.retry_timers[Index(task)];
  timer = std::make_unique<asio::steady_timer>(io_, delay);
  timer->async_wait(
      [this, alive = alive_, run_id = run.ctx.id, task](const boost::system::error_code& ec) {
        if (!ec && *alive) OnRetryDue(run_id, task);
      });
}

void Scheduler::OnRetryDue(RunId run_id, TaskId task) {
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  if (run.plan.state(task) != TaskState::kUpForRetry) return;
  run.retry_timers[Index(task)].reset();
  const dag::TaskSpec& spec = run.spec(task);
  pools_.Push(Ticket{run_id, task, spec.pool, spec.slots, spec.priority, run.ctx.background});
  run.plan.SetState(task, TaskState::kQueued);
  newly_queued_.emplace_back(run.ctx.id, task);
  StartStartable();
  ScheduleFlush();  // records it as queued if it has to wait for a slot
}

void Scheduler::FinishTask(Run& run, TaskId task, TaskState state, int attempt,
                           std::optional<AttemptEnd> end, const std::string& reason,
                           TaskExtra extra) {
  const TaskState before = run.plan.state(task);
  auto changes = run.plan.Finish(task, state);
  if (run.instance(task) != nullptr) LeavePlace(run, task, before);
  Instant now = clock_.Now();
  extra.task = task;
  TaskUpdate update{run.ctx.id,   run.name(task), attempt,      state, now,
                    std::nullopt, std::move(end), std::nullopt, reason};
  update.detail = std::move(extra.detail);
  Record(std::move(update), std::move(extra));
  RecordDecided(run, changes, now);
}

void Scheduler::RecordDecided(Run& run, const std::vector<Change>& changes, Instant now) {
  for (const Change& c : changes) {
    std::string why = run.plan.IsExpanded(c.task)
                          ? InstancesEnded(run, c.task)
                          : "upstream '" + run.name(c.cause) + "' " +
                                std::string(dag::Name(run.plan.state(c.cause)));
    TaskExtra extra;
    extra.task = c.task;
    Record(TaskUpdate{run.ctx.id, run.name(c.task), run.attempts[Index(c.task)], c.state, now,
                      std::nullopt, std::nullopt, std::nullopt, why},
           std::move(extra));
  }
}

void Scheduler::MarkTask(RunId run_id, TaskId task, TaskState state, std::string reason,
                         std::function<void(Status)> done) {
  if (state != TaskState::kSuccess && state != TaskState::kFailed) {
    Reply(std::move(done), Status::Error(ErrorCode::kInvalidArgument,
                                         "mark state '" + std::string(dag::Name(state)) +
                                             "' is not allowed: mark a task success or failed"));
    return;
  }
  auto it = runs_.find(run_id);
  if (it == runs_.end()) {
    Reply(std::move(done),
          Status::Error(ErrorCode::kNotFound, "run " + ToString(run_id) + " is not active"));
    return;
  }
  Run& run = *it->second;
  const size_t i = Index(task);
  if (i >= run.plan.units()) {
    Reply(std::move(done),
          Status::Error(ErrorCode::kNotFound,
                        "run " + ToString(run_id) + " has no task #" + std::to_string(i)));
    return;
  }
  const std::string name = run.name(task);
  const TaskState current = run.plan.state(task);
  if (run.plan.IsExpanded(task) && !dag::IsTerminal(current)) {
    Reply(std::move(done),
          Status::Error(ErrorCode::kConflict, "task '" + name + "' runs as " +
                                                  std::to_string(run.plan.mapped(task)->total) +
                                                  " instances; mark them one by one ('" + name +
                                                  "[0]', ...)"));
    return;
  }
  if (dag::IsTerminal(current)) {
    Reply(std::move(done), Status::Error(ErrorCode::kConflict,
                                         "task '" + name + "' has already ended (" +
                                             std::string(dag::Name(current)) +
                                             "); mark it once the run has ended, or retry it"));
    return;
  }
  if (run.running[i]) {
    auto [mark, inserted] =
        run.marks.try_emplace(static_cast<uint32_t>(i), Run::Mark{state, reason});
    if (!inserted) {
      Reply(std::move(done),
            Status::Error(ErrorCode::kConflict, "task '" + name + "' is already being marked " +
                                                    std::string(dag::Name(mark->second.state)) +
                                                    "; its attempt is being stopped"));
      return;
    }
    // Ends in OnAttemptExit; an attempt whose start is still being written is stopped when the
    // start is durable (OnCommitted).
    if (run.launched[i]) runner_.Kill(run_id, task);
    Reply(std::move(done), Status::Ok());
    return;
  }
  // Pending, queued, up_for_retry or waiting: nothing runs, so it ends now.
  if (current == TaskState::kQueued) pools_.Remove(run_id, task);
  run.retry_timers[i].reset();  // cancels a pending retry; OnRetryDue also checks the state
  FinishTask(run, task, state, run.attempts[i], std::nullopt, reason);
  Pump(run);
  StartStartable();
  Reply(std::move(done), Status::Ok());
  MaybeFinishRun(run);  // may erase the run
}

void Scheduler::Reply(std::function<void(Status)> done, Status status) {
  if (!done) return;
  asio::post(io_, [done = std::move(done), status = std::move(status)]() mutable {
    done(std::move(status));
  });
}

MetricsSnapshot Scheduler::Metrics() const {
  MetricsSnapshot snapshot = metrics_;
  for (const auto& [pool, size] : pools_.sizes()) {
    snapshot.pools[pool] =
        PoolFigures{size, pools_.in_use(pool), static_cast<size_t>(pools_.waiting(pool))};
  }
  snapshot.active_runs = runs_.size();
  snapshot.running_attempts = running_attempts_;
  return snapshot;
}

void Scheduler::MaybeFinishRun(Run& run) {
  if (!run.plan.done() || run.running_count > 0) return;
  RunId id = run.ctx.id;
  dag::RunState outcome = run.plan.Outcome();
  if (options_.task_user.switch_user) runner_.CloseRunFolder(run.dir);
  finishing_.insert(id);
  RunExtra extra;
  extra.note = [this, id, outcome](bool accepted) {
    finishing_.erase(id);
    if (accepted && observer_) observer_->OnRunFinished(id, outcome);
  };
  Record(RunUpdate{id, outcome, clock_.Now(), ""}, std::move(extra));
  runs_.erase(id);
}

void Scheduler::Record(TaskUpdate update) { Record(std::move(update), TaskExtra()); }

void Scheduler::Record(RunUpdate update) { Record(std::move(update), RunExtra()); }

void Scheduler::FinishTask(Run& run, TaskId task, TaskState state, int attempt,
                           std::optional<AttemptEnd> end, const std::string& reason) {
  FinishTask(run, task, state, attempt, std::move(end), reason, TaskExtra());
}

}  // namespace kiln::scheduler
