// Scheduler: tasks that wait in the `waiting` state without a slot or a process (approvals):
// entering it, the deadline, and an operator's decision.
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

// An approval task became ready: it waits for an operator without a slot or a process, until
// its deadline (the task's timeout from now) if it has one.
void Scheduler::Wait(Run& run, TaskId task) {
  const dag::TaskSpec& spec = run.pipeline().task(task);
  const Instant now = clock_.Now();
  std::optional<Instant> deadline;
  if (spec.timeout > Duration(0)) deadline = now + spec.timeout;
  run.plan.SetState(task, TaskState::kWaiting);
  std::string reason = "waiting for approval";
  if (deadline) reason += "; rejected if nobody decides by " + FormatRfc3339(*deadline);
  TaskUpdate update{run.ctx.id,          spec.id,  run.attempts[Index(task)],
                    TaskState::kWaiting, now,      std::nullopt,
                    std::nullopt,        deadline, reason};
  update.waiting_for = "approval";
  TaskExtra extra;
  extra.task = task;
  Record(std::move(update), std::move(extra));
  if (deadline) StartDeadlineTimer(run, task, *deadline);
}

// Shares the task's timer with retries: a task either waits for a retry or for a decision.
void Scheduler::StartDeadlineTimer(Run& run, TaskId task, Instant deadline) {
  auto& timer = run.retry_timers[Index(task)];
  const Duration delay = std::max(deadline - clock_.Now(), Duration(0));
  timer = std::make_unique<asio::steady_timer>(io_, delay);
  timer->async_wait(
      [this, alive = alive_, run_id = run.ctx.id, task](const boost::system::error_code& ec) {
        if (!ec && *alive) OnDeadline(run_id, task);
      });
}

void Scheduler::OnDeadline(RunId run_id, TaskId task) {
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  if (run.plan.state(task) != TaskState::kWaiting) return;
  run.retry_timers[Index(task)].reset();
  const dag::TaskSpec& spec = run.pipeline().task(task);
  const std::string reason =
      "rejected: nobody decided within its timeout of " + FormatDuration(spec.timeout);
  TaskExtra extra;
  extra.detail = {{"decision", "rejected"}, {"by", "timeout"}};
  FinishTask(run, task, TaskState::kFailed, run.attempts[Index(task)], std::nullopt, reason,
             std::move(extra));
  Pump(run);
  StartStartable();
  MaybeFinishRun(run);
}

void Scheduler::Decide(RunId run_id, const std::string& task_name, bool approved,
                       std::string reason, std::vector<std::pair<std::string, std::string>> detail,
                       std::function<void(Status)> done) {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) {
    return Reply(std::move(done),
                 Status::Error(ErrorCode::kNotFound, "run " + ToString(run_id) + " is not active"));
  }
  Run& run = *it->second;
  const std::optional<TaskId> id = run.pipeline().dag.Find(task_name);
  if (!id) {
    return Reply(std::move(done),
                 Status::Error(ErrorCode::kNotFound,
                               "run " + ToString(run_id) + " has no task '" + task_name + "'"));
  }
  const TaskId task = *id;
  const dag::TaskSpec& spec = run.pipeline().task(task);
  if (spec.execution != dag::Execution::kApproval) {
    return Reply(std::move(done),
                 Status::Error(ErrorCode::kConflict, "task '" + spec.id +
                                                         "' is not an approval task (its kind is " +
                                                         spec.kind + ")"));
  }
  const TaskState current = run.plan.state(task);
  if (current != TaskState::kWaiting) {
    return Reply(std::move(done),
                 Status::Error(ErrorCode::kConflict, "task '" + spec.id +
                                                         "' is not waiting for approval (it is " +
                                                         std::string(dag::Name(current)) + ")"));
  }
  run.retry_timers[Index(task)].reset();
  TaskExtra extra;
  extra.detail = std::move(detail);
  if (done) {
    extra.committed = [done = std::move(done), name = spec.id](bool accepted) {
      done(accepted ? Status::Ok()
                    : Status::Error(ErrorCode::kConflict,
                                    "the decision on task '" + name +
                                        "' was not recorded: the run moved on meanwhile"));
    };
  }
  FinishTask(run, task, approved ? TaskState::kSuccess : TaskState::kFailed,
             run.attempts[Index(task)], std::nullopt, reason, std::move(extra));
  Pump(run);
  StartStartable();
  MaybeFinishRun(run);  // may erase the run
}

}  // namespace kiln::scheduler
