// DaemonService's approvals (an operator's decision on an approval task that is waiting, and the
// inbox of those waiting) and the invalidation of the result cache: an operator's say over what
// tasks do. The decision is the scheduler's (Scheduler::Decide): the task's end, its
// downstream and the event naming who decided and why commit together, in its next batch.
#include <chrono>

#include "daemon/loop_call.h"
#include "daemon/service.h"

namespace kiln::daemon {

namespace {

// How long a decision waits to be durable before the request gives up waiting.
constexpr std::chrono::seconds kDecisionWait{30};

}  // namespace

Status DaemonService::DecideApproval(const scheduler::ApprovalRequest& request) {
  auto run = GetRun(request.run);
  if (!run.ok()) return run.status();
  const scheduler::TaskInstanceRecord* record = nullptr;
  for (const auto& t : run->tasks) {
    if (t.task_id == request.task) record = &t;
  }
  if (record == nullptr) {
    return Status::Error(ErrorCode::kNotFound,
                         "run " + ToString(request.run) + " has no task '" + request.task + "'");
  }
  const std::string verb = request.approve ? "approve" : "reject";
  auto not_waiting = [&] {
    return Status::Error(ErrorCode::kConflict,
                         "task '" + request.task + "' of run " + ToString(request.run) +
                             " is not waiting for approval (it is " +
                             std::string(dag::Name(record->state)) + "); nothing to " + verb);
  };
  if (record->state != dag::TaskState::kWaiting) return not_waiting();
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Refuse();
  }
  const std::string decision = request.approve ? "approved" : "rejected";
  const std::string reason =
      decision + " by " + request.actor + (request.note.empty() ? "" : ": " + request.note);
  std::vector<std::pair<std::string, std::string>> detail = {
      {"decision", decision}, {"by", request.actor}, {"note", request.note}};
  // Answered once the decision is durable; the scheduler may answer after this request has given
  // up (a database that does not answer).
  const LoopAnswer answer =
      CallOnLoop(io_, kDecisionWait,
                 [this, run = request.run, approve = request.approve, task = request.task, reason,
                  detail = std::move(detail)](auto done) mutable {
                   sched_.Decide(run, task, approve, reason, std::move(detail), std::move(done));
                 });
  if (answer.state == LoopAnswer::State::kNotBegun) {
    return Status::Error(ErrorCode::kUnavailable,
                         "the scheduler did not take the decision up within 30 s (it is very "
                         "busy, or stuck); nothing was decided, so decide again");
  }
  if (answer.state == LoopAnswer::State::kPending) {
    return Status::Error(ErrorCode::kUnavailable,
                         "the decision could not be confirmed within 30 s (the database does "
                         "not answer, or the scheduler is very busy); look at the task's state "
                         "before deciding again");
  }
  const Status& s = answer.status;
  if (s.code() != ErrorCode::kNotFound) return s;
  // Waiting, but not in this daemon's scheduler: another daemon drives the run.
  if (auto owner = OtherOwner(request.run)) {
    return Status::Error(ErrorCode::kConflict, "run " + ToString(request.run) +
                                                   " is driven by the daemon " + *owner +
                                                   "; send the decision to that daemon");
  }
  return Status::Error(ErrorCode::kConflict,
                       "run " + ToString(request.run) +
                           " is not driven by this daemon right now (it is being taken over or "
                           "resumed); try again in a moment");
}

Result<std::vector<scheduler::DecisionRecord>> DaemonService::ListDecisions(RunId run) {
  return store_.ListDecisions(run);
}

Result<std::vector<scheduler::ApprovalRecord>> DaemonService::ListApprovals() {
  return store_.ListApprovals(1000);
}

Result<int64_t> DaemonService::InvalidateCache(const std::string& pipeline,
                                               const std::optional<std::string>& task,
                                               const std::string& actor) {
  // A task the pipeline does not have is a typo, said as one (a removed task's results are
  // never looked up again: nothing to forget).
  if (task) {
    if (Status s = CheckTaskOf(pipeline, *task); !s.ok()) return s;
  }
  return store_.InvalidateCache(pipeline, task, actor);
}

}  // namespace kiln::daemon
