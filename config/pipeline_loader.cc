#include "config/pipeline_loader.h"

#include <algorithm>
#include <array>
#include <memory>

#include "common/sha256.h"
#include "config/task_parser.h"
#include "config/toml_reader.h"
#include "dag/schedule.h"
#include "dag/validate.h"

namespace kiln::config {

namespace fs = std::filesystem;
using internal::JoinPath;
using internal::LocOf;
using internal::TomlReader;

namespace {

constexpr std::array<std::string_view, 5> kTopKeys = {"defaults", "notify", "params", "pipeline",
                                                      "tasks"};
constexpr std::array<std::string_view, 11> kPipelineKeys = {
    "catchup", "description", "max_active_runs",    "name", "overlap", "paused", "schedule", "sla",
    "tags",    "timezone",    "trigger_on_success",
};

template <typename T>
void Assign(T& out, std::optional<T> value) {
  if (value) out = std::move(*value);
}

// Entries of a table in the order they were written.
std::vector<std::pair<const toml::key*, const toml::node*>> InFileOrder(const toml::table& table) {
  std::vector<std::pair<const toml::key*, const toml::node*>> entries;
  for (const auto& [key, node] : table) entries.emplace_back(&key, &node);
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return internal::BeforeInFile(*a.first, *b.first);
  });
  return entries;
}

void ReadPipelineTable(TomlReader& reader, const toml::node& node, dag::PipelineSpec& spec) {
  const toml::table* table = reader.Table(node, "pipeline");
  if (table == nullptr) return;
  spec.locs["pipeline"] = LocOf(node);
  for (const auto& [key, value] : *table) {
    const std::string_view k = key.str();
    const std::string field = JoinPath("pipeline", k);
    if (std::find(kPipelineKeys.begin(), kPipelineKeys.end(), k) == kPipelineKeys.end()) {
      reader.UnknownKey(key, "pipeline", kPipelineKeys);
      continue;
    }
    spec.locs[field] = LocOf(value);
    if (k == "name") Assign(spec.name, reader.String(value, field));
    if (k == "description") Assign(spec.description, reader.String(value, field));
    if (k == "schedule") Assign(spec.schedule, reader.String(value, field));
    if (k == "timezone") Assign(spec.timezone, reader.String(value, field));
    if (k == "catchup") Assign(spec.catchup, reader.String(value, field));
    if (k == "max_active_runs") Assign(spec.max_active_runs, reader.Int(value, field));
    if (k == "overlap") Assign(spec.overlap, reader.String(value, field));
    if (k == "tags") Assign(spec.tags, reader.Strings(value, field, &spec.locs));
    if (k == "paused") Assign(spec.paused, reader.Bool(value, field));
    if (k == "sla") {
      if (auto d = reader.DurationValue(value, field)) {
        if (*d <= Duration(0)) {
          reader.Error(LocOf(value), field, "must be above 0, e.g. \"2h\"");
        } else {
          spec.sla = *d;
        }
      }
    }
    if (k == "trigger_on_success") {
      Assign(spec.trigger_on_success, reader.Strings(value, field, &spec.locs));
    }
  }
}

std::optional<dag::ParamValue> ParamOf(const toml::node& node) {
  if (const auto* s = node.as_string()) return dag::ParamValue(s->get());
  if (const auto* i = node.as_integer()) return dag::ParamValue(i->get());
  if (const auto* d = node.as_floating_point()) return dag::ParamValue(d->get());
  if (const auto* b = node.as_boolean()) return dag::ParamValue(b->get());
  return std::nullopt;
}

void ReadParams(TomlReader& reader, const toml::node& node, dag::PipelineSpec& spec) {
  const toml::table* table = reader.Table(node, "params");
  if (table == nullptr) return;
  spec.locs["params"] = LocOf(node);
  for (const auto& [key, value] : InFileOrder(*table)) {
    const std::string name(key->str());
    const std::string field = JoinPath("params", name);
    std::optional<dag::ParamValue> param = ParamOf(*value);
    if (!param) {
      reader.TypeError(*value, field, "a string, integer, float or boolean");
      param = std::string();  // still declared: its uses in templates are not errors too
    }
    spec.params.push_back({name, *param, LocOf(*key)});
    spec.locs[field] = LocOf(*value);
  }
}

void ReadTasks(TomlReader& reader, const toml::table& doc, dag::PipelineSpec& spec) {
  internal::TaskFields defaults;
  if (const toml::node* node = doc.get("defaults")) {
    if (const toml::table* table = reader.Table(*node, "defaults")) {
      spec.locs["defaults"] = LocOf(*node);
      defaults = internal::ReadTaskFields(reader, *table, "defaults",
                                          internal::TableKind::kDefaults, spec.locs);
    }
  }
  const toml::node* node = doc.get("tasks");
  if (node == nullptr) return;
  const toml::table* tasks = reader.Table(*node, "tasks");
  if (tasks == nullptr) return;
  spec.locs["tasks"] = LocOf(*node);
  // Each task records a few locations (the task, its keys, each needs entry): one table growth.
  spec.locs.reserve(spec.locs.size() + tasks->size() * 6);
  spec.tasks.reserve(tasks->size());
  for (const auto& [key, value] : InFileOrder(*tasks)) {
    const std::string id(key->str());
    const std::string path = JoinPath("tasks", id);
    const toml::table* table = reader.Table(*value, path);
    if (table == nullptr) continue;
    internal::TaskFields own =
        internal::ReadTaskFields(reader, *table, path, internal::TableKind::kTask, spec.locs);
    dag::TaskSpec task = internal::MakeTask(id, own, defaults);
    task.loc = LocOf(*key);
    spec.locs[path] = task.loc;
    spec.tasks.push_back(std::move(task));
  }
}

