// `kiln run ... --output json` for end-to-end tests: its output and the run it printed.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness.h"

namespace kiln::e2e {

struct Ran {
  Output output;
  nlohmann::json run;  // what --output json printed (null when it printed nothing)
};

// Runs `kiln run p.toml --output json <extra...>` in `dir`.
Ran RunJson(const TempDir& dir, const std::vector<std::string>& extra);

// "id:state" of each task of a run as JSON, in its order, separated by spaces.
std::string TaskStates(const nlohmann::json& run);

}  // namespace kiln::e2e
