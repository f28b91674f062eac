#include "config/task_parser.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "dag/validate.h"

namespace kiln::config::internal {

namespace {

constexpr std::array<std::string_view, 16> kDefaultsKeys = {
    "allow_failure", "argv",     "command",      "env",           "kind",        "max_retry_delay",
    "pool",          "priority", "retries",      "retry_backoff", "retry_delay", "skip_exit_codes",
    "slots",         "timeout",  "trigger_rule", "workdir",
};

constexpr std::array<std::string_view, 7> kTriggerRules = {
    "all_success",
    "all_failed",
    "all_done",
    "one_success",
    "one_failed",
    "none_failed",
    "none_failed_min_one_success",
};

std::optional<dag::TriggerRule> ReadTriggerRule(TomlReader& reader, const toml::node& node,
                                                const std::string& field) {
  std::optional<std::string> text = reader.String(node, field);
  if (!text) return std::nullopt;
  if (auto rule = dag::ParseTriggerRule(*text)) return rule;
  std::string list;
  for (std::string_view r : kTriggerRules) list += (list.empty() ? "" : ", ") + std::string(r);
  std::string hint;
  if (std::string_view close = Closest(*text, kTriggerRules); !close.empty()) {
    hint = "; did you mean '" + std::string(close) + "'?";
  }
  reader.Error(LocOf(node), field,
               "unknown trigger rule '" + *text + "'" + hint + " (accepted: " + list + ")");
  return std::nullopt;
}

std::optional<std::map<std::string, std::string>> ReadEnv(TomlReader& reader,
                                                          const toml::node& node,
                                                          const std::string& field, LocMap& locs) {
  const toml::table* table = reader.Table(node, field);
  if (table == nullptr) return std::nullopt;
  std::map<std::string, std::string> env;
  for (const auto& [key, value] : *table) {
    const std::string name(key.str());
    const std::string var_field = field + "." + name;
    if (std::optional<std::string> text = reader.String(value, var_field)) {
      env[name] = *text;
      locs[var_field] = LocOf(value);
    }
  }
  return env;
}

std::optional<dag::Value> ToValue(TomlReader& reader, const toml::node& node,
                                  const std::string& field);

// for_each: a string (a JSON array file, templated) or an inline array of strings, numbers,
// booleans, or tables of those.
std::optional<dag::ForEach> ReadForEach(TomlReader& reader, const toml::node& node,
                                        const std::string& field) {
  dag::ForEach each;
  each.loc = LocOf(node);
  if (const auto* s = node.as_string()) {
    each.file = s->get();
    if (each.file.empty()) {
      reader.Error(each.loc, field,
                   "empty; name a JSON array file, e.g. \"{{ run.dir }}/items.json\"");
      return std::nullopt;
    }
    return each;
  }
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    reader.TypeError(node, field, "a JSON array file's path or an array of items");
    return std::nullopt;
  }
  if (array->size() > dag::kMaxItems) {
    reader.Error(each.loc, field,
                 std::to_string(array->size()) + " items; at most " +
                     std::to_string(dag::kMaxItems) + " (split the list over several tasks)");
    return std::nullopt;
  }
  bool ok = true;
  for (size_t i = 0; i < array->size(); ++i) {
    const std::string item_field = field + "[" + std::to_string(i) + "]";
    auto item = ToValue(reader, (*array)[i], item_field);
    if (!item) {
      ok = false;
      continue;
    }
    auto scalar = [](const dag::Value& v) {
      return v.type != dag::Value::Type::kArray && v.type != dag::Value::Type::kTable;
    };
    bool fine = scalar(*item);
    if (item->type == dag::Value::Type::kTable) {
      fine = std::all_of(item->items.begin(), item->items.end(), scalar);
    }
    if (!fine) {
      reader.Error(
          item->loc, item_field,
          "an item is a string, number, boolean, or a table of those; got " +
              std::string(item->type == dag::Value::Type::kArray ? "an array"
                                                                 : "a nested table or array"));
      ok = false;
      continue;
    }
    each.items.push_back(std::move(*item));
  }
  if (!ok) return std::nullopt;
  return each;
}

// Reads the keys that name what runs and when.
bool ReadWhatAndWhen(TomlReader& reader, std::string_view key, const toml::node& node,
                     const std::string& field, TaskFields& f, LocMap& locs) {
  if (key == "kind") {
    f.kind = reader.String(node, field);
  } else if (key == "command") {
    // Present but unusable still counts as given, so that "no command" is not reported too.
    f.command = reader.String(node, field).value_or("");
  } else if (key == "argv") {
    f.argv = reader.Strings(node, field, &locs).value_or(std::vector<std::string>{});
  } else if (key == "needs") {
    f.needs = reader.Strings(node, field, &locs);
    f.needs_loc = LocOf(node);
  } else if (key == "trigger_rule") {
    f.trigger_rule = ReadTriggerRule(reader, node, field);
  } else if (key == "env") {
    f.env = ReadEnv(reader, node, field, locs);
  } else if (key == "workdir") {
    f.workdir = reader.String(node, field);
  } else if (key == "inputs") {
    f.inputs = reader.Strings(node, field, &locs);
  } else if (key == "outputs") {
    f.outputs = reader.Strings(node, field, &locs);
  } else if (key == "metrics") {
    f.metrics = reader.String(node, field);
  } else if (key == "cache") {
    f.cache = reader.Bool(node, field);
  } else if (key == "for_each") {
    f.for_each = ReadForEach(reader, node, field);
  } else if (key == "max_parallel") {
    f.max_parallel = reader.Int(node, field);
  } else {
    return false;
  }
  return true;
}

// Reads the keys about retries, limits and outcomes.
void ReadPolicy(TomlReader& reader, std::string_view key, const toml::node& node,
                const std::string& field, TaskFields& f, LocMap& locs) {
  if (key == "retries") {
    f.retries = reader.Int(node, field);
  } else if (key == "retry_delay") {
    f.retry_delay = reader.DurationValue(node, field);
  } else if (key == "retry_backoff") {
    f.retry_backoff = reader.Number(node, field);
  } else if (key == "max_retry_delay") {
    f.max_retry_delay = reader.DurationValue(node, field);
  } else if (key == "timeout") {
    f.timeout = reader.DurationValue(node, field);
  } else if (key == "pool") {
    f.pool = reader.String(node, field);
  } else if (key == "slots") {
    f.slots = reader.Int(node, field);
  } else if (key == "skip_exit_codes") {
    f.skip_exit_codes = reader.Ints(node, field, &locs);
  } else if (key == "allow_failure") {
    f.allow_failure = reader.Bool(node, field);
  } else if (key == "priority") {
    f.priority = reader.Int(node, field);
  }
}

// A kind's own key, kept as written for its plugin to read (dates and times have no use there).
std::optional<dag::Value> ToValue(TomlReader& reader, const toml::node& node,
                                  const std::string& field) {
  dag::Value v;
  v.loc = LocOf(node);
  switch (node.type()) {
    case toml::node_type::boolean:
      v.type = dag::Value::Type::kBool;
      v.boolean = node.as_boolean()->get();
      return v;
    case toml::node_type::integer:
      v.type = dag::Value::Type::kInteger;
      v.integer = node.as_integer()->get();
      return v;
    case toml::node_type::floating_point:
      v.type = dag::Value::Type::kFloat;
      v.number = node.as_floating_point()->get();
      if (!std::isfinite(v.number)) {
        reader.Error(v.loc, field,
                     "expected a finite number, got " +
                         std::string(v.number != v.number ? "nan" : "an infinity"));
        return std::nullopt;
      }
      return v;
    case toml::node_type::string:
      v.type = dag::Value::Type::kString;
      v.string = node.as_string()->get();
      if (v.string.find('\0') != std::string::npos) {
        reader.Error(v.loc, field, "a NUL character (\\u0000) is not allowed here");
        return std::nullopt;
      }
      return v;
    case toml::node_type::array: {
      v.type = dag::Value::Type::kArray;
      const toml::array& array = *node.as_array();
      for (size_t i = 0; i < array.size(); ++i) {
        auto item = ToValue(reader, array[i], field + "[" + std::to_string(i) + "]");
        if (item) v.items.push_back(std::move(*item));
      }
      return v;
    }
    case toml::node_type::table: {
      v.type = dag::Value::Type::kTable;
      std::vector<std::pair<const toml::key*, const toml::node*>> members;
      for (const auto& [key, value] : *node.as_table()) members.emplace_back(&key, &value);
      std::sort(members.begin(), members.end(),
                [](const auto& a, const auto& b) { return BeforeInFile(*a.first, *b.first); });
      for (const auto& [key, value] : members) {
        auto member = ToValue(reader, *value, JoinPath(field, key->str()));
        if (!member) continue;
        member->key = std::string(key->str());
        member->key_loc = LocOf(*key);
        v.items.push_back(std::move(*member));
      }
      return v;
    }
    default:
      reader.TypeError(node, field, "a string, number, boolean, array or table");
      return std::nullopt;
  }
}

template <typename T>
T Pick(const std::optional<T>& own, const std::optional<T>& fallback, T builtin) {
  if (own) return *own;
  if (fallback) return *fallback;
  return builtin;
}

}  // namespace

