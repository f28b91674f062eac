#include "scheduler/run_plan.h"

#include "common/status.h"

namespace kiln::scheduler {

using dag::Decision;
using dag::TaskState;

RunPlan::RunPlan(const dag::Pipeline& pipeline)
    : pipeline_(pipeline),
      states_(pipeline.dag.size(), TaskState::kPending),
      counts_(pipeline.dag.size()),
      released_(pipeline.dag.size(), false),
      unfinished_(pipeline.dag.size()) {
  for (size_t i = 0; i < counts_.size(); ++i) {
    counts_[i].total = static_cast<int>(pipeline.dag.upstream(static_cast<TaskId>(i)).size());
  }
  for (TaskId root : pipeline.dag.roots()) {
    released_[Index(root)] = true;
    ready_.push_back(root);
  }
}

std::vector<TaskId> RunPlan::TakeReady() {
  std::vector<TaskId> out;
  out.reserve(ready_.size());
  // A task can end (Finish, e.g. an operator's cancel) between becoming ready and being taken.
  for (TaskId id : ready_) {
    if (!dag::IsTerminal(states_[Index(id)])) out.push_back(id);
  }
  ready_.clear();
  return out;
}

std::vector<Change> RunPlan::Finish(TaskId task, TaskState end_state) {
  KILN_CHECK(Index(task) < states_.size());
  KILN_CHECK(dag::IsTerminal(end_state));
  std::vector<Change> changes;
  if (dag::IsTerminal(states_[Index(task)])) return changes;

  states_[Index(task)] = end_state;
  released_[Index(task)] = true;
  --unfinished_;

  // Breadth-first over the tasks this end decides: a worklist, not recursion, so a 10,000-task
  // chain of upstream_failed costs no stack. Each ended task is visited once and touches only its
  // own downstream edges.
  std::vector<TaskId> ended = {task};
  for (size_t next = 0; next < ended.size(); ++next) {
    const TaskId up = ended[next];
    const TaskState up_state = states_[Index(up)];
    for (TaskId down : pipeline_.dag.downstream(up)) {
      const uint32_t d = Index(down);
      counts_[d].Add(up_state);
      // A task that was released (ready, started, or decided) is never decided again: a
      // one_success task that started early ignores its remaining upstreams.
      if (released_[d]) continue;
      const Decision decision = dag::Evaluate(pipeline_.task(down).trigger_rule, counts_[d]);
      if (decision == Decision::kWait) continue;
      released_[d] = true;
      if (decision == Decision::kRun) {
        ready_.push_back(down);
        continue;
      }
      const TaskState decided =
          decision == Decision::kSkip ? TaskState::kSkipped : TaskState::kUpstreamFailed;
      states_[d] = decided;
      --unfinished_;
      changes.push_back(Change{down, decided, up});
      ended.push_back(down);
    }
  }
  return changes;
}

void RunPlan::SetState(TaskId task, TaskState state) {
  KILN_CHECK(Index(task) < states_.size());
  KILN_CHECK(!dag::IsTerminal(state));
  KILN_CHECK(!dag::IsTerminal(states_[Index(task)]));
  states_[Index(task)] = state;
}

std::vector<TaskId> RunPlan::CancelAll() {
  std::vector<TaskId> cancelled;
  for (size_t i = 0; i < states_.size(); ++i) {
    if (dag::IsTerminal(states_[i])) continue;
    states_[i] = TaskState::kCancelled;
    released_[i] = true;
    cancelled.push_back(static_cast<TaskId>(i));
  }
  unfinished_ = 0;
  ready_.clear();
  if (!cancelled.empty()) cancelled_ = true;
  return cancelled;
}

dag::RunState RunPlan::Outcome() const {
  KILN_CHECK(done());
  if (cancelled_) return dag::RunState::kCancelled;
  bool failed = false;
  for (size_t i = 0; i < states_.size(); ++i) {
    const TaskState state = states_[i];
    if (state == TaskState::kCancelled) return dag::RunState::kCancelled;
    if ((state == TaskState::kFailed || state == TaskState::kUpstreamFailed) &&
        !pipeline_.spec.tasks[i].allow_failure) {
      failed = true;
    }
  }
  return failed ? dag::RunState::kFailed : dag::RunState::kSuccess;
}

}  // namespace kiln::scheduler
