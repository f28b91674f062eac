// The data contract: data_reader.cc streams the rows, this file applies the column rules to each
// value and turns the tallies into the report.
#include "plugins/check_data.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <exception>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "plugins/data_reader.h"

namespace kiln::plugins {
namespace {

// The pipeline's own values, listed whole.
std::string JoinAll(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

using Json = nlohmann::ordered_json;

// The rules of a column in report order ("required" comes before them, from the header).
enum Rule { kType, kNulls, kMin, kMax, kAllowed, kUnique, kRuleCount };
constexpr std::array<const char*, kRuleCount> kRuleNames = {"type", "nulls",   "min",
                                                            "max",  "allowed", "unique"};

// A non-null value in every form a rule may compare it in: `text` is the raw text of a CSV cell
// of a string or untyped column, else the canonical text (integers in decimal, doubles shortest
// round-trip, true/false); it is the key of `unique` and what an untyped `allowed` compares.
struct Value {
  std::string text;
  std::optional<int64_t> integer;
  std::optional<double> number;  // what min/max compare; none: min/max do not apply
  std::optional<bool> boolean;
};

enum class Read { kNull, kWrongType, kValue };

std::string DoubleText(double d) {
  std::array<char, 32> buffer{};
  auto end = std::to_chars(buffer.data(), buffer.data() + buffer.size(), d).ptr;
  return std::string(buffer.data(), end);
}

const char* TypeName(ColumnType type) {
  switch (type) {
    case ColumnType::kInt:
      return "int";
    case ColumnType::kFloat:
      return "float";
    case ColumnType::kString:
      return "string";
    case ColumnType::kBool:
      return "bool";
  }
  return "?";
}

// An optional sign, then digits; it must fit int64.
std::optional<int64_t> ParseInt(std::string_view s) {
  bool plus = s.starts_with('+');
  if (plus) s.remove_prefix(1);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || (plus && s[0] == '-') || ec != std::errc() || end != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

// A finite decimal or scientific number, with an optional sign.
std::optional<double> ParseFloat(std::string_view s) {
  bool plus = s.starts_with('+');
  if (plus) s.remove_prefix(1);
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || (plus && s[0] == '-') || ec != std::errc() || end != s.data() + s.size() ||
      !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

std::optional<bool> ParseBool(std::string_view s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

Value IntValue(int64_t v) { return {std::to_string(v), v, static_cast<double>(v), std::nullopt}; }

Value FloatValue(double d) {
  if (d == 0) d = 0;  // -0 is 0
  Value v{DoubleText(d), std::nullopt, d, std::nullopt};
  if (std::trunc(d) == d && d >= -0x1p63 && d < 0x1p63) v.integer = static_cast<int64_t>(d);
  return v;
}

Value BoolValue(bool b) { return {b ? "true" : "false", std::nullopt, std::nullopt, b}; }

Value AllowedToValue(const AllowedValue& allowed) {
  if (const auto* i = std::get_if<int64_t>(&allowed)) return IntValue(*i);
  if (const auto* d = std::get_if<double>(&allowed)) return FloatValue(*d);
  if (const auto* b = std::get_if<bool>(&allowed)) return BoolValue(*b);
  const auto& s = std::get<std::string>(allowed);
  Value v;
  if (auto i = ParseInt(s)) {
    v = IntValue(*i);
  } else if (auto f = ParseFloat(s)) {
    v = FloatValue(*f);
  }
  v.text = s;
  v.boolean = ParseBool(s);
  return v;
}

// A CSV cell read as `type`.
Read FromText(const std::optional<std::string_view>& cell, std::optional<ColumnType> type,
              Value& out) {
  if (!cell) return Read::kNull;
  std::optional<int64_t> i;
  std::optional<double> f;
  std::optional<bool> b;
  switch (type.value_or(ColumnType::kString)) {
    case ColumnType::kInt:
      if (!(i = ParseInt(*cell))) return Read::kWrongType;
      out = IntValue(*i);
      break;
    case ColumnType::kFloat:
      if (!(f = ParseFloat(*cell))) return Read::kWrongType;
      out = FloatValue(*f);
      break;
    case ColumnType::kBool:
      if (!(b = ParseBool(*cell))) return Read::kWrongType;
      out = BoolValue(*b);
      break;
    case ColumnType::kString:
      out = Value{std::string(*cell), std::nullopt, std::nullopt, std::nullopt};
      if (!type) out.number = ParseFloat(*cell);  // untyped: min/max apply to numbers
      break;
  }
  return Read::kValue;
}

bool FitsInt64(const Json& v) {
  return !v.is_number_unsigned() ||
         v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

// A JSON value of an untyped column.
Value Untyped(const Json& v) {
  if (v.is_number_integer() && FitsInt64(v)) return IntValue(v.get<int64_t>());
  if (v.is_number()) return FloatValue(v.get<double>());
  if (v.is_boolean()) return BoolValue(v.get<bool>());
  if (v.is_string()) return {v.get<std::string>(), std::nullopt, std::nullopt, std::nullopt};
  return {v.dump(), std::nullopt, std::nullopt, std::nullopt};  // the reader bounds the nesting
}

// A JSON value (null when absent) read as `type`: the JSON type must be the column's.
Read FromJson(const Json* v, std::optional<ColumnType> type, Value& out) {
  if (v == nullptr || v->is_null()) return Read::kNull;
  bool ok = true;
  switch (type.value_or(ColumnType::kString)) {
    case ColumnType::kInt:
      ok = v->is_number_integer() && FitsInt64(*v);
      break;
    case ColumnType::kFloat:
      ok = v->is_number();
      break;
    case ColumnType::kBool:
      ok = v->is_boolean();
      break;
    case ColumnType::kString:
      ok = !type || v->is_string();
      break;
  }
  if (!ok) return Read::kWrongType;
  out = type == ColumnType::kFloat ? FloatValue(v->get<double>()) : Untyped(*v);
  return Read::kValue;
}

struct Tally {
  int64_t count = 0;
  std::vector<int64_t> rows;
};

struct ColumnCheck {
  const ColumnRule* rule = nullptr;
  std::vector<Value> allowed;
  std::array<Tally, kRuleCount> tallies;
  std::unordered_set<std::string> seen;  // for unique
  bool present = false;                  // in the header, or a key of some JSON object
  size_t index = 0;                      // CSV: its position in the header
};

bool Matches(std::optional<ColumnType> type, const Value& allowed, const Value& v) {
  switch (type.value_or(ColumnType::kString)) {
    case ColumnType::kInt:
      return allowed.integer && allowed.integer == v.integer;
    case ColumnType::kFloat:
      return allowed.number && allowed.number == v.number;
    case ColumnType::kBool:
      return allowed.boolean && allowed.boolean == v.boolean;
    case ColumnType::kString:
      return allowed.text == v.text;
  }
  return false;
}

std::string Counted(int64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// " (rows 4, 9, 17)", " (row 7)", " (rows 1, 2, 3, ...)", or "" when no row is listed.
std::string Examples(const Tally& t) {
  if (t.rows.empty()) return "";
  std::string out = t.count == 1 ? " (row " : " (rows ";
  for (size_t i = 0; i < t.rows.size(); ++i) out += (i ? ", " : "") + std::to_string(t.rows[i]);
  if (static_cast<size_t>(t.count) > t.rows.size()) out += ", ...";
  return out + ")";
}

class Checker {
 public:
  Checker(const Contract& contract, const CheckLimits& limits);
  void Header(const std::vector<std::string>& names);
  void CsvRow(const data::CsvCells& cells);
  void JsonRow(const Json& object);
  CheckReport Finish();

 private:
  void Apply(ColumnCheck& column, Read read, const Value& v);
  void Add(ColumnCheck& column, Rule rule);
  std::string Message(const ColumnCheck& column, Rule rule) const;
  void RowCountViolations();

  const Contract& contract_;
  const CheckLimits& limits_;
  std::vector<ColumnCheck> columns_;
  std::unordered_map<std::string, std::vector<size_t>> by_name_;  // JSON: key -> columns_
  std::unordered_set<std::string> keys_;                          // JSON: report_.columns
  std::vector<const Json*> values_;                               // JSON: the current row
  Value value_;
  CheckReport report_;
};

Checker::Checker(const Contract& contract, const CheckLimits& limits)
    : contract_(contract), limits_(limits), columns_(contract.columns.size()) {
  for (size_t i = 0; i < columns_.size(); ++i) {
    const ColumnRule& rule = contract.columns[i];
    columns_[i].rule = &rule;
    for (const auto& a : rule.allowed) columns_[i].allowed.push_back(AllowedToValue(a));
    by_name_[rule.name].push_back(i);
  }
}

void Checker::Header(const std::vector<std::string>& names) {
  report_.columns = names;
  for (auto& column : columns_) {
    auto it = std::find(names.begin(), names.end(), column.rule->name);  // the first of a name
    column.present = it != names.end();
    column.index = static_cast<size_t>(it - names.begin());
  }
}

void Checker::CsvRow(const data::CsvCells& cells) {
  ++report_.rows;
  for (auto& column : columns_) {
    if (!column.present) continue;
    Read read = FromText(cells[column.index], column.rule->type, value_);
    Apply(column, read, value_);
  }
}

void Checker::JsonRow(const Json& object) {
  ++report_.rows;
  values_.assign(columns_.size(), nullptr);
  for (const auto& [key, value] : object.items()) {
    if (keys_.size() < limits_.max_columns && keys_.insert(key).second) {
      report_.columns.push_back(key);
    }
    auto it = by_name_.find(key);
    if (it == by_name_.end()) continue;
    for (size_t i : it->second) values_[i] = &value, columns_[i].present = true;
  }
  for (size_t i = 0; i < columns_.size(); ++i) {
    Read read = FromJson(values_[i], columns_[i].rule->type, value_);
    Apply(columns_[i], read, value_);
  }
}

// A value that fails its type is not checked further; nulls are only checked by `nulls`.
void Checker::Apply(ColumnCheck& column, Read read, const Value& v) {
  const ColumnRule& rule = *column.rule;
  if (read == Read::kNull) {
    if (!rule.nulls) Add(column, kNulls);
    return;
  }
  if (read == Read::kWrongType) return Add(column, kType);
  if (v.number && rule.min && *v.number < *rule.min) Add(column, kMin);
  if (v.number && rule.max && *v.number > *rule.max) Add(column, kMax);
  if (!column.allowed.empty() &&
      std::none_of(column.allowed.begin(), column.allowed.end(),
                   [&](const Value& a) { return Matches(rule.type, a, v); })) {
    Add(column, kAllowed);
  }
  if (rule.unique && !column.seen.insert(v.text).second) Add(column, kUnique);
}

void Checker::Add(ColumnCheck& column, Rule rule) {
  Tally& t = column.tallies[rule];
  ++t.count;
  if (t.rows.size() < limits_.max_examples) t.rows.push_back(report_.rows);
}

std::string Checker::Message(const ColumnCheck& column, Rule rule) const {
  const ColumnRule& r = *column.rule;
  const Tally& t = column.tallies[rule];
  std::string out = r.name + ": ";
  switch (rule) {
    case kType:
      out += Counted(t.count, "value", "values") + " not of type " + TypeName(*r.type);
      break;
    case kNulls:
      out += Counted(t.count, "null", "nulls");
      break;
    case kMin:
      out += Counted(t.count, "value", "values") + " below min " + DoubleText(*r.min);
      break;
    case kMax:
      out += Counted(t.count, "value", "values") + " above max " + DoubleText(*r.max);
      break;
    case kAllowed: {
      std::vector<std::string> accepted;
      for (const auto& a : column.allowed) accepted.push_back(a.text);
      out += Counted(t.count, "value", "values") + " not allowed (accepted: " + JoinAll(accepted) +
             ")";
      break;
    }
    case kUnique:
    case kRuleCount:
      out += Counted(t.count, "duplicate value", "duplicate values");
      break;
  }
  return out + Examples(t);
}

void Checker::RowCountViolations() {
  auto add = [&](const char* bound, int64_t limit) {
    report_.violations.push_back({"",
                                  "rows",
                                  "rows: " + Counted(report_.rows, "data row", "data rows") + ", " +
                                      bound + " " + std::to_string(limit),
                                  0,
                                  {}});
  };
  if (contract_.rows_min && report_.rows < *contract_.rows_min) {
    add("fewer than min", *contract_.rows_min);
  }
  if (contract_.rows_max && report_.rows > *contract_.rows_max) {
    add("more than max", *contract_.rows_max);
  }
}

CheckReport Checker::Finish() {
  RowCountViolations();
  for (auto& column : columns_) {
    const ColumnRule& rule = *column.rule;
    if (!column.present) {  // an optional column that is absent is not checked
      if (!rule.required) continue;
      std::string found = report_.columns.empty() ? "none" : data::ListNames(report_.columns);
      report_.violations.push_back(
          {rule.name, "required", rule.name + ": column missing (found: " + found + ")", 0, {}});
      continue;
    }
    for (int r = 0; r < kRuleCount; ++r) {
      Tally& t = column.tallies[r];
      if (t.count == 0) continue;
      report_.violations.push_back(
          {rule.name, kRuleNames[r], Message(column, static_cast<Rule>(r)), t.count, t.rows});
    }
  }
  return std::move(report_);
}

}  // namespace

Result<CheckReport> CheckData(const Contract& contract, const CheckLimits& limits) {
  try {
    Checker checker(contract, limits);
    Status status = data::IsJsonLinesPath(contract.data)
                        ? data::ReadJsonLines(contract.data, limits,
                                              [&](const Json& object) { checker.JsonRow(object); })
                        : data::ReadCsv(
                              contract.data, limits,
                              [&](const std::vector<std::string>& names) { checker.Header(names); },
                              [&](const data::CsvCells& cells) { checker.CsvRow(cells); });
    if (!status.ok()) return status;
    return checker.Finish();
  } catch (const std::exception& e) {  // e.g. out of memory for a huge `unique` set
    return Status::Error(contract.data + ": " + e.what());
  }
}

}  // namespace kiln::plugins
