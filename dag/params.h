// Params given at trigger time, checked against a pipeline's declared params.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "dag/spec.h"

namespace kiln::dag {

using ParamList = std::vector<std::pair<std::string, ParamValue>>;

// Every declared param with its default, overridden by `overrides` (name, text). Errors
// (kInvalidArgument): an undeclared name ("undeclared param 'x' (declared: a, b)"), a value that
// does not convert to the declared type ("param 'epochs' expects an integer, got 'ten'"), the
// same name twice. Pure. On error, `failed_name` (when given) receives the offending name.
Result<ParamList> ResolveParams(const PipelineSpec& spec,
                                const std::vector<std::pair<std::string, std::string>>& overrides,
                                std::string* failed_name = nullptr);

// Splits "name=value" (the first '=' separates; the value may contain '=').
Result<std::pair<std::string, std::string>> SplitAssignment(std::string_view text);

}  // namespace kiln::dag
