// The pipeline format v1 as plain structs (see docs/pipelines.md). Produced by config/, checked by
// dag/validate.h, consumed by the scheduler. No TOML types here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "common/time.h"

namespace kiln::dag {

enum class TriggerRule {
  kAllSuccess,
  kAllFailed,
  kAllDone,
  kOneSuccess,
  kOneFailed,
  kNoneFailed,
  kNoneFailedMinOneSuccess,
};

enum class TaskState {
  kPending,
  kQueued,
  kRunning,
  kUpForRetry,
  kSuccess,
  kFailed,
  kSkipped,
  kUpstreamFailed,
  kCancelled,
  // Not terminal: waits for something other than a process, holding no slot (an approval task
  // waits for an operator). Last, so that the other states keep their numbers and letters.
  kWaiting,
};

enum class RunState { kQueued, kRunning, kSuccess, kFailed, kCancelled };

// "all_success", "running", ... exactly as in the format; Parse* return nullopt for unknown text.
std::string_view Name(TriggerRule rule);
std::string_view Name(TaskState state);
std::string_view Name(RunState state);
std::optional<TriggerRule> ParseTriggerRule(std::string_view text);
std::optional<TaskState> ParseTaskState(std::string_view text);
std::optional<RunState> ParseRunState(std::string_view text);
bool IsTerminal(TaskState state);
bool IsTerminal(RunState state);
// One letter per task state, for compact listings (the API's grid, docs/api.md): p q r u s f k
// x c w for pending, queued, running, up_for_retry, success, failed, skipped, upstream_failed,
// cancelled, waiting.
char StateLetter(TaskState state);
inline constexpr char kNoTaskLetter = '.';  // the task is not in that run

// Where a value came from in its file (1-based; 0 = unknown).
struct SourceLoc {
  int line = 0;
  int column = 0;
};

// The keys a task kind brings of its own ("Other kinds come from plugins and bring their own
// keys"), as written: a small tree of TOML values, each with where it is. config/ fills it; the
// kind's plugin reads and checks it (plugins/api.h). String values are templates.
struct Value {
  enum class Type { kBool, kInteger, kFloat, kString, kArray, kTable };
  Type type = Type::kTable;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0;
  std::string string;
  std::vector<Value> items;  // an array's items, or a table's members in file order
  std::string key;           // a table member's name
  SourceLoc loc;             // of the value
  SourceLoc key_loc;         // of a table member's key

