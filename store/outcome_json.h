// Private to store/: an attempt's end (scheduler::AttemptOutcome) as the jsonb of
// attempts.outcome. Texts are stored as safe UTF-8 (common/text.h).
#pragma once

#include <optional>
#include <string>

#include "scheduler/task_runner.h"

namespace kiln::store {

std::string OutcomeJson(const scheduler::AttemptOutcome& outcome);
// nullopt for text that is not such an object.
std::optional<scheduler::AttemptOutcome> ParseOutcomeJson(const std::string& text);
// The jsonb of attempts.results (plugins/collect.h): the outcome's results rebuilt from what is
// well formed (files with an absolute path, a 64-hex SHA-256 and a size; metrics that are
// finite numbers; a kind's report object as it is); nullopt when it has none.
std::optional<std::string> ResultsJson(const scheduler::AttemptOutcome& outcome);

}  // namespace kiln::store
