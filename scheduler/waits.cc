// Scheduler: tasks that wait in the `waiting` state without a slot or a process: approvals
// (entering the wait, the deadline, an operator's decision) and waits for a file, a URL or an
// instant (kind = "wait": looks through SchedulerOptions::probe, one timer per task).
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

// An approval or wait task became ready: it waits without a slot or a process, until its
// deadline (the task's timeout from now) if it has one.
void Scheduler::Wait(Run& run, TaskId task) {
  const dag::TaskSpec& spec = run.spec(task);
  const Instant now = clock_.Now();
  std::optional<Instant> deadline;
  if (spec.timeout > Duration(0)) deadline = now + spec.timeout;
  if (spec.execution == dag::Execution::kWait) {
    StartWaiting(run, task, deadline, /*resumed=*/false);
    return;
  }
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
  const dag::TaskSpec& spec = run.spec(task);
  const std::string reason =
      "rejected: nobody decided within its timeout of " + FormatDuration(spec.timeout);
  TaskExtra extra;
  extra.detail = {{"decision", "rejected"}, {"by", "timeout"}, {"note", ""}};
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
  const dag::TaskSpec& spec = run.spec(task);
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

namespace {

std::string Describe(const std::string& what, const std::string& target) {
  if (what == "file") return "file '" + target + "'";
  if (what == "http") return "GET " + target;
  return target;
}

const std::string& OptionText(const dag::TaskSpec& spec, std::string_view key) {
  static const std::string kNone;
  const dag::Value* v = spec.options.Find(key);
  return v != nullptr && v->type == dag::Value::Type::kString ? v->string : kNone;
}

}  // namespace

// A wait task (kind = "wait") enters the wait, or a resumed run waits on (its row is waiting
// already; the deadline is the one recorded). The first look is at once; for = "time" needs none.
void Scheduler::StartWaiting(Run& run, TaskId task, std::optional<Instant> deadline, bool resumed) {
  const dag::TaskSpec& spec = run.spec(task);
  const size_t i = Index(task);
  const Instant now = clock_.Now();
  Run::WaitState w;
  w.what = OptionText(spec, "for");
  w.deadline = deadline;
  w.every = std::chrono::seconds(30);
  if (auto every = ParseDuration(OptionText(spec, "every")); every.ok()) w.every = *every;
  const std::string key = w.what == "file" ? "path" : w.what == "http" ? "url" : "at";
  dag::TemplateValues values = run.values;
  values["task.id"] = spec.id;
  values["task.attempt"] = std::to_string(run.attempts[i]);
  std::string error;
  if (auto rendered = dag::Render(OptionText(spec, key), values, dag::Quoting::kNone);
      rendered.ok()) {
    w.target = std::move(rendered).value();
  } else {
    error = key + ": " + rendered.message();
  }
  if (error.empty() && w.what == "time") {
    if (auto at = ParseRfc3339(w.target); at.ok()) {
      w.at = *at;
    } else {
      error = "at: " + at.message();
    }
  }
  if (error.empty() && w.what != "time" && !options_.probe) {
    error = "this runner cannot look at files or URLs for a wait";
  }
  if (!error.empty() && !resumed) {
    FinishTask(run, task, TaskState::kFailed, run.attempts[i], std::nullopt,
               "cannot wait: " + error);
    return;
  }
  if (!resumed) {
    run.plan.SetState(task, TaskState::kWaiting);
    std::string reason = "waiting for " + Describe(w.what, w.target);
    if (w.what == "time") reason = "waiting until " + w.target;
    if (deadline) reason += "; fails if not done by " + FormatRfc3339(*deadline);
    TaskUpdate update{run.ctx.id,          spec.id,  run.attempts[i],
                      TaskState::kWaiting, now,      std::nullopt,
                      std::nullopt,        deadline, reason};
    update.waiting_for = w.what;
    TaskExtra extra;
    extra.task = task;
    Record(std::move(update), std::move(extra));
  } else if (!error.empty()) {
    w.seen = error;  // the timer ends it (below), outside the resume loop
    w.what = "broken";
  }
  const std::optional<Instant> at = w.at;
  const bool broken = w.what == "broken";
  run.waits[static_cast<uint32_t>(i)] = std::move(w);
  ArmWaitTimer(run, task, broken ? now : at.value_or(now));
}

// The task's one timer: the next look (or `at`), never past its deadline.
void Scheduler::ArmWaitTimer(Run& run, TaskId task, Instant when) {
  Run::WaitState& w = run.waits[Index(task)];
  w.due = Run::WaitState::Due::kLook;
  if (w.at && when >= *w.at) w.due = Run::WaitState::Due::kAt;
  if (w.deadline && when >= *w.deadline) {
    when = *w.deadline;
    w.due = Run::WaitState::Due::kDeadline;
  }
  auto& timer = run.retry_timers[Index(task)];
  timer = std::make_unique<asio::steady_timer>(io_, std::max(when - clock_.Now(), Duration(0)));
  timer->async_wait(
      [this, alive = alive_, run_id = run.ctx.id, task](const boost::system::error_code& ec) {
        if (!ec && *alive) OnWaitTimer(run_id, task);
      });
}

void Scheduler::OnWaitTimer(RunId run_id, TaskId task) {
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  auto w_it = run.waits.find(static_cast<uint32_t>(Index(task)));
  if (run.plan.state(task) != TaskState::kWaiting || w_it == run.waits.end()) return;
  Run::WaitState& w = w_it->second;
  run.retry_timers[Index(task)].reset();
  std::optional<std::pair<TaskState, std::string>> end;
  if (w.what == "broken") {
    end = {TaskState::kFailed, "cannot wait: " + w.seen};
  } else if (w.due == Run::WaitState::Due::kAt) {
    end = {TaskState::kSuccess, "the time " + w.target + " has come"};
  } else if (w.due == Run::WaitState::Due::kDeadline) {
    const std::string waited =
        w.what == "time" ? "the time " + w.target + " did not come"
                         : Describe(w.what, w.target) +
                               (w.what == "file" ? " did not appear" : " did not answer 2xx");
    end = {TaskState::kFailed, "gave up waiting: " + waited + " within its timeout of " +
                                   FormatDuration(run.spec(task).timeout) +
                                   (w.seen.empty() ? "" : " (last look: " + w.seen + ")")};
  }
  if (end) {
    run.waits.erase(w_it);
    FinishTask(run, task, end->first, run.attempts[Index(task)], std::nullopt, end->second);
    Pump(run);
    StartStartable();
    MaybeFinishRun(run);  // may erase the run
    return;
  }
  w.generation = ++wait_generation_;
  // A look may take long (a URL that does not answer): the deadline holds meanwhile.
  if (w.deadline) ArmWaitTimer(run, task, *w.deadline);
  WaitProbe probe{w.what, w.target, run.pipeline().spec.file.parent_path(),
                  RunIdentity(options_.task_user, options_.task_uids, Value(run.ctx.id))};
  options_.probe(probe, [io = &io_, this, alive = alive_, run_id, task,
                         generation = w.generation](WaitAnswer answer) {
    asio::post(*io, [this, alive, run_id, task, generation, answer = std::move(answer)] {
      if (*alive) OnWaitAnswer(run_id, task, generation, answer);
    });
  });
}

void Scheduler::OnWaitAnswer(RunId run_id, TaskId task, uint64_t generation, WaitAnswer answer) {
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  auto w_it = run.waits.find(static_cast<uint32_t>(Index(task)));
  if (run.plan.state(task) != TaskState::kWaiting || w_it == run.waits.end() ||
      w_it->second.generation != generation) {
    return;  // decided meanwhile (cancelled, marked, timed out), or an answer to an older look
  }
  Run::WaitState& w = w_it->second;
  if (!answer.ready) {
    w.seen = std::move(answer.seen);
    ArmWaitTimer(run, task, clock_.Now() + w.every);
    return;
  }
  const std::string reason = w.what == "file" ? "file '" + w.target + "' is there"
                                              : "GET " + w.target + " answered " + answer.seen;
  run.waits.erase(w_it);
  run.retry_timers[Index(task)].reset();
  FinishTask(run, task, TaskState::kSuccess, run.attempts[Index(task)], std::nullopt, reason);
  Pump(run);
  StartStartable();
  MaybeFinishRun(run);  // may erase the run
}

}  // namespace kiln::scheduler
