// Retry decisions and attempt outcomes (pure).
#pragma once

#include "common/time.h"
#include "dag/spec.h"
#include "scheduler/task_runner.h"

namespace kiln::scheduler {

// True when attempt `attempt` (1-based) failed and the policy allows another one.
bool ShouldRetry(const dag::RetryPolicy& policy, int attempt);
// Delay before attempt `attempt + 1` after attempt `attempt` failed:
// retry_delay * retry_backoff^(attempt - 1), capped at max_retry_delay (no overflow for any n).
Duration RetryDelay(const dag::RetryPolicy& policy, int attempt);

// End state of an attempt: success on exit 0; skipped on an exit code in skip_exit_codes;
// failed otherwise (signals, timeouts, start failures, kills).
dag::TaskState Classify(const dag::TaskSpec& task, const AttemptOutcome& outcome);
// Human-readable reason: "exit code 3", "killed by signal 9 (SIGKILL)", "timed out after 5s",
// "could not start: ...", "cancelled".
std::string Describe(const AttemptOutcome& outcome, Duration timeout);

}  // namespace kiln::scheduler
