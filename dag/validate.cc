#include "dag/validate.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include "common/text.h"
#include "dag/cron.h"
#include "dag/schedule.h"
#include "dag/shell_scripts.h"
#include "dag/template.h"

namespace kiln::dag {

namespace {

// The name patterns of the format: a first character, further characters, a maximum length.
struct NamePattern {
  std::string_view first;
  std::string_view rest;
  size_t max_length;
  std::string_view rule;  // how it reads to someone who broke it
};

bool Matches(std::string_view text, const NamePattern& p) {
  if (text.empty() || text.size() > p.max_length) return false;
  if (p.first.find(text.front()) == std::string_view::npos) return false;
  return text.find_first_not_of(p.rest) == std::string_view::npos;
}

constexpr NamePattern kPipelineName = {
    "abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghijklmnopqrstuvwxyz0123456789_.-", 64,
    "use 1-64 characters from a-z, 0-9, '_', '.', '-', starting with a letter or digit "
    "(^[a-z0-9][a-z0-9_.-]{0,63}$)"};
constexpr NamePattern kTaskId = {
    "abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghijklmnopqrstuvwxyz0123456789_-", 64,
    "use 1-64 characters from a-z, 0-9, '_', '-', starting with a letter or digit "
    "(^[a-z0-9][a-z0-9_-]{0,63}$)"};
constexpr NamePattern kParamName = {
    "abcdefghijklmnopqrstuvwxyz_", "abcdefghijklmnopqrstuvwxyz0123456789_", 64,
    "use 1-64 characters from a-z, 0-9, '_', starting with a letter or '_' "
    "(^[a-z_][a-z0-9_]{0,63}$)"};
constexpr NamePattern kEnvName = {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_",
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_",
                                  std::string_view::npos,
                                  "use letters, digits and '_', not starting with a digit"};

constexpr size_t kMaxListed = 20;

// "a, b, c" (at most kMaxListed names, then "and N more").
std::string JoinNames(const std::vector<std::string_view>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < kMaxListed; ++i) {
    out += (i == 0 ? "" : ", ") + std::string(names[i]);
  }
  if (names.size() > kMaxListed) {
    out += ", and " + std::to_string(names.size() - kMaxListed) + " more";
  }
  return out;
}

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

class Validator {
 public:
  Validator(const PipelineSpec& spec, const KindCatalog& kinds, const SecretNames* secrets)
      : spec_(spec), kinds_(kinds), secrets_(secrets), known_(TemplateNames(spec)) {
    for (size_t i = 0; i < spec.tasks.size(); ++i) index_.emplace(spec.tasks[i].id, i);
    for (const std::string& name : known_) dummy_values_.emplace(name, "x");
  }

  std::vector<Diagnostic> Run();

 private:
  struct Place {
    std::string field;
    SourceLoc loc;
  };

  void Add(const Place& place, std::string message) {
    out_.push_back({spec_.file.string(), place.loc, place.field, std::move(message)});
  }
  SourceLoc Loc(std::string_view path, SourceLoc fallback = {}) const;
  Place TaskKey(const TaskSpec& task, std::string_view key, std::string_view item = "") const;

  void CheckPipeline();
  void CheckParams();
  void CheckTask(const TaskSpec& task);
  void CheckKind(const TaskSpec& task);
  void CheckNumbers(const TaskSpec& task);
  void CheckEnv(const TaskSpec& task);
  void CheckNeeds(const TaskSpec& task);
  void CheckShell(const TaskSpec& task);
  void CheckNotShell(const TaskSpec& task);
  void CheckTemplates(const TaskSpec& task);
  void CheckFiles(const TaskSpec& task);
  void CheckValueTemplates(const std::string& field, const Value& value);
  void CheckTemplate(const Place& place, std::string_view text, bool shell,
                     bool secrets_allowed = false);
  std::vector<std::vector<size_t>> NeedsGraph() const;
  void CheckCycles();
  void CheckNotify();
  void CheckForEach(const TaskSpec& task);
  std::set<std::string> CheckItemRefs(const Place& place, std::string_view text);

