#include "dag/trigger_rule.h"

#include "common/status.h"

namespace kiln::dag {

void UpstreamCounts::Add(TaskState end_state) {
  switch (end_state) {
    case TaskState::kSuccess:
      ++success;
      break;
    case TaskState::kFailed:
      ++failed;
      break;
    case TaskState::kUpstreamFailed:
      ++upstream_failed;
      break;
    case TaskState::kSkipped:
      ++skipped;
      break;
    case TaskState::kCancelled:
      ++cancelled;
      break;
    case TaskState::kPending:
    case TaskState::kQueued:
    case TaskState::kRunning:
    case TaskState::kUpForRetry:
    case TaskState::kWaiting:
      KILN_CHECK(false && "UpstreamCounts::Add needs an end state");
  }
  KILN_CHECK(done() <= total);
}

Decision Evaluate(TriggerRule rule, const UpstreamCounts& counts) {
  KILN_CHECK(counts.done() <= counts.total);
  if (counts.total == 0) return Decision::kRun;

  const bool all_done = counts.done() == counts.total;
  // A cancelled upstream counts as failed.
  const int failed = counts.failed + counts.cancelled;
  const int any_failure = failed + counts.upstream_failed;

  switch (rule) {
    case TriggerRule::kAllSuccess:
      if (!all_done) return Decision::kWait;
      if (counts.success == counts.total) return Decision::kRun;
      return any_failure > 0 ? Decision::kUpstreamFailed : Decision::kSkip;
    case TriggerRule::kAllFailed:
      if (!all_done) return Decision::kWait;
      return any_failure == counts.total ? Decision::kRun : Decision::kSkip;
    case TriggerRule::kAllDone:
      return all_done ? Decision::kRun : Decision::kWait;
    case TriggerRule::kOneSuccess:
      if (counts.success > 0) return Decision::kRun;
      return all_done ? Decision::kSkip : Decision::kWait;
    case TriggerRule::kOneFailed:
      if (any_failure > 0) return Decision::kRun;
      return all_done ? Decision::kSkip : Decision::kWait;
    case TriggerRule::kNoneFailed:
      if (!all_done) return Decision::kWait;
      return any_failure > 0 ? Decision::kUpstreamFailed : Decision::kRun;
    case TriggerRule::kNoneFailedMinOneSuccess:
      if (!all_done) return Decision::kWait;
      if (any_failure > 0) return Decision::kUpstreamFailed;
      return counts.success > 0 ? Decision::kRun : Decision::kSkip;
  }
  KILN_CHECK(false && "unknown trigger rule");
  return Decision::kWait;
}

}  // namespace kiln::dag