TaskFields ReadTaskFields(TomlReader& reader, const toml::table& table, const std::string& path,
                          TableKind kind, LocMap& locs) {
  using Keys = std::span<const std::string_view>;
  const Keys accepted = kind == TableKind::kTask ? dag::TaskKeys() : Keys(kDefaultsKeys);
  TaskFields f;
  for (const auto& [key, node] : table) {
    const std::string field = JoinPath(path, key.str());
    if (std::find(accepted.begin(), accepted.end(), key.str()) == accepted.end()) {
      if (kind == TableKind::kTask) {
        // A key of the task's kind, or unknown: dag::Validate asks the kind.
        if (auto value = ToValue(reader, node, field)) {
          value->key = std::string(key.str());
          value->key_loc = LocOf(key);
          f.options.items.push_back(std::move(*value));
        }
        continue;
      }
      if (key.str() == "needs") {
        reader.Error(LocOf(key), field, "needs cannot have a default; set it on each task");
      } else {
        reader.UnknownKey(key, path, accepted);
      }
      continue;
    }
    locs[field] = LocOf(node);
    if (!ReadWhatAndWhen(reader, key.str(), node, field, f, locs)) {
      ReadPolicy(reader, key.str(), node, field, f, locs);
    }
  }
  auto at = [](const dag::Value& v) { return std::pair(v.key_loc.line, v.key_loc.column); };
  std::sort(f.options.items.begin(), f.options.items.end(),
            [&](const dag::Value& a, const dag::Value& b) { return at(a) < at(b); });
  return f;
}

