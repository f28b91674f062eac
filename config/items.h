// The items of a for_each file: a JSON array written by an upstream task, read when the mapped
// task becomes ready (by the daemon; the scheduler gets them through SchedulerOptions).
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "dag/spec.h"

namespace kiln::config {

// `text` as a JSON array of strings, numbers, booleans or objects of those, at most
// dag::kMaxItems. Errors say what was found and what is accepted, e.g. "item 3 is an array; an
// item is a string, number, boolean or an object of those".
Result<std::vector<dag::Value>> ParseItems(std::string_view text);

// Reads `file` (at most 64 MiB, a regular file) and parses it; errors name the file.
Result<std::vector<dag::Value>> ReadItems(const std::filesystem::path& file);

}  // namespace kiln::config
