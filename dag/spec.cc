#include "dag/spec.h"

#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

namespace kiln::dag {

namespace {

template <typename Enum, size_t N>
using NameTable = std::array<std::pair<Enum, std::string_view>, N>;

constexpr NameTable<TriggerRule, 7> kTriggerRuleNames = {{
    {TriggerRule::kAllSuccess, "all_success"},
    {TriggerRule::kAllFailed, "all_failed"},
    {TriggerRule::kAllDone, "all_done"},
    {TriggerRule::kOneSuccess, "one_success"},
    {TriggerRule::kOneFailed, "one_failed"},
    {TriggerRule::kNoneFailed, "none_failed"},
    {TriggerRule::kNoneFailedMinOneSuccess, "none_failed_min_one_success"},
}};

constexpr NameTable<TaskState, 10> kTaskStateNames = {{
    {TaskState::kPending, "pending"},
    {TaskState::kQueued, "queued"},
    {TaskState::kRunning, "running"},
    {TaskState::kUpForRetry, "up_for_retry"},
    {TaskState::kSuccess, "success"},
    {TaskState::kFailed, "failed"},
    {TaskState::kSkipped, "skipped"},
    {TaskState::kUpstreamFailed, "upstream_failed"},
    {TaskState::kCancelled, "cancelled"},
    {TaskState::kWaiting, "waiting"},
}};

constexpr NameTable<RunState, 5> kRunStateNames = {{
    {RunState::kQueued, "queued"},
    {RunState::kRunning, "running"},
    {RunState::kSuccess, "success"},
    {RunState::kFailed, "failed"},
    {RunState::kCancelled, "cancelled"},
}};

template <typename Enum, size_t N>
std::string_view NameIn(const NameTable<Enum, N>& table, Enum value) {
  for (const auto& [e, name] : table) {
    if (e == value) return name;
  }
  return "unknown";
}

template <typename Enum, size_t N>
std::optional<Enum> ParseIn(const NameTable<Enum, N>& table, std::string_view text) {
  for (const auto& [e, name] : table) {
    if (name == text) return e;
  }
  return std::nullopt;
}

std::optional<int64_t> ParseInt64(std::string_view text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<double> ParseDouble(std::string_view text) {
  double value = 0;
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value, std::chars_format::general);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  // from_chars also reads "inf" and "nan"; a trigger-time float is a decimal number.
  if (!std::isfinite(value)) return std::nullopt;
  return value;
}

std::string DoubleText(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  std::array<char, 64> buffer{};
  auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  std::string text(buffer.data(), ec == std::errc() ? end : buffer.data());
  // Keep the text recognisable as a float: 1.0 prints as "1" otherwise.
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

}  // namespace

std::string_view Name(TriggerRule rule) { return NameIn(kTriggerRuleNames, rule); }
std::string_view Name(TaskState state) { return NameIn(kTaskStateNames, state); }
std::string_view Name(RunState state) { return NameIn(kRunStateNames, state); }

std::optional<TriggerRule> ParseTriggerRule(std::string_view text) {
  return ParseIn(kTriggerRuleNames, text);
}
std::optional<TaskState> ParseTaskState(std::string_view text) {
  return ParseIn(kTaskStateNames, text);
}
std::optional<RunState> ParseRunState(std::string_view text) {
  return ParseIn(kRunStateNames, text);
}

char StateLetter(TaskState state) {
  static constexpr std::string_view kLetters = "pqrusfkxcw";  // in TaskState's order
  return kLetters[static_cast<size_t>(state)];
}

bool IsTerminal(TaskState state) {
  switch (state) {
    case TaskState::kSuccess:
    case TaskState::kFailed:
    case TaskState::kSkipped:
    case TaskState::kUpstreamFailed:
    case TaskState::kCancelled:
      return true;
    case TaskState::kPending:
    case TaskState::kQueued:
    case TaskState::kRunning:
    case TaskState::kUpForRetry:
    case TaskState::kWaiting:
      return false;
  }
  return false;
}

bool IsTerminal(RunState state) {
  return state == RunState::kSuccess || state == RunState::kFailed || state == RunState::kCancelled;
}

std::string Diagnostic::ToString() const {
  std::string out = file;
  if (loc.line > 0) {
    out += ':' + std::to_string(loc.line) + ':' + std::to_string(loc.column);
  }
  out += ": ";
  if (!field.empty()) out += field + ": ";
  out += message;
  return out;
}

std::string_view TypeName(const ParamValue& value) {
  constexpr std::array<std::string_view, 4> kNames = {"string", "integer", "float", "boolean"};
  return kNames[value.index()];
}

std::string ToText(const ParamValue& value) {
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return DoubleText(*d);
  return std::get<bool>(value) ? "true" : "false";
}

std::optional<ParamValue> ConvertLike(const ParamValue& declared, std::string_view text) {
  switch (declared.index()) {
    case 0:
      return ParamValue(std::string(text));
    case 1:
      if (auto i = ParseInt64(text)) return ParamValue(*i);
      return std::nullopt;
    case 2:
      if (auto d = ParseDouble(text)) return ParamValue(*d);
      return std::nullopt;
    default:
      if (text == "true") return ParamValue(true);
      if (text == "false") return ParamValue(false);
      return std::nullopt;
  }
}

const Value* Value::Find(std::string_view name) const {
  if (type != Type::kTable) return nullptr;
  for (const Value& member : items) {
    if (member.key == name) return &member;
  }
  return nullptr;
}

std::string_view Value::Phrase() const {
  switch (type) {
    case Type::kBool:
      return "a boolean";
    case Type::kInteger:
      return "an integer";
    case Type::kFloat:
      return "a float";
    case Type::kString:
      return "a string";
    case Type::kArray:
      return "an array";
    case Type::kTable:
      break;
  }
  return "a table";
}

}  // namespace kiln::dag
