// The data contract of `kind = "check"` (docs/pipelines.md): reads a CSV file with a header row
// or JSON lines, and checks its row count and each declared column's rules. Pure reading: no
// daemon, no database; runs inside `kiln task check`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"

namespace kiln::plugins {

enum class ColumnType { kInt, kFloat, kString, kBool };

// One value of an `allowed` list as written in the pipeline file.
using AllowedValue = std::variant<std::string, int64_t, double, bool>;

struct ColumnRule {
  std::string name;
  std::optional<ColumnType> type;  // none: any type
  bool nulls = true;               // false: a null (empty CSV field, JSON null) is a violation
  std::optional<double> min;       // for numbers
  std::optional<double> max;
  std::vector<AllowedValue> allowed;  // empty: any value
  bool unique = false;
  bool required = true;  // the column must exist
};

struct Contract {
  std::string data;  // the file; ".jsonl"/".ndjson" = JSON lines, anything else = CSV
  std::optional<int64_t> rows_min;
  std::optional<int64_t> rows_max;
  std::vector<ColumnRule> columns;  // in file order
};

struct CheckLimits {
  uint64_t max_bytes = uint64_t{16} << 30;   // a bigger file is refused before reading
  size_t max_field_bytes = size_t{1} << 20;  // one CSV field or JSON line
  size_t max_examples = 5;                   // offending rows listed per violation
  size_t max_columns = 10000;  // a wider CSV header is an error; further JSON keys are ignored
};

// One broken rule of one column (or of the row count: column empty, rule "rows").
struct Violation {
  std::string column;
  std::string rule;     // "type", "nulls", "min", "max", "allowed", "unique", "required", "rows"
  std::string message;  // complete, e.g. "age: 3 values below min 0 (rows 4, 9, 17)"
  int64_t count = 0;    // offending values (rows), 0 for required/rows
  std::vector<int64_t> rows;  // the first offending data rows, 1-based (header not counted)
};

struct CheckReport {
  int64_t rows = 0;                   // data rows read
  std::vector<std::string> columns;   // as found in the file, in order
  std::vector<Violation> violations;  // in contract order
};

// Reads `contract.data` and checks it. An Error (never a crash) when the file cannot be read as
// data: missing, unreadable, empty (no header), bigger than max_bytes, not UTF-8, malformed CSV
// (unterminated quote, a row with more fields than the header) or a JSON line that is not an
// object; the message names the file and, where known, the line.
Result<CheckReport> CheckData(const Contract& contract, const CheckLimits& limits = {});

}  // namespace kiln::plugins