void ReadDocument(TomlReader& reader, const toml::table& doc, dag::PipelineSpec& spec) {
  reader.RejectNul(doc, "");
  reader.CheckKeys(doc, "", kTopKeys);
  if (const toml::node* node = doc.get("pipeline")) ReadPipelineTable(reader, *node, spec);
  if (const toml::node* node = doc.get("params")) ReadParams(reader, *node, spec);
  if (const toml::node* node = doc.get("notify")) {
    spec.locs["notify"] = LocOf(*node);
    spec.notify = internal::ReadNotify(reader, *node, "notify");
  }
  ReadTasks(reader, doc, spec);
}

fs::path Absolute(const fs::path& file) {
  std::error_code ec;
  fs::path absolute = fs::absolute(file, ec);
  return ec ? file : absolute.lexically_normal();
}

// Whether `field` or a table holding it ("pipeline" for "pipeline.name") was reported and
// dropped by the reader: a later problem of it follows from that one.
bool RejectedWithin(const std::set<std::string, std::less<>>& rejected, std::string_view field) {
  for (size_t end = field.size(); end != std::string_view::npos && end > 0;
       end = field.rfind('.', end - 1)) {
    if (rejected.contains(field.substr(0, end))) return true;
  }
  return false;
}

LoadResult Parse(std::string_view text, const fs::path& file, const dag::KindCatalog& kinds,
                 const dag::SecretNames* secrets) {
  const std::string shown = file.string();
  if (auto over = internal::CheckTomlLimits(text, shown, internal::kPipelineLimits)) {
    return {nullptr, {std::move(*over)}, file, ""};
  }
  toml::table doc;
  try {
    doc = toml::parse(text, std::string_view(shown));
  } catch (const toml::parse_error& error) {
    return {nullptr, {internal::SyntaxDiagnostic(shown, error, text)}, file, ""};
  }
  TomlReader reader(shown);
  dag::PipelineSpec spec;
  spec.file = Absolute(file);
  spec.content_hash = Sha256Hex(text);
  spec.source = std::string(text);
  ReadDocument(reader, doc, spec);
  LoadResult result;
  result.file = file;
  if (!reader.rejected().contains("pipeline.name") && dag::IsValidPipelineName(spec.name)) {
    result.name = spec.name;
  }
  result.diagnostics = std::move(reader.diagnostics());
  for (dag::Diagnostic& d : dag::Validate(spec, kinds, secrets)) {
    if (RejectedWithin(reader.rejected(), d.field)) continue;  // the reader reported it
    if (d.field.find('\0') != std::string::npos) continue;     // a key with a NUL: reported
    d.file = shown;
    result.diagnostics.push_back(std::move(d));
  }
  internal::SortByPosition(result.diagnostics);
  for (dag::TaskSpec& task : spec.tasks) {
    // A kind's own exit codes for "skipped" (shell's skip_exit_codes are refused on kinds).
    if (task.kind != "shell") task.skip_exit_codes = kinds.SkipExitCodes(task.kind);
    task.execution = kinds.ExecutionOf(task.kind);
  }
  if (result.diagnostics.empty()) {
    dag::Dag graph(spec);
    std::optional<dag::Schedule> schedule;
    if (!spec.schedule.empty()) {
      auto made = dag::MakeSchedule(spec.schedule, spec.timezone);
      if (made.ok()) schedule = std::move(made).value();  // validated above
    }
    result.pipeline = std::make_shared<const dag::Pipeline>(
        dag::Pipeline{std::move(spec), std::move(graph), std::move(schedule)});
  }
  return result;
}

}  // namespace

LoadResult ParsePipeline(std::string_view text, const fs::path& file, const dag::KindCatalog& kinds,
                         const dag::SecretNames* secrets) {
  try {
    return Parse(text, file, kinds, secrets);
  } catch (const std::exception& e) {
    // Nothing above throws by design (toml++'s parse errors are caught in Parse); this keeps an
    // unexpected failure such as bad_alloc a diagnostic rather than a crash of the daemon.
    return {nullptr, {{file.string(), {}, "", std::string("cannot load: ") + e.what()}}, file, ""};
  }
}

LoadResult LoadPipelineFile(const fs::path& file, const dag::KindCatalog& kinds,
                            const dag::SecretNames* secrets) {
  Result<std::string> text = internal::ReadFileText(file, internal::kPipelineLimits.max_bytes);
  if (!text.ok()) return {nullptr, {{file.string(), {}, "", text.message()}}, file, ""};
  return ParsePipeline(*text, file, kinds, secrets);
}

Result<std::vector<fs::path>> ListPipelineFiles(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& path = it->path();
    std::error_code type_ec;
    if (path.filename().string().starts_with(".")) {
      if (it->is_directory(type_ec)) it.disable_recursion_pending();
      continue;
    }
    if (path.extension() == ".toml" && it->is_regular_file(type_ec)) files.push_back(path);
  }
  if (ec) return Status::Error("cannot read folder: " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<LoadResult> LoadPipelineDir(const fs::path& dir, const dag::KindCatalog& kinds,
                                        const dag::SecretNames* secrets) {
  auto files = ListPipelineFiles(dir);
  if (!files.ok()) return {LoadResult{nullptr, {{dir.string(), {}, "", files.message()}}, dir, ""}};
  std::vector<LoadResult> results;
  results.reserve(files->size());
  for (const fs::path& file : *files) results.push_back(LoadPipelineFile(file, kinds, secrets));
  return results;
}

}  // namespace kiln::config
