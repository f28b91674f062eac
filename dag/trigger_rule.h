// The trigger-rule table of the format: given the end states of a task's direct upstreams so far,
// may it run, must it wait, or is its end state already decided?
#pragma once

#include "dag/spec.h"

namespace kiln::dag {

struct UpstreamCounts {
  int total = 0;  // number of direct upstreams
  int success = 0;
  int failed = 0;
  int upstream_failed = 0;
  int skipped = 0;
  int cancelled = 0;
  int done() const { return success + failed + upstream_failed + skipped + cancelled; }
  void Add(TaskState end_state);  // KILN_CHECKs that end_state is terminal
};

enum class Decision {
  kWait,            // not decided yet
  kRun,             // the task may start now
  kSkip,            // ends skipped without running
  kUpstreamFailed,  // ends upstream_failed without running
};

// Pure. A task with no upstream (total == 0) runs. For one_success / one_failed the answer can be
// kRun before all upstreams are done. A cancelled upstream counts as failed.
Decision Evaluate(TriggerRule rule, const UpstreamCounts& counts);

}  // namespace kiln::dag
