// The readiness engine of one run (pure: no I/O, no clock, no threads). Modelled on ninja's Plan:
// it answers "what can run now" and takes "this finished". Each completion costs O(out-degree)
// plus the tasks it decides; nothing ever rescans the whole graph.
#pragma once

#include <utility>
#include <vector>

#include "common/ids.h"
#include "dag/graph.h"
#include "dag/trigger_rule.h"

namespace kiln::scheduler {

struct Change {
  TaskId task{};
  dag::TaskState state = dag::TaskState::kPending;
  TaskId cause{};  // the upstream whose end decided it (for skipped / upstream_failed)
};

class RunPlan {
 public:
  // All tasks pending; roots are ready. The pipeline must outlive the plan.
  explicit RunPlan(const dag::Pipeline& pipeline);

  // Tasks whose trigger rule now says "run", each returned once, in the order they became ready
  // (roots in file order). The caller moves them to queued/running with SetState.
  std::vector<TaskId> TakeReady();

  // Records `end_state` (terminal) for `task` and propagates it: every downstream task whose
  // rule is now decided negatively ends skipped / upstream_failed, transitively. Returns those
  // propagated changes in order (not including `task` itself). Newly runnable tasks are
  // returned by the next TakeReady(). A task that has already ended (a late report after
  // CancelAll, a second report for the same task) is left as it is: returns nothing.
  // A task that ended before it was taken from TakeReady is not returned by it.
  std::vector<Change> Finish(TaskId task, dag::TaskState end_state);

  // Bookkeeping for non-terminal states (queued, running, up_for_retry). KILN_CHECKs that the
  // task has not ended and that `state` is not an end state (use Finish for those).
  void SetState(TaskId task, dag::TaskState state);
  dag::TaskState state(TaskId task) const { return states_[Index(task)]; }

  // Ends every non-terminal task `cancelled` (running ones too: the caller kills them) and
  // returns them. Nothing becomes ready afterwards.
  std::vector<TaskId> CancelAll();

  size_t unfinished() const { return unfinished_; }
  bool done() const { return unfinished_ == 0; }
  // Valid when done() (KILN_CHECKed): cancelled if any task ended cancelled; else failed if a
  // task without allow_failure ended failed or upstream_failed; else success.
  dag::RunState Outcome() const;

 private:
  const dag::Pipeline& pipeline_;
  std::vector<dag::TaskState> states_;
  std::vector<dag::UpstreamCounts> counts_;
  std::vector<bool> released_;  // returned by TakeReady or decided
  std::vector<TaskId> ready_;
  size_t unfinished_ = 0;
  bool cancelled_ = false;
};

}  // namespace kiln::scheduler
