// `kiln task cache --options SPEC`: the program of an attempt of a task with cache = true. As
// the task's user, in its folder and under its supervision, it hashes the task's declared
// inputs and looks for an earlier successful attempt of the same cache key (the daemon found
// them: `candidates`, newest first) that read the same contents. For the first that matches it
// puts that attempt's outputs in place from the cache store (<store>/<sha256>, checked against
// the hash while copied), writes the report {"hit": {"run", "task", "attempt"}} and exits 0
// without running the task. Otherwise (no candidate, other inputs, an output no longer kept) it
// says why and executes the task's own program in its place (same process, environment and
// folder), so a miss costs one execve.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "plugins/collect.h"

namespace kiln::plugins {

struct CacheCandidate {
  int64_t run = 0;
  std::string task;
  int attempt = 0;
  std::vector<std::string> inputs;  // sha256 of each declared input, in declared order
  struct Output {
    std::string sha256;
    uint64_t bytes = 0;
  };
  std::vector<Output> outputs;  // in declared order
};

struct CacheSpec {
  CollectSpec files;   // inputs, outputs, folders, allow_absolute; cache_store = the store
  std::string report;  // where a hit is reported (<run>/.kiln/<task>/cache.json)
  std::vector<CacheCandidate> candidates;
  std::vector<std::string> argv;  // the task's own program
};

std::string CacheSpecJson(const CacheSpec& spec);
Result<CacheSpec> ParseCacheSpec(std::string_view json);
// The candidates as the store reads them: a JSON array of {"run", "task", "attempt", "results"}
// where results are the attempts' collected results (plugins/collect.h). Malformed entries are
// left out.
std::vector<CacheCandidate> CandidatesFromResults(std::string_view json);

// Puts a matching candidate's outputs in place; the candidate used, or why none (a miss).
Result<CacheCandidate> Restore(const CacheSpec& spec, std::ostream& out);

// The subcommand: 0 after a hit; after a miss it does not return (execvp of spec.argv), unless
// the program cannot be executed (127). 2 for a spec it cannot read.
int RunCache(std::string_view spec_json, std::ostream& out);

}  // namespace kiln::plugins
