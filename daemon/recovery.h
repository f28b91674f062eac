// Resuming runs from their rows (pure): what a daemon does at its start for the runs it drove
// before, and after it takes runs over from a daemon whose lease expired.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "dag/graph.h"
#include "scheduler/records.h"
#include "scheduler/scheduler.h"
#include "store/database.h"

namespace kiln::daemon {

// The run's task rows are the pipeline's tasks, in order, then instances of its mapped tasks
// (for_each) (a run can start on this version).
bool SameTasks(const scheduler::RunRecord& run, const dag::Pipeline& pipeline);

// The version of its pipeline a run goes on with: `current` when it is the run's version (same
// content hash); otherwise the run's own version, parsed from `source()` (the text kept with the
// run's version) as if it were `current`'s file, so that tasks run in the same folder; `current`
// itself when that text is not kept but its tasks are the run's. Errors say why the run cannot
// go on: "run 7 of 'train' cannot go on: its version abc123 is not kept and the tasks of the
// loaded version differ".
Result<dag::PipelinePtr> PipelineForRun(const scheduler::RunRecord& run,
                                        const dag::PipelinePtr& current,
                                        const std::function<Result<std::string>()>& source);

// The scheduler's context for a run from its rows, on `pipeline` (whose tasks must be the run's,
// else kInvalidArgument): every run starts through it, new, retried or resumed. Params, dates and
// trigger as created; each task's state, attempt and round as recorded (a retried run keeps its
// ended tasks); for a run that was running (resumed): attempts under way adopted from their
// supervisors (or decided from the end their supervisor recorded), retries waiting for their
// time; a requested cancel.
Result<scheduler::RunContext> ResumeContext(const store::ActiveRun& active,
                                            dag::PipelinePtr pipeline);

// What a retry of an ended run re-runs: scheduler::TasksToRetry over the pipeline's tasks, with
// mapped tasks (for_each) and their instances:
//   - a mapped task re-run because of its upstreams, or named by `from`: its instances are
//     dropped and it expands again (its list may differ now);
//   - a mapped task that did not succeed, retried with its upstreams kept ("failed"): it goes
//     back to running with the instances that did not succeed re-run, the others kept;
//   - `from` an instance ("train[3]"): that instance re-runs, its task goes back to running and
//     everything downstream of the task re-runs.
// The run's rows must be the pipeline's (SameTasks). kNotFound when `from` names no task or
// instance of the run.
struct RetryChoice {
  std::vector<std::string> pending;  // tasks and instances back to pending
  std::vector<std::string> reopen;   // mapped tasks back to running, with their instances
  std::vector<std::string> drop;     // mapped tasks whose instances are deleted (made again)
};
Result<RetryChoice> ChooseRetry(const scheduler::RunRecord& run, const dag::Pipeline& pipeline,
                                const std::optional<std::string>& from);

}  // namespace kiln::daemon
