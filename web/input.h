// Checks of values that arrive in request paths and query strings (docs/api.md, "Conventions").
// Pure. Messages name the value, quoted with Quoted().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/text.h"

namespace kiln::web {

// Ok when `name` matches ^[a-z0-9][a-z0-9_.-]{0,63}$, else kInvalidArgument
// "pipeline name 'X' must match ^[a-z0-9][a-z0-9_.-]{0,63}$".
Status CheckPipelineName(std::string_view name);
// Ok when `id` matches ^[a-z0-9][a-z0-9_-]{0,63}$, or is an instance of one ("train[3]", index
// 0..9999), else kInvalidArgument "task id 'X' must ...".
Status CheckTaskId(std::string_view id);
// Decimal digits only (1-1000 of them, no sign): the value, saturated at 2^63-1 (so that a huge
// limit means "as many as allowed"); nullopt for anything else.
std::optional<int64_t> ParseCount(std::string_view text);
// `value` in single quotes for an error message: at most 64 bytes of it (then "..."), control
// characters shown as '?'. Never echoes a whole request value back.
std::string Quoted(std::string_view value);

}  // namespace kiln::web
