// kind = "check": a data contract (docs/pipelines.md). Exit codes of `kiln task check`: 0 the
// data keeps the contract (or severity = "warn"), 1 it breaks it, 2 the data cannot be read.
#include <array>
#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/text.h"
#include "plugins/check_data.h"
#include "plugins/kinds.h"

namespace kiln::plugins {

namespace {

using Type = dag::Value::Type;

constexpr std::array<std::string_view, 4> kKeys = {"columns", "data", "rows", "severity"};
constexpr std::array<std::string_view, 7> kColumnKeys = {"allowed",  "max",  "min",   "nulls",
                                                         "required", "type", "unique"};

// Reads the contract out of a check task's keys; each problem goes to `problems` when given.
class ContractReader {
 public:
  ContractReader(std::string field, Problems* problems)
      : field_(std::move(field)), problems_(problems) {}

  Contract Read(const dag::Value& options, bool& warn) {
    Contract c;
    const dag::Value* data = options.Find("data");
    if (data == nullptr) {
      Problem(field_, {}, "no data; set data to the CSV or JSON lines file to check");
    } else if (Expect(*data, Type::kString, field_ + ".data", "a string (a path)")) {
      if (data->string.empty()) Problem(field_ + ".data", data->loc, "empty path");
      c.data = data->string;
    }
    if (const dag::Value* rows = options.Find("rows")) ReadRows(*rows, c);
    if (const dag::Value* s = options.Find("severity")) {
      if (Expect(*s, Type::kString, field_ + ".severity", "a string")) {
        if (s->string != "error" && s->string != "warn") {
          Problem(field_ + ".severity", s->loc,
                  "unknown severity '" + s->string + "' (accepted: error, warn)");
        }
        warn = s->string == "warn";
      }
    }
    if (const dag::Value* columns = options.Find("columns")) {
      if (Expect(*columns, Type::kTable, field_ + ".columns", "a table of column rules")) {
        for (const dag::Value& column : columns->items) {
          c.columns.push_back(ReadColumn(column, field_ + ".columns." + column.key));
        }
      }
    }
    if (!options.Find("columns") && !options.Find("rows") && data != nullptr) {
      Problem(field_, {}, "nothing to check; set columns, rows or both");
    }
    return c;
  }

 private:
  void Problem(const std::string& field, dag::SourceLoc loc, std::string message) {
    if (problems_ != nullptr) problems_->Add(field, loc, std::move(message));
  }

  bool Expect(const dag::Value& v, Type type, const std::string& field, std::string_view what) {
    const bool number_ok = type == Type::kFloat && v.is_number();
    if (v.type == type || number_ok) return true;
    Problem(field, v.loc, "expected " + std::string(what) + ", got " + std::string(v.Phrase()));
    return false;
  }

  std::optional<int64_t> Count(const dag::Value& v, const std::string& field) {
    if (!Expect(v, Type::kInteger, field, "an integer")) return std::nullopt;
    if (v.integer < 0) {
      Problem(field, v.loc, "must be 0 or more, got " + std::to_string(v.integer));
      return std::nullopt;
    }
    return v.integer;
  }

  void ReadRows(const dag::Value& rows, Contract& c) {
    const std::string field = field_ + ".rows";
    if (!Expect(rows, Type::kTable, field, "a table such as { min = 100, max = 5000 }")) return;
    for (const dag::Value& m : rows.items) {
      if (m.key == "min") {
        c.rows_min = Count(m, field + ".min");
      } else if (m.key == "max") {
        c.rows_max = Count(m, field + ".max");
      } else {
        static constexpr std::string_view kRowKeys[] = {"max", "min"};
        Problem(field + "." + m.key, m.key_loc,
                "unknown key '" + m.key + "'" + SuggestAccepted(m.key, kRowKeys));
      }
    }
    if (c.rows_min && c.rows_max && *c.rows_min > *c.rows_max) {
      Problem(field, rows.loc, "min is above max");
    }
  }

