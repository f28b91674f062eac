// The readiness engine of one run (pure: no I/O, no clock, no threads). Modelled on ninja's Plan:
// it answers "what can run now" and takes "this finished". Each completion costs O(out-degree)
// plus the tasks it decides; nothing ever rescans the whole graph.
#pragma once

#include <functional>
#include <optional>
#include <unordered_map>
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
  // A mapped task's instances: how many, and how many have ended (succeeded, skipped).
  struct Mapped {
    size_t total = 0;
    size_t ended = 0;
    size_t succeeded = 0;
    size_t skipped = 0;
  };
  // All tasks pending; roots are ready. The pipeline must outlive the plan.
  explicit RunPlan(const dag::Pipeline& pipeline);
  // Resumes a run: a retry of an ended run, or a run that was active before a restart or a
  // takeover. `initial_states` has one state per task (KILN_CHECKed): kPending or kQueued = decide
  // it again (run it when its upstreams allow); a terminal state = keep it; kRunning or
  // kUpForRetry = under way (taken: never returned by TakeReady; its end comes through Finish).
  // A kept task counts as a finished upstream with its state, is never returned by TakeReady,
  // never re-decided, and nothing is reported for it. Pending tasks whose rule the kept upstreams
  // already decide are settled here: "run" ones are returned by the first TakeReady (in file
  // order), skipped / upstream_failed ones are returned once by TakeInitialChanges(). Costs
  // O(tasks + edges) once. All-pending states give the same plan as the constructor above.
  //
  // Instances of mapped tasks (for_each) follow the pipeline's tasks in `initial_states`, one
  // parent per instance in `instance_parents` (in unit order). A parent with instances is
  // expanded: running without an attempt unless it is kept (terminal, with its instances kept;
  // of a kept parent's unended instances, one under way stays so, to end through Finish, and a
  // pending or queued one ends cancelled: one of TakeInitialChanges, caused by the parent). Its
  // pending or queued instances are ready (after the pipeline's tasks), running ones under way,
  // ended ones counted; a parent all of whose instances had ended ends now with their aggregate
  // (one of TakeInitialChanges, caused by itself).
  RunPlan(const dag::Pipeline& pipeline, const std::vector<dag::TaskState>& initial_states,
          const std::vector<TaskId>& instance_parents = {});

  // The pending tasks the constructor ended skipped / upstream_failed (and those their ends
  // decided in turn), in topological order, each returned once; empty for a fresh plan. Their
  // `cause` is the upstream that explains the decision: for upstream_failed the first failed,
  // upstream_failed or cancelled upstream; for skipped the first skipped upstream, else the first
  // successful one, else the first upstream (upstreams in `needs` order).
  std::vector<Change> TakeInitialChanges();

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

  // A mapped task (for_each) taken from TakeReady expands into `count` instances: units with ids
  // after every task and instance so far, returned by the next TakeReady (they have no
  // upstreams). The parent becomes running, holding no attempt; it ends when its last instance
  // ends, with the aggregate: success when every instance succeeded, skipped when all were
  // skipped, failed otherwise. With no items it ends skipped at once: its changes (and what they
  // decide) are returned, the parent's first. Returns the first instance's id.
  TaskId Expand(TaskId parent, size_t count, std::vector<Change>* changes);
  // The mapped task an instance belongs to; nullopt for a task of the pipeline.
  std::optional<TaskId> ParentOf(TaskId unit) const;
  // Whether a task of the pipeline was expanded into instances (its state is theirs).
  bool IsExpanded(TaskId task) const;
  // Its instances' counts; nullptr unless expanded.
  const Mapped* mapped(TaskId task) const {
    auto it = mapped_.find(Index(task));
    return it == mapped_.end() ? nullptr : &it->second;
  }
  size_t units() const { return states_.size(); }

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
  std::vector<Change> initial_changes_;
  static dag::TaskState Aggregate(const Mapped& m);
  std::vector<uint32_t> parent_of_;
  std::unordered_map<uint32_t, Mapped> mapped_;
  // An instance ended: counts it, and ends the parent once all have (its change goes first).
  void CountInstance(uint32_t parent, dag::TaskState end_state, TaskId instance,
                     std::vector<Change>& changes);
  size_t unfinished_ = 0;
  bool cancelled_ = false;
};

// The state of a run whose tasks have all ended, from their end states (`allows_failure(i)`: task
// i has allow_failure): cancelled if any ended cancelled; else failed if a task that does not
// allow failure ended failed or upstream_failed; else success.
dag::RunState OutcomeOf(const std::vector<dag::TaskState>& states,
                        const std::function<bool(size_t)>& allows_failure);

// Which tasks of an ended run a retry runs again (the store resets them to pending and hands the
// run back with the others kept: RunContext::initial_states). `states` has one state per task
// (KILN_CHECKed), as the run left them.
//   from == nullopt ("failed"): failed, upstream_failed and cancelled tasks and everything
//     downstream of them; successes and skips not downstream of those are kept.
//   from == T: T and everything downstream of it, whatever their states.
// A task that never ended (pending, queued, running, up_for_retry: none in an ended run) is
// re-run in either mode, with its downstream, so that every kept task has ended. Returns the
// tasks in pipeline (file) order; empty when there is nothing to re-run. O(tasks + edges).
std::vector<TaskId> TasksToRetry(const dag::Pipeline& pipeline,
                                 const std::vector<dag::TaskState>& states,
                                 std::optional<TaskId> from);

}  // namespace kiln::scheduler