  const PipelineSpec& spec_;
  const KindCatalog& kinds_;
  const SecretNames* secrets_;
  const TaskSpec* task_ = nullptr;  // the task being checked
  bool reading_items_ = false;      // checking the template of a for_each file
  const std::set<std::string> known_;
  TemplateValues dummy_values_;
  std::unordered_map<std::string_view, size_t> index_;  // task id -> first task with it
  std::vector<Diagnostic> out_;
};

SourceLoc Validator::Loc(std::string_view path, SourceLoc fallback) const {
  auto it = spec_.locs.find(path);
  return it == spec_.locs.end() ? fallback : it->second;
}

// A task's key is reported where it was written: in the task, else in [defaults] (a bad default
// is one diagnostic, not one per task: duplicates are removed at the end), else at the task.
Validator::Place Validator::TaskKey(const TaskSpec& task, std::string_view key,
                                    std::string_view item) const {
  const std::string own = "tasks." + task.id + "." + std::string(key);
  const std::string from_defaults = "defaults." + std::string(key);
  for (const std::string& field : {own, from_defaults}) {
    if (auto it = spec_.locs.find(field + std::string(item)); it != spec_.locs.end()) {
      return {field, it->second};
    }
    if (auto it = spec_.locs.find(field); it != spec_.locs.end()) return {field, it->second};
  }
  return {own, task.loc};
}

void Validator::CheckPipeline() {
  // Missing altogether: shown at the file's start, so that every error has a line and column.
  const SourceLoc name_loc = Loc("pipeline.name", Loc("pipeline", SourceLoc{1, 1}));
  if (spec_.name.empty()) {
    Add({"pipeline.name", name_loc},
        "missing; add name = \"...\" to [pipeline]; " + std::string(kPipelineName.rule));
  } else if (!Matches(spec_.name, kPipelineName)) {
    Add({"pipeline.name", name_loc},
        "invalid pipeline name " + Quote(spec_.name) + "; " + std::string(kPipelineName.rule));
  }
  if (spec_.schedule.empty() && spec_.locs.count("pipeline.schedule") != 0) {
    // Written but empty: a schedule left unfinished, not "no schedule" (that is no key).
    Add({"pipeline.schedule", Loc("pipeline.schedule", Loc("pipeline"))},
        "empty; give a 5-field cron expression (\"0 3 * * *\"), a preset (@hourly, @daily, "
        "@weekly, @monthly, @yearly) or an interval (\"every 15m\"), or remove the key for a "
        "pipeline that is only triggered");
  } else if (!spec_.schedule.empty()) {
    if (auto schedule = ParseSchedule(spec_.schedule); !schedule.ok()) {
      Add({"pipeline.schedule", Loc("pipeline.schedule", Loc("pipeline"))}, schedule.message());
    }
  }
  for (size_t i = 0; i < spec_.tags.size(); ++i) {
    if (std::find(spec_.tags.begin(), spec_.tags.begin() + i, spec_.tags[i]) !=
        spec_.tags.begin() + i) {
      const std::string field = "pipeline.tags[" + std::to_string(i) + "]";
      Add({"pipeline.tags", Loc(field, Loc("pipeline.tags", Loc("pipeline")))},
          "tag " + Quote(spec_.tags[i]) + " is listed twice");
    }
  }
  // UTC (the default) is always known: looking a zone up loads the whole time zone database.
  if (auto zone = spec_.timezone == "UTC" ? Result<const date::time_zone*>(nullptr)
                                          : FindZone(spec_.timezone);
      !zone.ok()) {
    Add({"pipeline.timezone", Loc("pipeline.timezone", Loc("pipeline"))}, zone.message());
  }
  std::set<std::string_view> triggers;
  for (size_t i = 0; i < spec_.trigger_on_success.size(); ++i) {
    const std::string& up = spec_.trigger_on_success[i];
    const std::string path = "pipeline.trigger_on_success";
    const Place place{path, Loc(path + "[" + std::to_string(i) + "]", Loc(path))};
    if (!Matches(up, kPipelineName)) {
      Add(place, "invalid pipeline name " + Quote(up) + "; " + std::string(kPipelineName.rule));
    } else if (up == spec_.name) {
      Add(place, "pipeline " + Quote(up) +
                     " cannot start itself: its runs would trigger each other forever");
    } else if (!triggers.insert(up).second) {
      Add(place, Quote(up) + " is listed twice; list each pipeline once");
    }
  }
  if (spec_.catchup != "none" && spec_.catchup != "latest" && spec_.catchup != "all") {
    Add({"pipeline.catchup", Loc("pipeline.catchup")},
        "unknown catchup " + Quote(spec_.catchup) + " (accepted: none, latest, all)");
  }
  if (spec_.overlap != "skip" && spec_.overlap != "queue" && spec_.overlap != "cancel_running") {
    Add({"pipeline.overlap", Loc("pipeline.overlap")},
        "unknown overlap " + Quote(spec_.overlap) + " (accepted: skip, queue, cancel_running)");
  }
  if (spec_.max_active_runs < 1) {
    Add({"pipeline.max_active_runs", Loc("pipeline.max_active_runs")},
        "must be at least 1, got " + std::to_string(spec_.max_active_runs));
  }
  if (spec_.tasks.empty()) {
    Add({"tasks", Loc("tasks", SourceLoc{1, 1})},
        "no tasks; define at least one [tasks.<id>] table");
  }
}

void Validator::CheckParams() {
  std::set<std::string_view> seen;
  for (const Param& p : spec_.params) {
    const Place place{"params." + p.name, p.loc};
    if (!Matches(p.name, kParamName)) {
      Add(place, "invalid param name " + Quote(p.name) + "; " + std::string(kParamName.rule));
    }
    if (!seen.insert(p.name).second) Add(place, "param " + Quote(p.name) + " is declared twice");
  }
}

void Validator::CheckTask(const TaskSpec& task) {
  auto place = [&] { return Place{"tasks." + task.id, task.loc}; };
  if (!Matches(task.id, kTaskId)) {
    Add(place(), "invalid task id " + Quote(task.id) + "; " + std::string(kTaskId.rule));
  }
  if (index_.at(task.id) != static_cast<size_t>(&task - spec_.tasks.data())) {
    Add(place(), "task " + Quote(task.id) + " is defined twice");
  }
  CheckKind(task);
  CheckNumbers(task);
  CheckEnv(task);
  CheckNeeds(task);
  task_ = &task;
  CheckForEach(task);
  CheckTemplates(task);
  CheckFiles(task);
  task_ = nullptr;
}

void Validator::CheckKind(const TaskSpec& task) {
  if (!kinds_.Has(task.kind)) {
    const std::vector<std::string_view> names = kinds_.Names();
    std::string list;
    for (std::string_view n : names) list += (list.empty() ? "" : ", ") + std::string(n);
    std::string hint;
    if (std::string_view close = Closest(task.kind, names); !close.empty()) {
      hint = "; did you mean " + Quote(close) + "?";
    }
    Add(TaskKey(task, "kind"),
        "unknown task kind " + Quote(task.kind) + hint + " (known: " + list + ")");
    return;
  }
  if (task.kind != "shell") {
    CheckNotShell(task);
    std::vector<Diagnostic> found;
    kinds_.Check(task, spec_, found);
    for (Diagnostic& d : found) {
      d.file = spec_.file.string();
      out_.push_back(std::move(d));
    }
    return;
  }
  CheckShell(task);
}

// The keys of a shell task only, given to a task of another kind; a key no kind knows is unknown.
void Validator::CheckNotShell(const TaskSpec& task) {
  for (std::string_view key : {"command", "argv", "skip_exit_codes", "workdir"}) {
    const std::string field = "tasks." + task.id + "." + std::string(key);
    if (auto it = spec_.locs.find(field); it != spec_.locs.end()) {
      Add({field, it->second}, std::string(key) + " is for kind \"shell\"; a task of kind " +
                                   Quote(task.kind) + " runs what its kind says");
    }
  }
}

void Validator::CheckShell(const TaskSpec& task) {
  for (const Value& key : task.options.items) {
    Add({"tasks." + task.id + "." + key.key, key.key_loc},
        "unknown key " + Quote(key.key) + SuggestAccepted(key.key, TaskKeys()));
  }
  auto place = [&] { return Place{"tasks." + task.id, task.loc}; };
  if (task.command && task.argv) {
    Add(place(), "both command and argv are set; set exactly one");
  } else if (!task.command && !task.argv) {
    Add(place(), "no command; set command (run with /bin/sh -c) or argv (run directly)");
  }
  if (task.command && task.command->find_first_not_of(" \t\n") == std::string::npos) {
    Add(TaskKey(task, "command"), "empty command; expected a shell command line");
  }
  if (task.argv && task.argv->empty()) {
    Add(TaskKey(task, "argv"), "empty argv; expected at least the program to run");
  }
  if (task.workdir.find("{{") != std::string::npos) {
    // A folder chosen per run would be a path built from a value: cd to it in the command.
    Add(TaskKey(task, "workdir"),
        "workdir is not a template; give a fixed folder (relative to the pipeline's folder), and "
        "cd into a folder that depends on the run inside the command (cd {{ run.dir }}/...)");
  }
}

void Validator::CheckNumbers(const TaskSpec& task) {
  if (task.slots < 1) {
    Add(TaskKey(task, "slots"), "must be at least 1, got " + std::to_string(task.slots));
  }
  if (task.retry.retries < 0) {
    Add(TaskKey(task, "retries"), "must be 0 or more, got " + std::to_string(task.retry.retries));
  }
  if (!(task.retry.retry_backoff >= 1.0)) {
    Add(TaskKey(task, "retry_backoff"),
        "must be at least 1.0, got " + ToText(ParamValue(task.retry.retry_backoff)));
  }
  const std::pair<std::string_view, Duration> durations[] = {
      {"retry_delay", task.retry.retry_delay},
      {"max_retry_delay", task.retry.max_retry_delay},
      {"timeout", task.timeout}};
  for (const auto& [key, value] : durations) {
    if (value < Duration(0)) Add(TaskKey(task, key), "must not be negative");
  }
  if (task.pool.empty()) Add(TaskKey(task, "pool"), "empty pool name; the default is \"default\"");
  for (size_t i = 0; i < task.skip_exit_codes.size(); ++i) {
    const int code = task.skip_exit_codes[i];
    if (code < 0 || code > 255) {
      Add(TaskKey(task, "skip_exit_codes", "[" + std::to_string(i) + "]"),
          "exit code " + std::to_string(code) + " is out of range; exit codes are 0-255");
    } else if (std::find(task.skip_exit_codes.begin(), task.skip_exit_codes.begin() + i, code) !=
               task.skip_exit_codes.begin() + i) {
      Add(TaskKey(task, "skip_exit_codes", "[" + std::to_string(i) + "]"),
          "exit code " + std::to_string(code) + " is listed twice");
    }
  }
}

void Validator::CheckEnv(const TaskSpec& task) {
  std::set<std::string_view> seen;
  for (const EnvVar& var : task.env) {
    auto place = [&] { return TaskKey(task, "env." + var.name); };
    if (!Matches(var.name, kEnvName)) {
      Add(place(), "invalid environment variable name " + Quote(var.name) + "; " +
                       std::string(kEnvName.rule));
    }
    if (!seen.insert(var.name).second) {
      Add(place(), "environment variable " + Quote(var.name) + " is set twice");
    }
  }
}

void Validator::CheckNeeds(const TaskSpec& task) {
  std::set<std::string_view> seen;
  for (size_t i = 0; i < task.needs.size(); ++i) {
    const std::string& need = task.needs[i];
    // Where the entry was written: looked up only for an error (10,000-task files stay cheap).
    auto place = [&] {
      const std::string path = "tasks." + task.id + ".needs";
      const SourceLoc array_loc = task.needs_loc.line > 0 ? task.needs_loc : task.loc;
      return Place{path, Loc(path + "[" + std::to_string(i) + "]", array_loc)};
    };
    if (need == task.id) {
      Add(place(), "task " + Quote(task.id) + " needs itself; remove it from needs");
    } else if (!seen.insert(need).second) {
      Add(place(), Quote(need) + " is listed twice; list each upstream task once");
    } else if (!index_.contains(need)) {
      std::vector<std::string_view> ids;
      for (const TaskSpec& t : spec_.tasks) ids.push_back(t.id);
      Add(place(), "unknown task " + Quote(need) + " (defined tasks: " + JoinNames(ids) + ")");
    }
  }
}

// Text without "{{" has nothing to check; the common case stays cheap on 10,000-task files.
void Validator::CheckTemplates(const TaskSpec& task) {
  auto has_template = [](std::string_view text) {
    return text.find("{{") != std::string_view::npos;
  };
  if (task.command && has_template(*task.command)) {
    CheckTemplate(TaskKey(task, "command"), *task.command, /*shell=*/true);
  }
  if (task.argv) {
    std::vector<bool> script;  // found only for an argv with a template
    for (size_t i = 0; i < task.argv->size(); ++i) {
      if (!has_template((*task.argv)[i])) continue;
      if (script.empty()) script = ShellScripts(*task.argv);
      const Place place = TaskKey(task, "argv", "[" + std::to_string(i) + "]");
      if (script[i] && NamesOutsideValue((*task.argv)[i])) {
        // Rendered as they are, values there would be shell code.
        Add(place,
            "a param or an item in the script a shell runs would be shell code, not a word; "
            "pass it as an argument after the script (\"$1\") or use command, where templates "
            "are shell-quoted");
        continue;
      }
      CheckTemplate(place, (*task.argv)[i], /*shell=*/false, /*secrets_allowed=*/true);
    }
  }
  for (const EnvVar& var : task.env) {
    if (!has_template(var.value)) continue;
    CheckTemplate(TaskKey(task, "env." + var.name), var.value, /*shell=*/false,
                  /*secrets_allowed=*/true);
  }
  if (task.kind != "shell") CheckValueTemplates("tasks." + task.id, task.options);
}

// inputs, outputs and metrics: templated paths, read from the pipeline's folder when relative,
// which they may not leave (what templates make of them is checked when the task ends).
void Validator::CheckFiles(const TaskSpec& task) {
  auto check = [&](const Place& place, const std::string& path) {
    if (path.empty()) {
      Add(place,
          "empty path; expected a file, relative to the pipeline's folder or under "
          "{{ run.dir }}");
      return;
    }
    if (path.find("{{") != std::string::npos) {
      CheckTemplate(place, path, /*shell=*/false);
      return;
    }
    const std::filesystem::path p(path);
    if (p.is_relative()) {
      const std::filesystem::path normal = p.lexically_normal();
      if (!normal.empty() && *normal.begin() == "..") {
        Add(place, "path " + Quote(path) +
                       " leaves the pipeline's folder; use a path inside "
                       "it or under {{ run.dir }}");
      }
    }
  };
  for (const auto* list : {&task.inputs, &task.outputs}) {
    const std::string key = list == &task.inputs ? "inputs" : "outputs";
    std::set<std::string_view> seen;
    for (size_t i = 0; i < list->size(); ++i) {
      const Place place = TaskKey(task, key, "[" + std::to_string(i) + "]");
      check(place, (*list)[i]);
      if (!seen.insert((*list)[i]).second) {
        Add(place, Quote((*list)[i]) + " is listed twice; list each file once");
      }
    }
  }
  if (spec_.locs.contains("tasks." + task.id + ".metrics")) {
    check(TaskKey(task, "metrics"), task.metrics);
  }
  // A hit puts back the declared outputs only: what else an attempt leaves (a kind's report, a
  // metrics file not among the outputs) would be missing. Said alone: what the other checks
  // below ask for would not make it cacheable.
  if (task.cache && task.kind != "shell") {
    Add(TaskKey(task, "cache"), "cache = true is for shell tasks; a task of kind '" + task.kind +
                                    "' decides on every run (its report is not cached)");
    return;
  }
  if (task.cache && task.outputs.empty()) {
    Add(TaskKey(task, "cache"),
        "cache = true needs outputs: a cached task is skipped only when the files it wrote "
        "earlier are still there; list them in outputs");
  }
  if (task.cache && !task.metrics.empty() &&
      std::find(task.outputs.begin(), task.outputs.end(), task.metrics) == task.outputs.end()) {
    Add(TaskKey(task, "cache"), "cache = true with metrics: list the metrics file '" +
                                    task.metrics +
                                    "' in outputs too, so that a cache hit puts it back");
  }
}

// Every string among a kind's keys is a template, rendered byte for byte.
void Validator::CheckValueTemplates(const std::string& field, const Value& value) {
  if (value.type == Value::Type::kString) {
    if (value.string.find("{{") != std::string::npos) {
      CheckTemplate({field, value.loc}, value.string, /*shell=*/false);
    }
    return;
  }
  for (size_t i = 0; i < value.items.size(); ++i) {
    const Value& item = value.items[i];
    CheckValueTemplates(value.type == Value::Type::kTable ? field + "." + item.key
                                                          : field + "[" + std::to_string(i) + "]",
                        item);
  }
}

void Validator::CheckTemplate(const Place& place, std::string_view text, bool shell,
                              bool secrets_allowed) {
  // Secrets are checked here (the generic check does not know them), each name once.
  std::set<std::string> secret_refs;
  for (std::string_view ref : TemplateRefs(text)) {
    if (!ref.starts_with(kSecretsPrefix) || !secret_refs.emplace(ref).second) continue;
    const std::string_view name = ref.substr(kSecretsPrefix.size());
    if (!secrets_allowed) {
      // A task that runs no process (a wait) has no env to pass it in.
      const bool process =
          task_ == nullptr || kinds_.ExecutionOf(task_->kind) == Execution::kProcess;
      Add(place, "{{ " + std::string(ref) +
                     " }} is not allowed here: secrets may appear in env values, argv and notify "
                     "webhooks only" +
                     (process ? "; pass it in env (e.g. env.TOKEN = \"{{ " + std::string(ref) +
                                    " }}\") and read $TOKEN"
                              : std::string()));
    } else if (secrets_ != nullptr && !secrets_->contains(name)) {
      std::string declared;
      for (const std::string& s : *secrets_) declared += (declared.empty() ? "" : ", ") + s;
      Add(place, "unknown secret " + Quote(name) + " (declared in kiln.toml [secrets]: " +
                     (declared.empty() ? "none" : declared) + ")");
    }
  }
  const std::set<std::string> item_refs = CheckItemRefs(place, text);
  std::set<std::string> extended;
  if (!secret_refs.empty() || !item_refs.empty()) {
    extended = known_;
    extended.insert(secret_refs.begin(), secret_refs.end());
    extended.insert(item_refs.begin(), item_refs.end());
  }
  std::vector<std::string> errors = dag::CheckTemplate(text, extended.empty() ? known_ : extended);
  for (std::string& error : errors) Add(place, std::move(error));
  if (!errors.empty() || !shell || !secret_refs.empty()) return;
  // Whether every reference can be quoted where it stands does not depend on the values.
  TemplateValues values = dummy_values_;
  for (const std::string& ref : item_refs) values.emplace(ref, "x");
  Result<std::string> rendered = Render(text, values, Quoting::kShell);
  if (!rendered.ok()) Add(place, rendered.message());
}

// {{ item }}, {{ item.index }}, {{ item.KEY }}: only in a task with for_each; with inline items,
// what each reference needs holds for every item. Returns the item names referred to.
std::set<std::string> Validator::CheckItemRefs(const Place& place, std::string_view text) {
  std::set<std::string> refs;
  for (std::string_view ref : TemplateRefs(text)) {
    if (ref != "item" && !ref.starts_with("item.")) continue;
    if (!refs.emplace(ref).second) continue;
    const std::string shown = "{{ " + std::string(ref) + " }}";
    if (reading_items_) {
      Add(place, shown + " cannot name the items' file: it is read before there is an item");
      continue;
    }
    if (task_ == nullptr || !task_->for_each) {
      // A for_each that was written but refused (reported at its key) is not "none".
      if (task_ == nullptr || !spec_.locs.contains("tasks." + task_->id + ".for_each")) {
        Add(place, shown + " names the item of a task with for_each; this task has none");
      }
      continue;
    }
    const ForEach& each = *task_->for_each;
    if (ref == "item.index" || !each.file.empty()) continue;  // file items: seen at run time
    for (size_t i = 0; i < each.items.size(); ++i) {
      const Value& item = each.items[i];
      const bool table = item.type == Value::Type::kTable;
      std::string problem;
      if (ref == "item" && table) {
        problem = "item " + std::to_string(i) + " is a table; use {{ item.KEY }} for its keys";
      } else if (ref != "item" && !table) {
        problem = "item " + std::to_string(i) + " is " + std::string(item.Phrase()) +
                  ", not a table; use {{ item }}";
      } else if (ref != "item" && item.Find(ref.substr(5)) == nullptr) {
        std::string keys;
        for (const Value& k : item.items) keys += (keys.empty() ? "" : ", ") + k.key;
        problem = "item " + std::to_string(i) + " has no key " + Quote(ref.substr(5)) +
                  " (its keys: " + (keys.empty() ? "none" : keys) + ")";
      }
      if (!problem.empty()) {
        Add(place, shown + ": " + problem);
        break;
      }
    }
  }
  return refs;
}

// for_each and max_parallel: a process task's; the file is a template without item names.
void Validator::CheckForEach(const TaskSpec& task) {
  const bool limited = spec_.locs.contains("tasks." + task.id + ".max_parallel");
  // Also beside a for_each that did not read (its error is reported already).
  if (limited && task.max_parallel < 1 && spec_.locs.contains("tasks." + task.id + ".for_each")) {
    Add(TaskKey(task, "max_parallel"),
        "must be at least 1, got " + std::to_string(task.max_parallel));
  }
  if (!task.for_each) {
    if (limited && !spec_.locs.contains("tasks." + task.id + ".for_each")) {
      Add(TaskKey(task, "max_parallel"),
          "max_parallel limits the instances of a task with for_each; this task has none");
    }
    return;
  }
  if (kinds_.Has(task.kind) && kinds_.ExecutionOf(task.kind) != Execution::kProcess) {
    Add(TaskKey(task, "for_each"),
        "for_each runs a process per item; a task of kind '" + task.kind + "' runs none");
  } else if (kinds_.Has(task.kind) && task.kind != "shell" && task.kind != "check") {
    // A gate registers one model per task, a drift check starts one run per task: per instance
    // they would collide.
    Add(TaskKey(task, "for_each"),
        "for_each is for tasks of kind \"shell\" or \"check\"; a task "
        "of kind '" +
            task.kind + "' decides once per run");
  }
  if (task.cache) {
    Add(TaskKey(task, "cache"), "cache = true is not available on a task with for_each yet");
  }
  const ForEach& each = *task.for_each;
  if (!each.file.empty() && each.file.find("{{") != std::string::npos) {
    const TaskSpec* current = task_;
    task_ = nullptr;  // the file is read before there is an item
    reading_items_ = true;
    CheckTemplate(TaskKey(task, "for_each"), each.file, /*shell=*/false);
    reading_items_ = false;
    task_ = current;
  }
}

// Webhooks may name secrets (config/ has checked the other names).
void Validator::CheckNotify() {
  for (size_t i = 0; i < spec_.notify.size(); ++i) {
    const NotifySpec& n = spec_.notify[i];
    if (n.webhook.find("{{") == std::string::npos) continue;
    CheckTemplate({"notify[" + std::to_string(n.index) + "].webhook", n.webhook_loc}, n.webhook,
                  /*shell=*/false, /*secrets_allowed=*/true);
  }
}

// For each task, the tasks it needs (known, not itself, each once), in needs order.
std::vector<std::vector<size_t>> Validator::NeedsGraph() const {
  std::vector<std::vector<size_t>> graph(spec_.tasks.size());
  for (size_t i = 0; i < spec_.tasks.size(); ++i) {
    for (const std::string& need : spec_.tasks[i].needs) {
      auto it = index_.find(need);
      if (it == index_.end() || it->second == i) continue;
      if (std::find(graph[i].begin(), graph[i].end(), it->second) != graph[i].end()) continue;
      graph[i].push_back(it->second);
    }
  }
  return graph;
}

// Depth-first search along needs from each task in file order. Every edge back to a task on the
// current path closes one cycle; it is named from its earliest task in the file, so that the same
// cycle found from another start is recognised and reported once.
void Validator::CheckCycles() {
  const std::vector<std::vector<size_t>> graph = NeedsGraph();
  enum class Color { kWhite, kGray, kBlack };
  std::vector<Color> color(graph.size(), Color::kWhite);
  std::set<std::vector<size_t>> reported;
  for (size_t root = 0; root < graph.size(); ++root) {
    if (color[root] != Color::kWhite) continue;
    std::vector<std::pair<size_t, size_t>> stack = {{root, 0}};  // task, next edge
    color[root] = Color::kGray;
    while (!stack.empty()) {
      auto& [u, next] = stack.back();
      if (next == graph[u].size()) {
        color[u] = Color::kBlack;
        stack.pop_back();
        continue;
      }
      const size_t v = graph[u][next++];
      if (color[v] == Color::kWhite) {
        color[v] = Color::kGray;
        stack.emplace_back(v, 0);
        continue;
      }
      if (color[v] == Color::kBlack) continue;
      std::vector<size_t> cycle;
      auto from = std::find_if(stack.begin(), stack.end(), [v](auto& f) { return f.first == v; });
      for (auto it = from; it != stack.end(); ++it) cycle.push_back(it->first);
      std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
      if (!reported.insert(cycle).second) continue;
      std::string text;
      for (size_t t : cycle) text += spec_.tasks[t].id + " -> ";
      const TaskSpec& first = spec_.tasks[cycle.front()];
      const SourceLoc loc = first.needs_loc.line > 0 ? first.needs_loc : first.loc;
      Add({"tasks." + first.id + ".needs", loc}, "dependency cycle " + text + first.id);
    }
  }
}

std::vector<Diagnostic> Validator::Run() {
  CheckPipeline();
  CheckParams();
  for (const TaskSpec& task : spec_.tasks) CheckTask(task);
  CheckCycles();
  CheckNotify();
  auto key = [](const Diagnostic& d) { return std::tie(d.loc.line, d.loc.column); };
  std::stable_sort(out_.begin(), out_.end(),
                   [&](const Diagnostic& a, const Diagnostic& b) { return key(a) < key(b); });
  // A bad [defaults] value is found once per task that uses it.
  std::vector<Diagnostic> unique;
  std::set<std::tuple<int, int, std::string, std::string>> seen;
  for (Diagnostic& d : out_) {
    if (seen.emplace(d.loc.line, d.loc.column, d.field, d.message).second) {
      unique.push_back(std::move(d));
    }
  }
  return unique;
}

}  // namespace

