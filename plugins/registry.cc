#include "plugins/registry.h"

#include <algorithm>
#include <iterator>

#include "common/text.h"
#include "plugins/kinds.h"

namespace kiln::plugins {

namespace {

// The format's keys for a task of any kind but shell (command, argv and skip_exit_codes are
// shell's; dag::Validate reports them on other kinds).
constexpr std::string_view kCommonKeys[] = {
    "allow_failure", "cache",       "env",     "inputs",  "kind",        "max_retry_delay",
    "metrics",       "needs",       "outputs", "pool",    "priority",    "retries",
    "retry_backoff", "retry_delay", "slots",   "timeout", "trigger_rule"};

// Common keys that only mean something for a task that runs a process: refused on the other
// kinds when written in the task's own table (a value from [defaults] is ignored there).
constexpr std::string_view kProcessKeys[] = {
    "cache",    "env",     "inputs",        "max_retry_delay", "metrics", "outputs",
    "priority", "retries", "retry_backoff", "retry_delay",     "slots",   "pool"};

}  // namespace

Registry::Registry() = default;

void Registry::Add(std::unique_ptr<Kind> kind) { kinds_.push_back(std::move(kind)); }

const Kind* Registry::Find(std::string_view name) const {
  for (const auto& kind : kinds_) {
    if (kind->Name() == name) return kind.get();
  }
  return nullptr;
}

std::vector<std::string_view> Registry::Names() const {
  std::vector<std::string_view> names = {"shell"};
  for (const auto& kind : kinds_) names.push_back(kind->Name());
  std::sort(names.begin(), names.end());
  return names;
}

bool Registry::Has(std::string_view kind) const { return kind == "shell" || Find(kind); }

void Registry::Check(const dag::TaskSpec& task, const dag::PipelineSpec& pipeline,
                     std::vector<dag::Diagnostic>& out) const {
  const Kind* kind = Find(task.kind);
  if (kind == nullptr) return;
  const bool process = kind->Runs() == dag::Execution::kProcess;
  std::vector<std::string_view> accepted;
  for (std::string_view key : kCommonKeys) {
    if (process || std::find(std::begin(kProcessKeys), std::end(kProcessKeys), key) ==
                       std::end(kProcessKeys)) {
      accepted.push_back(key);
    }
  }
  for (std::string_view key : kind->Keys()) accepted.push_back(key);
  std::sort(accepted.begin(), accepted.end());
  const std::string field = "tasks." + task.id;
  dag::TaskSpec known = task;
  known.options.items.clear();
  Problems problems(out);
  for (const dag::Value& key : task.options.items) {
    const auto& own = kind->Keys();
    if (std::find(own.begin(), own.end(), key.key) == own.end()) {
      problems.Add(field + "." + key.key, key.key_loc,
                   "unknown key '" + key.key + "'" + SuggestAccepted(key.key, accepted));
    } else {
      known.options.items.push_back(key);
    }
  }
  const size_t first = out.size();
  if (auto json = ToJson(task.options); json.ok() && json->size() > kMaxOptionsBytes) {
    problems.Add(field, task.loc,
                 "the task's keys take " + std::to_string(json->size()) + " bytes; at most " +
                     std::to_string(kMaxOptionsBytes) +
                     " (put long lists in a file the task reads)");
  }
  if (!process) {
    for (std::string_view key : kProcessKeys) {
      auto loc = pipeline.locs.find(field + "." + std::string(key));
      if (loc == pipeline.locs.end()) continue;
      if (key == "cache" && task.cache) continue;  // dag::Validate: "cache = true is for shell"
      problems.Add(field + "." + std::string(key), loc->second,
                   "'" + std::string(key) + "' has no meaning for kind '" + task.kind +
                       "': it runs no process and holds no pool slot; remove it");
    }
  }
  kind->Check(known, field, problems);
  // A problem of the task as a whole (a key missing) is shown at the task's table.
  for (size_t i = first; i < out.size(); ++i) {
    if (out[i].loc.line == 0) out[i].loc = task.loc;
  }
}

Result<std::vector<std::string>> Registry::Argv(std::string_view kind, const dag::Value& options,
                                                const std::string& kiln) const {
  if (Find(kind) == nullptr) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "unknown task kind '" + std::string(kind) + "'");
  }
  auto json = ToJson(options);
  if (!json.ok()) return json.status();
  // MAX_ARG_STRLEN: one argument of more than 32 pages cannot be passed to a program.
  constexpr size_t kMaxArgument = 128 * 1024 - 1;
  if (json->size() > kMaxArgument) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "the task's keys take " + std::to_string(json->size()) +
                             " bytes once rendered; at most " + std::to_string(kMaxArgument) +
                             " fit in a process argument");
  }
  return std::vector<std::string>{kiln, "task", std::string(kind), "--options",
                                  std::move(json).value()};
}

std::vector<int> Registry::SkipExitCodes(std::string_view kind) const {
  const Kind* k = Find(kind);
  return k == nullptr ? std::vector<int>{} : k->SkipExitCodes();
}

dag::Execution Registry::ExecutionOf(std::string_view kind) const {
  const Kind* k = Find(kind);
  return k == nullptr ? dag::Execution::kProcess : k->Runs();
}

const Registry& Builtins() {
  static const Registry* registry = [] {
    auto* r = new Registry();
    r->Add(MakeApprovalKind());
    r->Add(MakeWaitKind());
    r->Add(MakeCheckKind());
    r->Add(MakeDriftKind());
    r->Add(MakeGateKind());
    return r;
  }();
  return *registry;
}

}  // namespace kiln::plugins
