// Retry decisions and attempt outcomes (pure).
#pragma once

#include "common/time.h"
#include "dag/spec.h"
#include "scheduler/task_runner.h"

namespace kiln::scheduler {

// True when attempt `attempt` (1-based, KILN_CHECKed) failed and the policy allows another one:
// attempt <= retries.
bool ShouldRetry(const dag::RetryPolicy& policy, int attempt);
// Delay before attempt `attempt + 1` after attempt `attempt` (1-based) failed:
// retry_delay * retry_backoff^(attempt - 1), capped at max_retry_delay (no overflow for any n),
// rounded to the nearest millisecond, never negative.
Duration RetryDelay(const dag::RetryPolicy& policy, int attempt);

// End state of an attempt: success on exit 0; skipped on an exit code in skip_exit_codes;
// failed otherwise (signals, timeouts, start failures, kills, lost attempts). An attempt that timed
// out or was killed is failed whatever its exit code (the caller knows when a kill was a cancel).
dag::TaskState Classify(const dag::TaskSpec& task, const AttemptOutcome& outcome);
// Human-readable reason: "exit code 3", "killed by signal 9 (SIGKILL)", "killed by signal 64"
// (no well-known name), "timed out after 5s", "could not start: ...", "cancelled" (killed),
// "lost: ..." (its supervisor is gone), "stopped by its supervisor: ..." (stop_cause set).
std::string Describe(const AttemptOutcome& outcome, Duration timeout);
// The same for an attempt of `task`, which also knows its skip codes and timeout:
// "skipped (exit code 99)" when Classify says skipped, Describe(outcome, task.timeout) otherwise.
std::string Describe(const dag::TaskSpec& task, const AttemptOutcome& outcome);

}  // namespace kiln::scheduler
