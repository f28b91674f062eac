// Data files read by `kind = "check"`: the input is written to a CSV and a JSON lines file, each
// held to a contract that uses every rule. Whatever the bytes, the result is a report or an
// error, and a report is consistent with itself.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "fuzz/check.h"
#include "plugins/check_data.h"

namespace {

using kiln::plugins::ColumnRule;
using kiln::plugins::ColumnType;

kiln::plugins::Contract MakeContract(const std::string& path) {
  kiln::plugins::Contract c;
  c.data = path;
  c.rows_min = 1;
  c.rows_max = 1000;
  ColumnRule a{"a", ColumnType::kInt, false, 0, 100, {int64_t{1}, int64_t{2}}, true, true};
  ColumnRule b{"b", ColumnType::kFloat, true, -1.5, 1e6, {}, false, false};
  ColumnRule s{"s",  ColumnType::kString, true, {}, {}, {std::string("x"), std::string("")}, true,
               false};
  ColumnRule t{"t", ColumnType::kBool, true, {}, {}, {true}, false, false};
  ColumnRule u{"u", std::nullopt, true, {}, {}, {int64_t{3}, 2.5, std::string("z")}, true, false};
  c.columns = {a, b, s, t, u};
  return c;
}

void CheckOne(const std::string& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
  kiln::plugins::CheckLimits limits;
  limits.max_field_bytes = 4096;
  auto report = kiln::plugins::CheckData(MakeContract(path), limits);
  if (!report.ok()) {
    kiln::fuzz::Check(!report.message().empty(), "an error says what is wrong");
    return;
  }
  kiln::fuzz::Check(report->rows >= 0, "rows are counted from 0");
  for (const auto& v : report->violations) {
    kiln::fuzz::Check(v.rows.size() <= limits.max_examples, "at most max_examples rows listed");
    kiln::fuzz::Check(static_cast<int64_t>(v.rows.size()) <= v.count || v.count == 0,
                      "no more rows listed than counted");
    for (size_t i = 0; i < v.rows.size(); ++i) {
      kiln::fuzz::Check(v.rows[i] >= 1 && v.rows[i] <= report->rows, "a listed row exists");
      if (i > 0) kiln::fuzz::Check(v.rows[i - 1] < v.rows[i], "rows ascend");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, size_t size) {
  // The two files are made again for each input and removed once the fuzzer exits.
  static const struct Files {
    std::string base = "/tmp/kiln-fuzz-data-" + std::to_string(getpid());
    ~Files() {
      std::remove((base + ".csv").c_str());
      std::remove((base + ".jsonl").c_str());
    }
  } files;
  const std::string& base = files.base;
  const std::string_view bytes = kiln::fuzz::Text(data, size);
  CheckOne(base + ".csv", bytes);
  CheckOne(base + ".jsonl", bytes);
  return 0;
}