  ColumnRule ReadColumn(const dag::Value& column, const std::string& field);
  void ReadColumnKey(const dag::Value& m, const std::string& field, ColumnRule& rule);
  void ReadAllowed(const dag::Value& m, const std::string& field, ColumnRule& rule);
  void CheckColumn(const dag::Value& column, const std::string& field, const ColumnRule& rule);

  std::string field_;
  Problems* problems_;
};

ColumnRule ContractReader::ReadColumn(const dag::Value& column, const std::string& field) {
  ColumnRule rule;
  rule.name = column.key;
  if (!Expect(column, Type::kTable, field,
              "a table of rules such as { type = \"int\", min = 0 }")) {
    return rule;
  }
  for (const dag::Value& m : column.items) ReadColumnKey(m, field + "." + m.key, rule);
  CheckColumn(column, field, rule);
  return rule;
}

void ContractReader::ReadColumnKey(const dag::Value& m, const std::string& field,
                                   ColumnRule& rule) {
  if (m.key == "type") {
    if (!Expect(m, Type::kString, field, "a string")) return;
    static const std::pair<std::string_view, ColumnType> kTypes[] = {
        {"int", ColumnType::kInt},
        {"float", ColumnType::kFloat},
        {"string", ColumnType::kString},
        {"bool", ColumnType::kBool}};
    for (const auto& [name, type] : kTypes) {
      if (m.string == name) rule.type = type;
    }
    if (!rule.type) {
      Problem(field, m.loc,
              "unknown column type '" + m.string + "' (accepted: bool, float, int, string)");
    }
  } else if (m.key == "nulls" || m.key == "unique" || m.key == "required") {
    if (!Expect(m, Type::kBool, field, "a boolean")) return;
    (m.key == "nulls" ? rule.nulls : m.key == "unique" ? rule.unique : rule.required) = m.boolean;
  } else if (m.key == "min" || m.key == "max") {
    if (!Expect(m, Type::kFloat, field, "a number")) return;
    (m.key == "min" ? rule.min : rule.max) = m.AsNumber();
  } else if (m.key == "allowed") {
    ReadAllowed(m, field, rule);
  } else {
    Problem(field, m.key_loc, "unknown key '" + m.key + "'" + SuggestAccepted(m.key, kColumnKeys));
  }
}

void ContractReader::ReadAllowed(const dag::Value& m, const std::string& field, ColumnRule& rule) {
  if (!Expect(m, Type::kArray, field, "an array of values")) return;
  if (m.items.empty()) Problem(field, m.loc, "empty; list the values accepted");
  for (size_t i = 0; i < m.items.size(); ++i) {
    const dag::Value& v = m.items[i];
    const std::string item = field + "[" + std::to_string(i) + "]";
    switch (v.type) {
      case Type::kString:
        rule.allowed.emplace_back(v.string);
        break;
      case Type::kInteger:
        rule.allowed.emplace_back(v.integer);
        break;
      case Type::kFloat:
        rule.allowed.emplace_back(v.number);
        break;
      case Type::kBool:
        rule.allowed.emplace_back(v.boolean);
        break;
      default:
        Problem(item, v.loc,
                "expected a string, number or boolean, got " + std::string(v.Phrase()));
    }
  }
}

// Rules that do not fit the column's type.
void ContractReader::CheckColumn(const dag::Value& column, const std::string& field,
                                 const ColumnRule& rule) {
  const bool numeric =
      !rule.type || *rule.type == ColumnType::kInt || *rule.type == ColumnType::kFloat;
  for (std::string_view key : {"min", "max"}) {
    const dag::Value* v = column.Find(key);
    if (v != nullptr && !numeric) {
      Problem(field + "." + std::string(key), v->loc,
              "min and max need a numeric column (type int or float)");
    }
  }
  if (rule.min && rule.max && *rule.min > *rule.max) Problem(field, column.loc, "min is above max");
  if (!rule.type || rule.allowed.empty()) return;
  const dag::Value* allowed = column.Find("allowed");
  for (size_t i = 0; i < allowed->items.size(); ++i) {
    const Type t = allowed->items[i].type;
    bool fits = true;  // items of no scalar type were reported already
    switch (*rule.type) {
      case ColumnType::kInt:
        fits = t == Type::kInteger || t == Type::kArray || t == Type::kTable;
        break;
      case ColumnType::kFloat:
        fits = t != Type::kString && t != Type::kBool;
        break;
      case ColumnType::kString:
        fits = t != Type::kInteger && t != Type::kFloat && t != Type::kBool;
        break;
      case ColumnType::kBool:
        fits = t != Type::kInteger && t != Type::kFloat && t != Type::kString;
        break;
    }
    if (!fits) {
      Problem(field + ".allowed[" + std::to_string(i) + "]", allowed->items[i].loc,
              "does not fit the column's type '" + column.Find("type")->string + "'");
    }
  }
}

// The report kept beside the run: <run folder>/.kiln/<task>/check.json.
nlohmann::json ReportJson(const Contract& c, const CheckReport& r, bool passed) {
  nlohmann::json j = {{"data", c.data},
                      {"rows", r.rows},
                      {"columns", r.columns},
                      {"passed", passed},
                      {"violations", nlohmann::json::array()}};
  for (const Violation& v : r.violations) {
    j["violations"].push_back({{"column", v.column},
                               {"rule", v.rule},
                               {"message", v.message},
                               {"count", v.count},
                               {"rows", v.rows}});
  }
  return j;
}

// Writes the report (or, when the data could not be checked, why) and says so when it cannot.
void Keep(const TaskContext& ctx, const nlohmann::json& report) {
  const std::string text =
      report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (Status s = WriteReport(ctx, "check.json", text); !s.ok()) {
    *ctx.out << "kiln check: warning: " << s.message() << '\n';
  }
}

// The task's own name for a key, in what an attempt says.
std::string FieldOf(const TaskContext& ctx) {
  return "tasks." + (ctx.task_id.empty() ? std::string("check") : ctx.task_id);
}

class CheckKind final : public Kind {
 public:
  std::string_view Name() const override { return "check"; }
  std::span<const std::string_view> Keys() const override { return kKeys; }

