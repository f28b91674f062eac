// The facade the HTTP layer talks to. Implemented by the composition root (cli/), which ties the
// store and the scheduler together. Every method is thread-safe: it may be called from any HTTP
// worker thread, and never touches scheduler state directly (work is posted to its thread).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/status.h"

namespace kiln::scheduler {

struct TriggerRequest {
  std::string pipeline;
  std::vector<std::pair<std::string, std::string>> params;  // name, value as text
  std::optional<std::string> idempotency_key;
  std::string note;
  std::string actor;  // who asked (token name, "cli", ...)
};

struct TriggerResult {
  RunId id{};
  bool existing = false;  // the idempotency key matched an earlier run
};

class Service {
 public:
  virtual ~Service() = default;
  // Creates a run durably and hands it to the scheduler. Errors: kNotFound (no such pipeline),
  // kInvalidArgument (params), kConflict (pipeline has a load error), kUnavailable (database).
  virtual Result<TriggerResult> Trigger(const TriggerRequest& request) = 0;
};

}  // namespace kiln::scheduler
