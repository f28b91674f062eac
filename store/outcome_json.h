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

}  // namespace kiln::store
