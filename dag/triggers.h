// Pipeline-completion triggers across the pipelines of one daemon: `trigger_on_success` names
// pipelines whose successful runs start a run of this one. Checked over the whole set: a chain
// of triggers may not lead back to where it started (it would run forever).
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dag/spec.h"

namespace kiln::dag {

// The first cycle among `downstream` (pipeline -> the pipelines it triggers on), as the
// pipelines in the order they start each other, first repeated at the end ("a", "b", "a"), or
// nullopt. Deterministic: pipelines are tried in name order.
std::optional<std::vector<std::string>> FindTriggerCycle(
    const std::map<std::string, std::vector<std::string>>& trigger_on_success);

// Diagnostics for a set of pipelines (a folder): a cycle, pointed at the trigger_on_success item
// that closes it in the first pipeline of the cycle ("pipeline.trigger_on_success: pipelines
// trigger each other in a cycle: a -> b -> a"); and, when `unknown_is_error`, names that are
// not pipelines of the set.
std::vector<Diagnostic> CheckTriggers(std::span<const PipelineSpec* const> specs,
                                      bool unknown_is_error);

}  // namespace kiln::dag
