// Semantic checks of a parsed pipeline: ids, needs, cycles, templates, kind-specific keys.
// config/ reports syntax and type errors; this reports everything that needs the whole file.
#pragma once

#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dag/kinds.h"
#include "dag/spec.h"

namespace kiln::dag {

// Every problem, in file order; empty = valid. `file` is used in the diagnostics.
// Checks: pipeline name and task id patterns; needs naming unknown tasks, the task itself, or the
// same task twice; cycles (the whole cycle named: "dependency cycle a -> b -> a"); exactly one of
// command/argv for kind "shell"; slots >= 1; retries >= 0; retry_backoff >= 1; param names;
// every template name known (in a kind's own keys too); catchup/overlap values;
// max_active_runs >= 1; the kind known to `kinds`, and its keys as the kind checks them;
// {{ secrets.NAME }} only in env values and argv, and NAME among `secrets` (the names kiln.toml
// declares) unless `secrets` is null (a stored version read back: its secrets were checked
// when it was loaded, and a missing one fails the task that uses it).
using SecretNames = std::set<std::string, std::less<>>;
std::vector<Diagnostic> Validate(const PipelineSpec& spec, const KindCatalog& kinds = ShellOnly(),
                                 const SecretNames* secrets = nullptr);

// The format's name patterns: pipeline names ^[a-z0-9][a-z0-9_.-]{0,63}$, task ids
// ^[a-z0-9][a-z0-9_-]{0,63}$.
bool IsValidPipelineName(std::string_view name);
// The format's keys of a [tasks.<id>] table, sorted (a kind's own keys come on top).
std::span<const std::string_view> TaskKeys();
bool IsValidTaskId(std::string_view id);

}  // namespace kiln::dag