  void Check(const dag::TaskSpec& task, const std::string& field,
             Problems& problems) const override {
    bool warn = false;
    ContractReader(field, &problems).Read(task.options, warn);
  }

  int Run(const dag::Value& options, const TaskContext& ctx) const override {
    std::ostream& out = *ctx.out;
    bool warn = false;
    std::vector<dag::Diagnostic> found;
    Problems problems(found);
    const Contract c = ContractReader(FieldOf(ctx), &problems).Read(options, warn);
    if (!found.empty()) {
      for (const auto& d : found) out << "kiln check: " << d.field << ": " << d.message << '\n';
      Keep(ctx, {{"data", c.data}, {"passed", false}, {"error", found.front().message}});
      return 2;
    }
    auto report = CheckData(c);
    if (!report.ok()) {
      out << "kiln check: " << report.message() << '\n';
      Keep(ctx, {{"data", c.data}, {"passed", false}, {"error", report.message()}});
      return 2;
    }
    const bool passed = report->violations.empty();
    out << "kiln check: " << c.data << ": " << report->rows << " data rows, "
        << report->columns.size() << (report->columns.size() == 1 ? " column; " : " columns; ")
        << (passed ? "the contract holds"
                   : std::to_string(report->violations.size()) +
                         (report->violations.size() == 1 ? " violation" : " violations"))
        << '\n';
    for (const Violation& v : report->violations) {
      out << "  " << (warn ? "warning: " : "violation: ") << v.message << '\n';
    }
    Keep(ctx, ReportJson(c, *report, passed));
    return passed || warn ? 0 : 1;
  }
};

}  // namespace

std::unique_ptr<Kind> MakeCheckKind() { return std::make_unique<CheckKind>(); }

}  // namespace kiln::plugins
