// Semantic checks of a parsed pipeline: ids, needs, cycles, templates, kind-specific keys.
// config/ reports syntax and type errors; this reports everything that needs the whole file.
#pragma once

#include <vector>

#include "dag/spec.h"

namespace kiln::dag {

// Every problem, in file order; empty = valid. `file` is used in the diagnostics.
// Checks: pipeline name and task id patterns; needs naming unknown tasks, the task itself, or the
// same task twice; cycles (the whole cycle named: "dependency cycle a -> b -> a"); exactly one of
// command/argv for kind "shell"; slots >= 1; retries >= 0; retry_backoff >= 1; param names;
// every template name known; catchup/overlap values; max_active_runs >= 1.
std::vector<Diagnostic> Validate(const PipelineSpec& spec);

}  // namespace kiln::dag
