// `kiln task collect`: after a task exits 0, hashes (SHA-256) its declared inputs and outputs
// and reads its metrics file, as the task's user, and prints the attempt's results. The
// executor runs it (executor/collector.h) and the daemon records what it printed; neither opens
// a task's files itself.
//
// The results, one JSON object:
//   {"inputs":  [{"path": "/abs/train.csv", "sha256": "<64 hex>", "bytes": 123}, ...],
//    "outputs": [...],
//    "metrics": {"accuracy": 0.93, ...},        (only when the task declares metrics)
//    "report": {...}}                            (a kind's report, when it wrote one)
// Paths are absolute and lexically normal. A declared file that is missing, not a regular file,
// unreadable or outside its folder, and a metrics file that is not a flat JSON object of
// finite numbers, fail the attempt: the message names the key, the file and what is wrong.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kiln::plugins {

struct CollectSpec {
  std::vector<std::string> inputs;   // rendered; relative ones are read from pipeline_dir
  std::vector<std::string> outputs;  // likewise
  std::string metrics;               // empty = none
  // A kind's report in the run folder (<run>/.kiln/<task>/<kind>.json), kept with the results
  // when it is there: a JSON object of at most kMaxReportBytes. Its absence or a problem with it
  // does not fail the attempt ("report_error" says what).
  std::string report;
  std::string pipeline_dir;  // absolute
  std::string run_dir;       // absolute
  // Absolute paths outside both folders are accepted ([executor] allow_absolute_paths).
  bool allow_absolute = false;
  // A task with cache = true: the report `kiln task cache` wrote (kept as "cache" in the
  // results), and the folder its outputs are kept in by content (<store>/<sha256>, for later
  // runs to restore). A copy that fails is said in "cache_error"; it does not fail the attempt.
  std::string cache_report;
  std::string cache_store;
};

// A declared file's place and content.
struct FileHash {
  std::string path;  // absolute, lexically normal
  std::string sha256;
  uint64_t bytes = 0;
};

// The absolute path of a declared file (relative ones from pipeline_dir), or why it may not be
// used (outside the folders).
Result<std::string> DeclaredPath(const CollectSpec& spec, const std::string& path);
// Hashes a declared file as the collector does (openat2 beneath its folder, regular files only).
Result<FileHash> HashDeclared(const CollectSpec& spec, const std::string& path);

// Limits of a metrics file.
inline constexpr size_t kMaxMetricsBytes = size_t{1} << 20;
inline constexpr size_t kMaxMetrics = 1000;
inline constexpr size_t kMaxMetricNameBytes = 200;
inline constexpr size_t kMaxReportBytes = size_t{1} << 20;

std::string CollectSpecJson(const CollectSpec& spec);
Result<CollectSpec> ParseCollectSpec(std::string_view json);

// The results object, or why the attempt fails (every problem, one per line).
Result<std::string> CollectResults(const CollectSpec& spec);

// A metrics file read like the collector reads one (a regular file, never waited on, at most
// kMaxMetricsBytes, a flat JSON object of numbers), from the working folder when relative; the
// error names what is wrong ("key 'accuracy' is a string; ...").
Result<std::map<std::string, double>> ReadMetricsFile(const std::string& path);

// The subcommand: prints the results and returns 0, or prints why and returns 1 (2 for a spec
// it cannot read).
int RunCollect(std::string_view spec_json, std::ostream& out);

}  // namespace kiln::plugins