  bool is_number() const { return type == Type::kInteger || type == Type::kFloat; }
  // A table's member, or nullptr.
  const Value* Find(std::string_view name) const;
  // The number of an integer or a float.
  double AsNumber() const { return type == Type::kInteger ? static_cast<double>(integer) : number; }
  // "a boolean", "an integer", "a float", "a string", "an array", "a table".
  std::string_view Phrase() const;
};

// One problem in a pipeline file. Printed as "file:line:col: field: message".
struct Diagnostic {
  std::string file;
  SourceLoc loc;
  std::string field;  // dotted key path, e.g. "tasks.train.needs"; may be empty
  std::string message;
  std::string ToString() const;
};

using ParamValue = std::variant<std::string, int64_t, double, bool>;
// "string", "integer", "float", "boolean"
std::string_view TypeName(const ParamValue& value);
// Canonical text: strings as is, integers in decimal, floats shortest round-trip, true/false.
std::string ToText(const ParamValue& value);
// Converts text given at trigger time to the type of `declared`; error says what was expected.
std::optional<ParamValue> ConvertLike(const ParamValue& declared, std::string_view text);

struct Param {
  std::string name;
  ParamValue default_value;
  SourceLoc loc;
};

struct RetryPolicy {
  int retries = 0;  // extra attempts after the first
  Duration retry_delay = std::chrono::seconds(10);
  double retry_backoff = 2.0;
  Duration max_retry_delay = std::chrono::hours(1);
};

struct EnvVar {
  std::string name;
  std::string value;  // a template
};

// How a task's kind runs it: as a process (an attempt under supervision, holding pool slots),
// or by waiting in the daemon, with no process, slot or attempt: for an operator's decision
// (kind = "approval"), or for a file, a URL or an instant (kind = "wait").
enum class Execution { kProcess, kApproval, kWait };

// for_each: where a mapped task's items come from (docs/pipelines.md). Each item becomes an
// instance of the task, `train[0]`, `train[1]`, ...
struct ForEach {
  std::string file;          // a template naming a JSON array file written upstream; "" = inline
  std::vector<Value> items;  // the inline array's items: strings, numbers, booleans or tables
  SourceLoc loc;
};
// The most items a mapped task may have.
inline constexpr size_t kMaxItems = 10000;

struct TaskSpec {
  std::string id;
  std::string kind = "shell";
  Execution execution = Execution::kProcess;     // set by the loader from the kind
  std::optional<std::string> command;            // template; run with /bin/sh -c
  std::optional<std::vector<std::string>> argv;  // templates; run with execve
  std::vector<std::string> needs;
  TriggerRule trigger_rule = TriggerRule::kAllSuccess;
  RetryPolicy retry;
  Duration timeout{0};  // per attempt; 0 = none
  std::string pool = "default";
  int slots = 1;
  std::vector<EnvVar> env;  // sorted by name, unique
  std::string workdir;      // relative to the pipeline file's folder; empty = that folder
  std::vector<int> skip_exit_codes;
  bool allow_failure = false;
  int priority = 0;
  // Files the task reads and writes (templates; relative paths are read from the pipeline
  // file's folder): hashed when an attempt succeeds, for lineage and the cache. A declared output
  // missing then fails the attempt.
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::string metrics;  // template: a flat JSON object of numbers it writes; empty = none
  bool cache = false;   // reuse an earlier identical success (needs outputs)
  std::optional<ForEach> for_each;  // set: one instance per item
  int max_parallel = 0;             // instances running at once; 0 = no limit
  // The keys of kinds other than shell (a table; for shell, any key here is unknown).
  Value options;
  SourceLoc loc;        // of the [tasks.<id>] header
  SourceLoc needs_loc;  // of the needs array (for cycle errors)
};

// Hash map from dotted key paths to locations, searchable by string_view.
struct LocHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
using LocMap = std::unordered_map<std::string, SourceLoc, LocHash, std::equal_to<>>;

// [[notify]]: a webhook told about runs (docs/pipelines.md). In a pipeline file or kiln.toml.
struct NotifySpec {
  std::vector<std::string> on;  // success, failed, cancelled, sla_missed, retry
  std::string webhook;          // template: {{ secrets.NAME }}, {{ pipeline.name }}, {{ run.id }}
  std::string format = "json";  // json | slack
  SourceLoc loc;                // of the table
  SourceLoc webhook_loc;
  size_t index = 0;  // its place among the file's [[notify]] tables
};
// The events [[notify]] accepts, in the format's order.
inline constexpr std::string_view kNotifyEvents[] = {"success", "failed", "cancelled", "sla_missed",
                                                     "retry"};

struct PipelineSpec {
  std::string name;
  std::string description;
  std::string schedule;  // empty = none
  std::string timezone = "UTC";
  std::string catchup = "none";  // none | latest | all
  int max_active_runs = 1;
  std::string overlap = "skip";  // skip | queue | cancel_running
  std::vector<std::string> tags;
  bool paused = false;
  // Pipelines whose successful runs start a run of this one (pipeline-completion triggers).
  std::vector<std::string> trigger_on_success;
  // A run not ended this long after its logical date misses its SLA (0 = none).
  Duration sla{0};
  std::vector<NotifySpec> notify;  // [[notify]] tables, in file order
  std::vector<Param> params;       // in file order
  std::vector<TaskSpec> tasks;     // in file order; TaskId = index here

  std::filesystem::path file;  // the file it was read from (absolute)
  std::string content_hash;    // hex SHA-256 of the file's bytes
  std::string source;          // the file's bytes, as hashed

  // Where each key given in the file is, by dotted path: "pipeline", "pipeline.name",
  // "params.epochs", "defaults.retries", "tasks.train", "tasks.train.slots",
  // "tasks.train.env.PATH", and array items as "tasks.train.needs[0]". Filled by config/ so that
  // Validate() can point at the offending value; empty for specs built in code.
  LocMap locs;
};

}  // namespace kiln::dag
