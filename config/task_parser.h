// Internal to config/: the keys of [defaults] and [tasks.<id>] tables, and how a task's own keys
// and the defaults combine into a dag::TaskSpec.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/toml_reader.h"
#include "dag/spec.h"

namespace kiln::config::internal {

// The keys of one task table (or of [defaults]) as written; nullopt = not given.
struct TaskFields {
  std::optional<std::string> kind;
  std::optional<std::string> command;
  std::optional<std::vector<std::string>> argv;
  std::optional<std::vector<std::string>> needs;
  std::optional<dag::TriggerRule> trigger_rule;
  std::optional<int> retries;
  std::optional<Duration> retry_delay;
  std::optional<double> retry_backoff;
  std::optional<Duration> max_retry_delay;
  std::optional<Duration> timeout;
  std::optional<std::string> pool;
  std::optional<int> slots;
  std::optional<std::map<std::string, std::string>> env;
  std::optional<std::string> workdir;
  std::optional<std::vector<int>> skip_exit_codes;
  std::optional<bool> allow_failure;
  std::optional<int> priority;
  std::optional<std::vector<std::string>> inputs;  // tasks only, like the three below
  std::optional<std::vector<std::string>> outputs;
  std::optional<std::string> metrics;
  std::optional<bool> cache;
  std::optional<dag::ForEach> for_each;  // tasks only, like max_parallel
  std::optional<int> max_parallel;
  dag::SourceLoc needs_loc;
  // A task's keys that are not the format's own, in file order: its kind's (tasks only; in
  // [defaults] such a key is unknown).
  dag::Value options;
};

enum class TableKind { kTask, kDefaults };

// Reads `table` found at `path` ("defaults" or "tasks.<id>"). Records the location of every key
// given, of every array item ("path.needs[0]") and env value ("path.env.NAME") in `locs`.
TaskFields ReadTaskFields(TomlReader& reader, const toml::table& table, const std::string& path,
                          TableKind kind, LocMap& locs);

// The task's own keys, else the defaults', else the format's defaults. command and argv are one
// choice: a task that sets either takes neither from [defaults]. env is merged, the task winning.
dag::TaskSpec MakeTask(std::string id, const TaskFields& own, const TaskFields& defaults);

}  // namespace kiln::config::internal
