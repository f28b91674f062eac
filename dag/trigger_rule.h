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
//
// Decisions follow the table of the format ("failed" below = failed or cancelled):
//   all_success   run if all succeeded; else upstream_failed if any failed/upstream_failed,
//                 else skip.
//   all_failed    run if all failed/upstream_failed; else skip.
//   all_done      run.
//   one_success   run as soon as one succeeded; skip when all are done and none succeeded.
//   one_failed    run as soon as one failed or upstream_failed (as in Airflow: a failure further
//                 up counts); skip when all are done and none did.
//   none_failed   run if none failed/upstream_failed (skipped ones are fine); else upstream_failed.
//   none_failed_min_one_success
//                 upstream_failed if any failed/upstream_failed; else skip if none succeeded;
//                 else run.
// Only kRun of one_success / one_failed is ever given early. Every other answer, including a
// negative one that is already certain (all_success with one failed upstream), waits until all
// direct upstreams are done: the task ends when the table says it is decided, never before.
Decision Evaluate(TriggerRule rule, const UpstreamCounts& counts);

}  // namespace kiln::dag
