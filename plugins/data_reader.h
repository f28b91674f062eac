// Streaming readers behind CheckData (check_data.h): a CSV file with a header row (libcsv) and
// JSON lines (nlohmann::json), each calling back once per data row. Memory does not grow with the
// file: one chunk, one row and (for JSON) one line at a time. Internal to the plugins module.
#pragma once

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "plugins/check_data.h"

namespace kiln::plugins::data {

// One CSV data row, as wide as the header: nullopt is a null (an empty unquoted field, or a
// trailing field the row leaves out); `""` is an empty string. Views are valid during the call.
using CsvCells = std::vector<std::optional<std::string_view>>;

// Reads `path` as CSV: `on_header` once with the column names of the first non-blank row, then
// `on_row` for each further non-blank row. Errors name the file and, for malformed data, the
// physical line (see data_reader.cc) as "<path>:LINE: ...".
Status ReadCsv(const std::string& path, const CheckLimits& limits,
               const std::function<void(const std::vector<std::string>&)>& on_header,
               const std::function<void(const CsvCells&)>& on_row);

// Reads `path` as JSON lines: `on_object` for each non-blank line, which must be a JSON object
// (ordered_json: its keys in the order written).
Status ReadJsonLines(const std::string& path, const CheckLimits& limits,
                     const std::function<void(const nlohmann::ordered_json&)>& on_object);

// Names for a message: at most 20 (then "and N more"), each cut to 60 bytes, control characters
// and bytes that are not UTF-8 replaced: a file's header cannot flood a log.
std::string ListNames(const std::vector<std::string>& names);

// True for a ".jsonl" or ".ndjson" file name, in any case.
bool IsJsonLinesPath(std::string_view path);

}  // namespace kiln::plugins::data
