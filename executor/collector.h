// After a task exits 0 (or with a kind's skip code: best effort), the program that collects its
// results (scheduler::LaunchRequest:: collect_argv, `kiln task collect`) runs as the same user, in
// the same folder and under the same process rules as the task; what it reports is folded into the
// attempt's outcome. The daemon and the supervisor never open a task's files themselves.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "common/time.h"
#include "common/users.h"
#include "executor/process.h"
#include "scheduler/task_runner.h"

namespace kiln::executor {

// Hashing large outputs takes time, but not forever.
inline constexpr Duration kCollectTimeout = std::chrono::minutes(30);
// A report larger than this is refused (thousands of files and metrics fit).
inline constexpr uint64_t kMaxResultsBytes = uint64_t{8} << 20;

struct CollectJob {
  std::vector<std::string> argv;  // empty: nothing to collect
  std::filesystem::path cwd;
  // The attempt's log: the report is written beside it (and removed once read); a failure is
  // appended to it as "[kiln: <why>]".
  std::filesystem::path log_path;
  Identity user;
  Duration kill_grace{0};
  // Exit codes besides 0 that are collected too, best effort (LaunchRequest::collect_also_on).
  std::vector<int> also_on;
};

// Whether the attempt that ended with `outcome` is to be collected: it exited on its own, 0 or
// with one of `also_on`, and the job has a program.
bool ShouldCollect(const CollectJob& job, const scheduler::AttemptOutcome& outcome);
// Whether such a collection may fail without failing the attempt (it exited with a code of
// `also_on`, not 0).
bool BestEffort(const CollectJob& job, const scheduler::AttemptOutcome& outcome);

// Starts the collector; `done` gets `outcome` with `results` set, or with `collect_failed` and
// `error` (and `killed` when it was stopped); best effort, a failure leaves `outcome` as it was
// (the reason in the log). Like every Spawn, `done` is posted, never called
// from inside. Returns the collector's handle (Terminate/KillNow stop it).
ProcessManager::Handle Collect(ProcessManager& processes, const CollectJob& job,
                               scheduler::AttemptOutcome outcome,
                               std::function<void(scheduler::AttemptOutcome)> done);

}  // namespace kiln::executor