std::vector<Diagnostic> Validate(const PipelineSpec& spec, const KindCatalog& kinds,
                                 const SecretNames* secrets) {
  return Validator(spec, kinds, secrets).Run();
}

namespace {

class ShellOnlyCatalog final : public KindCatalog {
 public:
  std::vector<std::string_view> Names() const override { return {"shell"}; }
  bool Has(std::string_view kind) const override { return kind == "shell"; }
  void Check(const TaskSpec&, const PipelineSpec&, std::vector<Diagnostic>&) const override {}
};

}  // namespace

const KindCatalog& ShellOnly() {
  static const ShellOnlyCatalog catalog;
  return catalog;
}

std::span<const std::string_view> TaskKeys() {
  static constexpr std::string_view kKeys[] = {
      "allow_failure",   "argv",  "cache",        "command",         "env",           "for_each",
      "inputs",          "kind",  "max_parallel", "max_retry_delay", "metrics",       "needs",
      "outputs",         "pool",  "priority",     "retries",         "retry_backoff", "retry_delay",
      "skip_exit_codes", "slots", "timeout",      "trigger_rule",    "workdir"};
  return kKeys;
}

bool IsValidPipelineName(std::string_view name) { return Matches(name, kPipelineName); }
bool IsValidTaskId(std::string_view id) { return Matches(id, kTaskId); }

}  // namespace kiln::dag
