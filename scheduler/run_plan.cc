#include "scheduler/run_plan.h"

#include <utility>

#include "common/status.h"

namespace kiln::scheduler {

using dag::Decision;
using dag::TaskState;

namespace {

// The upstream that explains a decision made without a single deciding end (see
// TakeInitialChanges in the header).
TaskId ExplainingUpstream(const dag::Dag& dag, const std::vector<TaskState>& states, TaskId task,
                          Decision decision) {
  auto ups = dag.upstream(task);
  KILN_CHECK(!ups.empty());
  auto first = [&](auto matches) -> const TaskId* {
    for (const TaskId& up : ups) {
      if (matches(states[Index(up)])) return &up;
    }
    return nullptr;
  };
  const TaskId* found = nullptr;
  if (decision == Decision::kUpstreamFailed) {
    found = first([](TaskState s) {
      return s == TaskState::kFailed || s == TaskState::kUpstreamFailed ||
             s == TaskState::kCancelled;
    });
  } else {
    found = first([](TaskState s) { return s == TaskState::kSkipped; });
    if (found == nullptr) found = first([](TaskState s) { return s == TaskState::kSuccess; });
  }
  return found != nullptr ? *found : ups.front();
}

}  // namespace

RunPlan::RunPlan(const dag::Pipeline& pipeline)
    : RunPlan(pipeline, std::vector<TaskState>(pipeline.dag.size(), TaskState::kPending), {}) {}

RunPlan::RunPlan(const dag::Pipeline& pipeline, const std::vector<TaskState>& initial_states,
                 const std::vector<TaskId>& instance_parents)
    : pipeline_(pipeline),
      states_(initial_states),
      counts_(pipeline.dag.size()),
      released_(initial_states.size(), false) {
  const dag::Dag& dag = pipeline.dag;
  const size_t n = dag.size();
  KILN_CHECK(states_.size() == n + instance_parents.size());
  for (size_t i = 0; i < counts_.size(); ++i) {
    counts_[i].total = static_cast<int>(dag.upstream(static_cast<TaskId>(i)).size());
  }
  // Instances first: their parents are expanded (running, holding no attempt) unless kept.
  for (size_t k = 0; k < instance_parents.size(); ++k) {
    const uint32_t p = Index(instance_parents[k]);
    KILN_CHECK(p < n);
    parent_of_.push_back(p);
    ++mapped_[p].total;
  }
  for (auto& [p, m] : mapped_) {
    if (dag::IsTerminal(states_[p])) continue;
    states_[p] = TaskState::kRunning;  // expanded: it ends with its instances
  }
  for (size_t i = n; i < states_.size(); ++i) {
    const uint32_t p = parent_of_[i - n];
    const TaskState state = states_[i];
    released_[i] = true;
    if (dag::IsTerminal(states_[p])) {
      // The parent ended (cancelled) but this instance had not been written ended: one under
      // way stays so, to be adopted and recorded when it exits; one that never started ends
      // cancelled now.
      if (state == TaskState::kPending || state == TaskState::kQueued) {
        states_[i] = TaskState::kCancelled;
        initial_changes_.push_back(
            Change{static_cast<TaskId>(i), TaskState::kCancelled, static_cast<TaskId>(p)});
      } else if (!dag::IsTerminal(state)) {
        ++unfinished_;
      }
      continue;
    }
    if (state == TaskState::kPending || state == TaskState::kQueued) {
      states_[i] = TaskState::kPending;
      ready_.push_back(static_cast<TaskId>(i));
      ++unfinished_;
    } else if (!dag::IsTerminal(state)) {
      ++unfinished_;  // under way: its end comes through Finish
    } else {
      Mapped& m = mapped_[p];
      ++m.ended;
      if (state == TaskState::kSuccess) ++m.succeeded;
      if (state == TaskState::kSkipped) ++m.skipped;
    }
  }
  // Kept tasks: their ends count for their downstream, once, like any Finish.
  for (size_t i = 0; i < n; ++i) {
    TaskState state = states_[i];
    if (auto m = mapped_.find(static_cast<uint32_t>(i));
        m != mapped_.end() && state == TaskState::kRunning && m->second.ended == m->second.total) {
      // Every instance had ended but the parent had not: it ends now, with their aggregate.
      state = Aggregate(m->second);
      states_[i] = state;
      initial_changes_.push_back(Change{static_cast<TaskId>(i), state, static_cast<TaskId>(i)});
    }
    if (state == TaskState::kPending || state == TaskState::kQueued) {
      // Queued is decided again: its upstreams have ended, so it is ready at once.
      states_[i] = TaskState::kPending;
      ++unfinished_;
      continue;
    }
    if (state == TaskState::kRunning || state == TaskState::kUpForRetry ||
        state == TaskState::kWaiting) {
      // Under way before the run was resumed: taken, not finished; its downstream waits.
      released_[i] = true;
      ++unfinished_;
      continue;
    }
    KILN_CHECK(dag::IsTerminal(state));
    released_[i] = true;
    for (TaskId down : dag.downstream(static_cast<TaskId>(i))) counts_[Index(down)].Add(state);
  }
  // Pending tasks in topological order: every upstream decided here is counted before its
  // downstream is looked at, so one pass settles everything the kept states decide.
  std::vector<bool> runs_now(n, false);
  for (TaskId task : dag.topological_order()) {
    const uint32_t i = Index(task);
    if (released_[i]) continue;
    const Decision decision = dag::Evaluate(pipeline.task(task).trigger_rule, counts_[i]);
    if (decision == Decision::kWait) continue;
    released_[i] = true;
    if (decision == Decision::kRun) {
      runs_now[i] = true;
      continue;
    }
    const TaskState decided =
        decision == Decision::kSkip ? TaskState::kSkipped : TaskState::kUpstreamFailed;
    initial_changes_.push_back(
        Change{task, decided, ExplainingUpstream(dag, states_, task, decision)});
    states_[i] = decided;
    --unfinished_;
    for (TaskId down : dag.downstream(task)) counts_[Index(down)].Add(decided);
  }
  std::vector<TaskId> instances = std::exchange(ready_, {});
  for (size_t i = 0; i < runs_now.size(); ++i) {
    if (runs_now[i]) ready_.push_back(static_cast<TaskId>(i));
  }
  ready_.insert(ready_.end(), instances.begin(), instances.end());
}

std::vector<Change> RunPlan::TakeInitialChanges() { return std::exchange(initial_changes_, {}); }

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

TaskId RunPlan::Expand(TaskId parent, size_t count, std::vector<Change>* changes) {
  const uint32_t p = Index(parent);
  KILN_CHECK(p < pipeline_.dag.size());
  KILN_CHECK(!dag::IsTerminal(states_[p]) && mapped_.count(p) == 0);
  const auto first = static_cast<TaskId>(states_.size());
  if (count == 0) {
    std::vector<Change> ended = Finish(parent, TaskState::kSkipped);
    if (changes != nullptr) {
      changes->push_back(Change{parent, TaskState::kSkipped, parent});
      changes->insert(changes->end(), ended.begin(), ended.end());
    }
    return first;
  }
  states_[p] = TaskState::kRunning;
  mapped_[p].total = count;
  states_.resize(states_.size() + count, TaskState::kPending);
  released_.resize(states_.size(), true);
  parent_of_.resize(states_.size() - pipeline_.dag.size(), p);
  unfinished_ += count;
  for (size_t i = 0; i < count; ++i) ready_.push_back(static_cast<TaskId>(Index(first) + i));
  return first;
}

TaskState RunPlan::Aggregate(const Mapped& m) {
  if (m.succeeded == m.total) return TaskState::kSuccess;
  return m.skipped == m.total ? TaskState::kSkipped : TaskState::kFailed;
}

bool RunPlan::IsExpanded(TaskId task) const {
  return Index(task) < pipeline_.dag.size() && mapped_.count(Index(task)) != 0;
}

std::optional<TaskId> RunPlan::ParentOf(TaskId unit) const {
  const size_t n = pipeline_.dag.size();
  if (Index(unit) < n) return std::nullopt;
  return static_cast<TaskId>(parent_of_[Index(unit) - n]);
}

void RunPlan::CountInstance(uint32_t parent, TaskState end_state, TaskId instance,
                            std::vector<Change>& changes) {
  Mapped& m = mapped_[parent];
  ++m.ended;
  if (end_state == TaskState::kSuccess) ++m.succeeded;
  if (end_state == TaskState::kSkipped) ++m.skipped;
  if (m.ended < m.total || dag::IsTerminal(states_[parent])) return;
  const TaskState aggregate = Aggregate(m);
  changes.push_back(Change{static_cast<TaskId>(parent), aggregate, instance});
  std::vector<Change> decided = Finish(static_cast<TaskId>(parent), aggregate);
  changes.insert(changes.end(), decided.begin(), decided.end());
}

std::vector<Change> RunPlan::Finish(TaskId task, TaskState end_state) {
  KILN_CHECK(Index(task) < states_.size());
  KILN_CHECK(dag::IsTerminal(end_state));
  std::vector<Change> changes;
  if (dag::IsTerminal(states_[Index(task)])) return changes;

  states_[Index(task)] = end_state;
  released_[Index(task)] = true;
  --unfinished_;
  if (auto parent = ParentOf(task)) {
    // An instance has no edges of its own: it counts toward its parent, which decides once.
    CountInstance(Index(*parent), end_state, task, changes);
    return changes;
  }

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
  // The pipeline's tasks decide (a mapped task's state is its instances' aggregate).
  const std::vector<TaskState> tasks(
      states_.begin(), states_.begin() + static_cast<std::ptrdiff_t>(pipeline_.dag.size()));
  return OutcomeOf(tasks, [this](size_t i) { return pipeline_.spec.tasks[i].allow_failure; });
}

dag::RunState OutcomeOf(const std::vector<TaskState>& states,
                        const std::function<bool(size_t)>& allows_failure) {
  bool failed = false;
  for (size_t i = 0; i < states.size(); ++i) {
    const TaskState state = states[i];
    if (state == TaskState::kCancelled) return dag::RunState::kCancelled;
    if ((state == TaskState::kFailed || state == TaskState::kUpstreamFailed) &&
        !allows_failure(i)) {
      failed = true;
    }
  }
  return failed ? dag::RunState::kFailed : dag::RunState::kSuccess;
}

std::vector<TaskId> TasksToRetry(const dag::Pipeline& pipeline,
                                 const std::vector<TaskState>& states, std::optional<TaskId> from) {
  const dag::Dag& dag = pipeline.dag;
  KILN_CHECK(states.size() == dag.size());
  std::vector<bool> chosen(dag.size(), false);
  std::vector<TaskId> worklist;
  auto choose = [&](TaskId task) {
    if (chosen[Index(task)]) return;
    chosen[Index(task)] = true;
    worklist.push_back(task);
  };
  if (from) {
    KILN_CHECK(Index(*from) < dag.size());
    choose(*from);
  }
  for (size_t i = 0; i < states.size(); ++i) {
    const TaskState state = states[i];
    const bool failed_like = state == TaskState::kFailed || state == TaskState::kUpstreamFailed ||
                             state == TaskState::kCancelled;
    if (!dag::IsTerminal(state) || (!from && failed_like)) choose(static_cast<TaskId>(i));
  }
  // Each chosen task is expanded once: O(tasks + edges) for the whole closure.
  while (!worklist.empty()) {
    const TaskId task = worklist.back();
    worklist.pop_back();
    for (TaskId down : dag.downstream(task)) choose(down);
  }
  std::vector<TaskId> out;
  for (size_t i = 0; i < chosen.size(); ++i) {
    if (chosen[i]) out.push_back(static_cast<TaskId>(i));
  }
  return out;
}

}  // namespace kiln::scheduler