dag::TaskSpec MakeTask(std::string id, const TaskFields& own, const TaskFields& defaults) {
  const dag::TaskSpec builtin;
  dag::TaskSpec t;
  t.id = std::move(id);
  t.kind = Pick(own.kind, defaults.kind, builtin.kind);
  // A task of another kind takes none of shell's keys from [defaults] (its own are reported).
  const bool shell = t.kind == builtin.kind;
  const TaskFields& run = (own.command || own.argv || !shell) ? own : defaults;
  t.command = run.command;
  t.argv = run.argv;
  t.needs = own.needs.value_or(std::vector<std::string>{});
  t.needs_loc = own.needs_loc;
  t.trigger_rule = Pick(own.trigger_rule, defaults.trigger_rule, builtin.trigger_rule);
  t.retry.retries = Pick(own.retries, defaults.retries, builtin.retry.retries);
  t.retry.retry_delay = Pick(own.retry_delay, defaults.retry_delay, builtin.retry.retry_delay);
  t.retry.retry_backoff =
      Pick(own.retry_backoff, defaults.retry_backoff, builtin.retry.retry_backoff);
  t.retry.max_retry_delay =
      Pick(own.max_retry_delay, defaults.max_retry_delay, builtin.retry.max_retry_delay);
  t.timeout = Pick(own.timeout, defaults.timeout, builtin.timeout);
  t.pool = Pick(own.pool, defaults.pool, builtin.pool);
  t.slots = Pick(own.slots, defaults.slots, builtin.slots);
  t.workdir = Pick(own.workdir, shell ? defaults.workdir : std::nullopt, builtin.workdir);
  t.skip_exit_codes = Pick(own.skip_exit_codes, shell ? defaults.skip_exit_codes : std::nullopt,
                           builtin.skip_exit_codes);
  t.allow_failure = Pick(own.allow_failure, defaults.allow_failure, builtin.allow_failure);
  t.priority = Pick(own.priority, defaults.priority, builtin.priority);
  t.inputs = own.inputs.value_or(std::vector<std::string>{});
  t.outputs = own.outputs.value_or(std::vector<std::string>{});
  t.metrics = own.metrics.value_or("");
  t.cache = own.cache.value_or(false);
  t.for_each = own.for_each;
  t.max_parallel = own.max_parallel.value_or(0);
  t.options = own.options;
  // Like every other key, a task's own env replaces the [defaults] one (the format's rule:
  // defaults apply "unless the task sets the key itself").
  auto env = Pick(own.env, defaults.env, std::map<std::string, std::string>{});
  for (auto& [name, value] : env) t.env.push_back({name, value});
  return t;
}

}  // namespace kiln::config::internal
