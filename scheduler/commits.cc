// Scheduler: the pending batch (group commit), what each update does once committed (launch,
// acknowledge, notify), failed commits and refused updates.
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/log.h"
#include "scheduler/scheduler.h"
#include "scheduler/scheduler_run.h"

namespace kiln::scheduler {

namespace asio = boost::asio;
using dag::TaskState;

void Scheduler::Record(TaskUpdate update, TaskExtra extra) {
  Append(std::move(update), std::move(extra));
  ScheduleFlush();
}

// Adds to the pending batch without scheduling a flush (Flush itself uses it).
void Scheduler::Append(TaskUpdate update, TaskExtra extra) {
  if (dag::IsTerminal(update.state))
    ++metrics_.tasks_finished[std::string(dag::Name(update.state))];
  auto it = observer_ ? runs_.find(update.run) : runs_.end();
  if (it != runs_.end()) {
    auto pipeline = it->second->ctx.pipeline;
    // An instance ("train[3]") is reported with its parent's spec.
    auto task = pipeline->dag.Find(update.task_id);
    if (!task) {
      if (const Run::Instance* i = it->second->instance(extra.task)) task = i->parent;
    }
    std::string results;
    if (update.state == TaskState::kSuccess && update.end && update.end->outcome) {
      results = update.end->outcome->results;
    }
    extra.note = [this, pipeline, task, name = update.task_id, run = update.run,
                  state = update.state, attempt = update.attempt, reason = update.reason,
                  results = std::move(results)] {
      if (!observer_ || !task) return;
      observer_->OnTaskState(run, pipeline->task(*task), name, state, attempt, reason);
      if (!results.empty() && observer_) {
        observer_->OnTaskResults(run, pipeline->task(*task), name, attempt, results);
      }
    };
  }
  pending_.tasks.push_back(std::move(update));
  pending_task_extras_.push_back(std::move(extra));
}

void Scheduler::Record(RunUpdate update, RunExtra extra) {
  if (dag::IsTerminal(update.state)) ++metrics_.runs_finished[std::string(dag::Name(update.state))];
  pending_.runs.push_back(std::move(update));
  pending_run_extras_.push_back(std::move(extra));
  ScheduleFlush();
}

void Scheduler::ScheduleFlush() {
  if (flush_posted_ || commit_in_flight_) return;
  flush_posted_ = true;
  asio::post(io_, [this, alive = alive_] {
    if (*alive) Flush();
  });
}

void Scheduler::Flush() {
  flush_posted_ = false;
  // Tasks queued this turn that did not start at once: record that they wait.
  for (auto [run_id, task] : newly_queued_) {
    auto it = runs_.find(run_id);
    if (it == runs_.end() || it->second->plan.state(task) != TaskState::kQueued) continue;
    const Run& run = *it->second;
    TaskExtra extra;
    extra.task = task;
    Append(TaskUpdate{run_id, run.name(task), run.attempts[Index(task)], TaskState::kQueued,
                      clock_.Now(), std::nullopt, std::nullopt, std::nullopt, ""},
           std::move(extra));
  }
  newly_queued_.clear();
  if (commit_in_flight_ || pending_.empty()) {
    MaybeShutdownDone();
    return;
  }
  commit_in_flight_ = true;
  Batch batch = std::move(pending_);
  pending_ = Batch{};
  auto task_extras = std::move(pending_task_extras_);
  pending_task_extras_.clear();
  auto run_extras = std::move(pending_run_extras_);
  pending_run_extras_.clear();
  // The batch is copied into the callback so that a failed commit can be retried unchanged.
  Batch copy = batch;
  Instant sent = clock_.Now();
  store_.Commit(std::move(copy), [this, alive = alive_, sent, batch = std::move(batch),
                                  task_extras = std::move(task_extras),
                                  run_extras = std::move(run_extras)](CommitResult result) mutable {
    if (!*alive) return;
    metrics_.commit_latency.Observe(Seconds(std::max(clock_.Now() - sent, Duration(0))));
    OnCommitted(std::move(result), std::move(batch), std::move(task_extras), std::move(run_extras));
  });
}

namespace {

// pending = front followed by pending.
template <typename T>
void PutInFront(std::vector<T> front, std::vector<T>& pending) {
  front.insert(front.end(), std::make_move_iterator(pending.begin()),
               std::make_move_iterator(pending.end()));
  pending = std::move(front);
}

}  // namespace

void Scheduler::OnCommitted(CommitResult result, Batch batch, std::vector<TaskExtra> task_extras,
                            std::vector<RunExtra> run_extras) {
  if (!result.status.ok()) {
    ++metrics_.commits_failed;
    if (!failing_since_) failing_since_ = clock_.Now();
    retry_delay_ = retry_delay_ == Duration(0)
                       ? options_.commit_retry_delay
                       : std::min(retry_delay_ * 2, options_.max_commit_retry_delay);
    log::Error("committing " + std::to_string(batch.tasks.size() + batch.runs.size()) +
               " state changes failed, retrying in " + FormatDuration(retry_delay_) + ": " +
               result.status.message());
    // Put the batch back in front of whatever accumulated meanwhile, keeping order. Nothing of
    // it was written, so nothing was announced, and nothing launched unless the runner starts
    // before the commit (those already run; no more do until a commit works again). What
    // accumulates meanwhile is bounded by the work under way: no start commits, so nothing new
    // runs.
    PutInFront(std::move(batch.tasks), pending_.tasks);
    PutInFront(std::move(batch.runs), pending_.runs);
    PutInFront(std::move(task_extras), pending_task_extras_);
    PutInFront(std::move(run_extras), pending_run_extras_);
    auto timer = std::make_shared<asio::steady_timer>(io_, retry_delay_);
    timer->async_wait([this, alive = alive_, timer](const boost::system::error_code&) {
      if (!*alive) return;
      commit_in_flight_ = false;
      Flush();
    });
    return;
  }
  if (failing_since_) log::Info("committing state changes works again");
  failing_since_.reset();
  retry_delay_ = Duration(0);
  commit_in_flight_ = false;
  std::vector<bool> task_refused(batch.tasks.size(), false);
  std::vector<bool> task_rejected(batch.tasks.size(), false);
  std::vector<bool> run_refused(batch.runs.size(), false);
  std::vector<RunId> fenced_runs;
  for (const Refusal& r : result.refused) {
    ++metrics_.updates_refused;
    if (r.run) {
      if (r.index >= batch.runs.size()) continue;
      run_refused[r.index] = true;
      if (!r.rejected) fenced_runs.push_back(batch.runs[r.index].run);
      if (r.rejected) {
        log::Error("run " + ToString(batch.runs[r.index].run) + ": its state change to " +
                   std::string(dag::Name(batch.runs[r.index].state)) +
                   " could not be recorded: " + r.message);
      }
      continue;
    }
    if (r.index >= batch.tasks.size()) continue;
    task_refused[r.index] = true;
    task_rejected[r.index] = r.rejected;
    if (r.rejected) {
      OnRejected(batch.tasks[r.index], task_extras[r.index], r.message);
    } else {
      fenced_runs.push_back(batch.tasks[r.index].run);
    }
  }
  for (size_t k = 0; k < batch.runs.size(); ++k) {
    if (run_extras[k].note) run_extras[k].note(!run_refused[k]);
  }
  for (size_t k = 0; k < batch.tasks.size(); ++k) {
    const TaskUpdate& u = batch.tasks[k];
    TaskExtra& extra = task_extras[k];
    // A fenced end is in the database as the supervisor reported it (the row had moved on, or
    // the run is driven elsewhere): nothing to keep. A rejected one waits for its replacement.
    if (extra.ack && !task_rejected[k]) {
      runner_.Recorded(u.run, extra.task, u.attempt);
    }
    if (extra.committed) extra.committed(!task_refused[k]);
    if (extra.launched_early) StartSettled(u, extra.task, !task_refused[k], extra.handed_out);
    if (task_refused[k]) {
      // A start launched while it committed, and refused: its process must not run on.
      if (extra.launched_early) StopUnrecorded(u, extra.task);
      continue;
    }
    if (extra.note) extra.note();
    if (extra.launch && !extra.launched_early) {
      // The run may have been released and added again meanwhile: its units then come from the
      // rows, and this one must still be the unit the start was written for.
      if (auto it = runs_.find(u.run); it != runs_.end() && SameUnit(*it->second, extra.task, u)) {
        Launch(*it->second, extra.task, u.attempt);
      }
    }
  }
  if (observer_) {
    std::sort(fenced_runs.begin(), fenced_runs.end());
    fenced_runs.erase(std::unique(fenced_runs.begin(), fenced_runs.end()), fenced_runs.end());
    for (RunId id : fenced_runs) observer_->OnRunFenced(id);
  }
  if (!pending_.empty()) ScheduleFlush();
  MaybeShutdownDone();
}

// The commit of a start launched while it committed (or handed out in it) is over: its runner
// learns that it is durable, or that it was refused (and it is stopped next).
void Scheduler::StartSettled(const TaskUpdate& update, TaskId task, bool recorded,
                             bool handed_out) {
  if (!recorded) {
    runner_.StartRefused(update.run, task, update.attempt);
  } else if (handed_out) {
    // Its runner holds it by attempt, whatever became of the run meanwhile (released, ended by
    // a fast end, retried): it always learns how its commit went.
    runner_.StartRecorded(update.run, task, update.attempt);
  }
  auto it = runs_.find(update.run);
  if (it == runs_.end() || !SameUnit(*it->second, task, update)) return;
  Run& run = *it->second;
  const size_t i = Index(task);
  if (run.unrecorded[i] == update.attempt) run.unrecorded[i] = 0;
  // Also when its process has ended already: its runner may keep the end for a later owner.
  if (recorded && !handed_out && run.attempts[i] == update.attempt) {
    runner_.StartRecorded(update.run, task, update.attempt);
  }
}

// A start that was launched while its batch committed and then refused or rejected: the process
// is stopped (its end, if it comes, is stale or fenced).
void Scheduler::StopUnrecorded(const TaskUpdate& update, TaskId task) {
  auto it = runs_.find(update.run);
  // A run let go meanwhile (another daemon drives it): the process is still this one's start.
  if (it != runs_.end()) {
    if (!SameUnit(*it->second, task, update)) return;
    const Run& run = *it->second;
    const size_t i = Index(task);
    if (!run.launched[i] || run.attempts[i] != update.attempt) return;
  }
  log::Warn("run " + ToString(update.run) + " task '" + update.task_id + "' attempt " +
            std::to_string(update.attempt) +
            ": its start was not recorded; stopping the process started meanwhile");
  runner_.Kill(update.run, task);
}

bool Scheduler::SameUnit(const Run& run, TaskId task, const TaskUpdate& update) const {
  return Index(task) < run.plan.units() && run.name(task) == update.task_id;
}

// The store could not write `update` (its values), while the rest of its batch committed.
void Scheduler::OnRejected(const TaskUpdate& update, const TaskExtra& extra,
                           const std::string& message) {
  log::Error("run " + ToString(update.run) + " task '" + update.task_id + "' attempt " +
             std::to_string(update.attempt) + ": its change to " +
             std::string(dag::Name(update.state)) + " could not be recorded: " + message);
  auto it = runs_.find(update.run);
  if (it == runs_.end() || extra.replacement || !SameUnit(*it->second, extra.task, update)) return;
  if (update.start) {
    // Not started: the task fails without an attempt (the row keeps the previous attempt).
    Run& run = *it->second;
    const size_t i = Index(extra.task);
    const std::string reason = "its state could not be recorded: " + message;
    if (!run.running[i] || run.attempts[i] != update.attempt) return;
    if (extra.launched_early) StopUnrecorded(update, extra.task);
    FreeSlot(run, i);
    run.attempts[i] = update.attempt - 1;
    FinishTask(run, extra.task, TaskState::kFailed, run.attempts[i], std::nullopt, reason);
    Pump(run);
    StartStartable();
    MaybeFinishRun(run);
    return;
  }
  if (!update.end) return;
  // The attempt did end, and the run has moved on from that end in memory (its downstream may
  // have started in the same commit): the end is recorded again with the state decided and
  // nothing but safe values, the error in its reason, so that the rows and the scheduler agree.
  AttemptEnd end;
  end.started_at = update.end->started_at;
  end.reason = std::string(dag::Name(update.state)) +
               " (its details could not be recorded: " + message + ")";
  TaskExtra replacement;
  replacement.task = extra.task;
  replacement.ack = extra.ack;
  replacement.replacement = true;
  Record(TaskUpdate{update.run, update.task_id, update.attempt, update.state, update.at,
                    std::nullopt, end, update.retry_at, end.reason},
         std::move(replacement));
}

}  // namespace kiln::scheduler
