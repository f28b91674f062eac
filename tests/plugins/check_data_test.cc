#include "plugins/check_data.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/plugins/data_files.h"

using kiln::plugins::CheckData;
using kiln::plugins::CheckLimits;
using kiln::plugins::CheckReport;
using kiln::plugins::ColumnRule;
using kiln::plugins::ColumnType;
using kiln::plugins::Contract;
using kiln::plugins::Violation;
using kiln::plugins::testing::DataFiles;

namespace {

ColumnRule Col(std::string name, std::optional<ColumnType> type = std::nullopt) {
  ColumnRule rule;
  rule.name = std::move(name);
  rule.type = type;
  return rule;
}

Contract On(std::string data, std::vector<ColumnRule> columns) {
  Contract contract;
  contract.data = std::move(data);
  contract.columns = std::move(columns);
  return contract;
}

CheckReport Check(const Contract& contract, const CheckLimits& limits = {}) {
  auto result = CheckData(contract, limits);
  INFO((result.ok() ? std::string() : result.message()));
  REQUIRE(result.ok());
  return *result;
}

std::string ErrorOf(const Contract& contract, const CheckLimits& limits = {}) {
  auto result = CheckData(contract, limits);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == kiln::ErrorCode::kInvalidArgument);
  return result.message();
}

std::vector<std::string> Messages(const CheckReport& report) {
  std::vector<std::string> out;
  for (const auto& v : report.violations) out.push_back(v.message);
  return out;
}

void CheckViolation(const Violation& v, const std::string& column, const std::string& rule,
                    int64_t count, const std::vector<int64_t>& rows, const std::string& message) {
  CHECK(v.column == column);
  CHECK(v.rule == rule);
  CHECK(v.count == count);
  CHECK(v.rows == rows);
  CHECK(v.message == message);
}

}  // namespace

TEST_CASE("a clean csv reports its rows and columns and no violation") {
  DataFiles dir;
  auto id = Col("id", ColumnType::kInt);
  id.unique = true;
  auto name = Col("name", ColumnType::kString);
  name.nulls = false;
  auto age = Col("age", ColumnType::kInt);
  age.min = 0;
  age.max = 150;
  auto contract = On(dir.Write("people.csv", "id,name,age\n1,ann,30\n2,bob,41\n"), {id, name, age});
  contract.rows_min = 2;
  contract.rows_max = 2;
  auto report = Check(contract);
  CHECK(report.rows == 2);
  CHECK(report.columns == std::vector<std::string>{"id", "name", "age"});
  CHECK(report.violations.empty());
}

TEST_CASE("ints that do not parse are type violations and are not checked further") {
  DataFiles dir;
  auto age = Col("age", ColumnType::kInt);
  age.min = 0;
  age.allowed = {int64_t{1}, int64_t{-3}, int64_t{7}};
  auto path = dir.Write("a.csv", "age\n1\nx\n-3\n1.5\n+7\n9223372036854775808\n 5\n");
  auto report = Check(On(path, {age}));
  CHECK(report.rows == 7);
  REQUIRE(report.violations.size() == 2);
  CheckViolation(report.violations[0], "age", "type", 4, {2, 4, 6, 7},
                 "age: 4 values not of type int (rows 2, 4, 6, 7)");
  CheckViolation(report.violations[1], "age", "min", 1, {3}, "age: 1 value below min 0 (row 3)");
}

TEST_CASE("floats bools and strings are read from the text and empty quotes are not null") {
  DataFiles dir;
  auto s = Col("s", ColumnType::kString);
  s.nulls = false;
  auto path =
      dir.Write("t.csv", "f,b,s\n1.5,true,a\n1e3,False,\nnan,yes,\"\"\ninf,TRUE,x\n.5,1,y\n");
  auto report = Check(On(path, {Col("f", ColumnType::kFloat), Col("b", ColumnType::kBool), s}));
  CHECK(report.rows == 5);
  CHECK(Messages(report) == std::vector<std::string>{"f: 2 values not of type float (rows 3, 4)",
                                                     "b: 2 values not of type bool (rows 3, 5)",
                                                     "s: 1 null (row 2)"});
  CheckViolation(report.violations[2], "s", "nulls", 1, {2}, "s: 1 null (row 2)");
}

TEST_CASE("min and max list the first offending rows and an ellipsis beyond max_examples") {
  DataFiles dir;
  auto v = Col("v", ColumnType::kFloat);
  v.min = 0.5;
  v.max = 10;
  auto path = dir.Write("v.csv", "v\n-1\n11\n-2\n5\n-3\n-4\n-5\n-6\n20\n");
  auto report = Check(On(path, {v}));
  REQUIRE(report.violations.size() == 2);
  CheckViolation(report.violations[0], "v", "min", 6, {1, 3, 5, 6, 7},
                 "v: 6 values below min 0.5 (rows 1, 3, 5, 6, 7, ...)");
  CheckViolation(report.violations[1], "v", "max", 2, {2, 9},
                 "v: 2 values above max 10 (rows 2, 9)");

  CheckLimits one;
  one.max_examples = 1;
  CHECK(Messages(Check(On(path, {v}), one)) ==
        std::vector<std::string>{"v: 6 values below min 0.5 (rows 1, ...)",
                                 "v: 2 values above max 10 (rows 2, ...)"});
  CheckLimits none;
  none.max_examples = 0;
  auto quiet = Check(On(path, {v}), none);
  CHECK(Messages(quiet) ==
        std::vector<std::string>{"v: 6 values below min 0.5", "v: 2 values above max 10"});
  CHECK(quiet.violations[0].rows.empty());
  CHECK(quiet.violations[0].count == 6);
}

TEST_CASE("allowed compares numbers for numeric columns and text otherwise") {
  DataFiles dir;
  auto label = Col("label", ColumnType::kInt);
  label.allowed = {int64_t{0}, int64_t{1}};
  auto color = Col("color", ColumnType::kString);
  color.allowed = {std::string("red"), std::string("green")};
  auto flag = Col("flag", ColumnType::kBool);
  flag.allowed = {true};
  auto code = Col("code");
  code.allowed = {1.5, int64_t{2}, true, std::string("x")};
  auto ratio = Col("ratio", ColumnType::kFloat);
  ratio.allowed = {int64_t{1}, 0.5};
  auto path = dir.Write("allowed.csv",
                        "label,color,flag,code,ratio\n"
                        "0,red,true,1.5,1\n"
                        "01,green,True,2,0.5\n"
                        "2,Red,false,true,1.0\n"
                        "1,blue,TRUE,x,0.25\n"
                        "+1,green,true,2.0,1e0\n");
  auto report = Check(On(path, {label, color, flag, code, ratio}));
  CHECK(report.rows == 5);
  CHECK(Messages(report) == std::vector<std::string>{
                                "label: 1 value not allowed (accepted: 0, 1) (row 3)",
                                "color: 2 values not allowed (accepted: red, green) (rows 3, 4)",
                                "flag: 1 value not allowed (accepted: true) (row 3)",
                                "code: 1 value not allowed (accepted: 1.5, 2, true, x) (row 5)",
                                "ratio: 1 value not allowed (accepted: 1, 0.5) (row 4)",
                            });
  CheckViolation(report.violations[1], "color", "allowed", 2, {3, 4},
                 "color: 2 values not allowed (accepted: red, green) (rows 3, 4)");
}

TEST_CASE("unique reports later duplicates by value and ignores nulls") {
  DataFiles dir;
  auto id = Col("id", ColumnType::kInt);
  id.unique = true;
  auto name = Col("name", ColumnType::kString);
  name.unique = true;
  auto path = dir.Write("u.csv", "id,name\n1,a\n2,b\n,c\n1,d\n01,e\n,f\n3,g\n2,a\n");
  auto report = Check(On(path, {id, name}));
  CHECK(report.rows == 8);
  REQUIRE(report.violations.size() == 2);
  CheckViolation(report.violations[0], "id", "unique", 3, {4, 5, 8},
                 "id: 3 duplicate values (rows 4, 5, 8)");
  CheckViolation(report.violations[1], "name", "unique", 1, {8}, "name: 1 duplicate value (row 8)");
}

TEST_CASE("a missing required column is reported with the columns found") {
  DataFiles dir;
  auto country = Col("country", ColumnType::kString);
  country.nulls = false;
  auto optional = Col("region");
  optional.required = false;
  optional.nulls = false;
  auto report = Check(
      On(dir.Write("m.csv", "a,b,c\n1,2,3\n"), {country, optional, Col("a", ColumnType::kInt)}));
  REQUIRE(report.violations.size() == 1);
  CheckViolation(report.violations[0], "country", "required", 0, {},
                 "country: column missing (found: a, b, c)");
}

TEST_CASE("row count bounds are violations of the empty column listed first") {
  DataFiles dir;
  auto path = dir.Write("r.csv", "a\n1\n2\nx\n");
  auto contract = On(path, {Col("a", ColumnType::kInt)});
  contract.rows_min = 5;
  auto report = Check(contract);
  REQUIRE(report.violations.size() == 2);
  CheckViolation(report.violations[0], "", "rows", 0, {}, "rows: 3 data rows, fewer than min 5");
  CHECK(report.violations[1].message == "a: 1 value not of type int (row 3)");

  contract.rows_min.reset();
  contract.rows_max = 2;
  CHECK(Messages(Check(contract)) ==
        std::vector<std::string>{"rows: 3 data rows, more than max 2",
                                 "a: 1 value not of type int (row 3)"});

  auto single = On(dir.Write("one.csv", "a\n1\n"), {});
  single.rows_min = 2;
  CHECK(Messages(Check(single)) == std::vector<std::string>{"rows: 1 data row, fewer than min 2"});
}

TEST_CASE("violations follow the contract column order then the rule order") {
  DataFiles dir;
  auto z = Col("z", ColumnType::kInt);
  z.nulls = false;
  z.min = 0;
  z.max = 5;
  z.allowed = {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{10}};
  z.unique = true;
  auto x = Col("x", ColumnType::kString);
  x.unique = true;
  auto path = dir.Write("o.csv", "x,z\n1,-1\n1,\n1,x\n1,10\n1,10\n");
  auto report = Check(On(path, {z, Col("m"), x}));
  REQUIRE(report.violations.size() == 8);
  CheckViolation(report.violations[0], "z", "type", 1, {3}, "z: 1 value not of type int (row 3)");
  CheckViolation(report.violations[1], "z", "nulls", 1, {2}, "z: 1 null (row 2)");
  CheckViolation(report.violations[2], "z", "min", 1, {1}, "z: 1 value below min 0 (row 1)");
  CheckViolation(report.violations[3], "z", "max", 2, {4, 5},
                 "z: 2 values above max 5 (rows 4, 5)");
  CheckViolation(report.violations[4], "z", "allowed", 1, {1},
                 "z: 1 value not allowed (accepted: 1, 2, 3, 10) (row 1)");
  CheckViolation(report.violations[5], "z", "unique", 1, {5}, "z: 1 duplicate value (row 5)");
  CheckViolation(report.violations[6], "m", "required", 0, {}, "m: column missing (found: x, z)");
  CheckViolation(report.violations[7], "x", "unique", 4, {2, 3, 4, 5},
                 "x: 4 duplicate values (rows 2, 3, 4, 5)");
}

TEST_CASE("blank lines and CRLF are not rows and a short row ends in nulls") {
  DataFiles dir;
  auto b = Col("b");
  b.nulls = false;
  auto path = dir.Write("crlf.csv", "a,b,c\r\n\r\n1,2,3\r\n\n4\r\n5,,\"\"\r\n\r\n");
  auto report = Check(On(path, {b, Col("c")}));
  CHECK(report.rows == 3);
  CHECK(report.columns == std::vector<std::string>{"a", "b", "c"});
  REQUIRE(report.violations.size() == 1);
  CheckViolation(report.violations[0], "b", "nulls", 2, {2, 3}, "b: 2 nulls (rows 2, 3)");
}

TEST_CASE("fields and column names are not trimmed") {
  DataFiles dir;
  auto path = dir.Write("sp.csv", " id ,name\n 1 ,x\n2,y\n");
  auto report = Check(On(path, {Col(" id ", ColumnType::kInt)}));
  CHECK(report.columns == std::vector<std::string>{" id ", "name"});
  CHECK(Messages(report) == std::vector<std::string>{" id : 1 value not of type int (row 1)"});
}

TEST_CASE("a row with more fields than the header is an error naming its line and row") {
  DataFiles dir;
  // Line 1 header, line 2 row 1, line 3 blank, row 2 starts on line 4 and spans two lines.
  auto path = dir.Write("wide.csv", "a,b\n1,2\n\n\"x\ny\",3,4\n");
  CHECK(ErrorOf(On(path, {})) ==
        path + ":4: row 2 has more fields than the 2 columns of the header");
}

TEST_CASE("malformed csv errors name the line on which the record starts") {
  DataFiles dir;
  const std::string parse = "malformed CSV: error parsing data while strict checking enabled";
  auto open = dir.Write("open.csv", "a,b\n1,2\n3,\"abc\n\ndef\n");
  CHECK(ErrorOf(On(open, {})) ==
        open + ":3: " + parse + " (a quoted field without its closing quote)");
  auto inner = dir.Write("inner.csv", "a,b\n1,2\n3,ab\"c\n");
  CHECK(ErrorOf(On(inner, {})) ==
        inner + ":3: " + parse +
            " (a quote inside an unquoted field, or text after a closing quote)");
  auto after = dir.Write("after.csv", "a\n\"x\ny\"z\n");
  CHECK(ErrorOf(On(after, {})) ==
        after + ":2: " + parse +
            " (a quote inside an unquoted field, or text after a closing quote)");
}

TEST_CASE("files that cannot be read as data are errors") {
  DataFiles dir;
  auto missing = dir.path() + "/missing.csv";
  CHECK(ErrorOf(On(missing, {})) == missing + ": cannot open: No such file or directory");
  CHECK(ErrorOf(On(dir.path(), {})) == dir.path() + ": is a directory");
  auto empty = dir.Write("empty.csv", "");
  CHECK(ErrorOf(On(empty, {})) == empty + ": empty: no header row");
  auto blank = dir.Write("blank.csv", "\n\r\n\n");
  CHECK(ErrorOf(On(blank, {})) == blank + ": empty: no header row");

  auto big = dir.Write("big.csv", "a\n123456789\n");
  CheckLimits small;
  small.max_bytes = 10;
  CHECK(ErrorOf(On(big, {}), small) == big + ": bigger than the limit of 10 bytes");
  small.max_bytes = 12;
  CHECK(Check(On(big, {}), small).rows == 1);

  CheckLimits narrow;
  narrow.max_field_bytes = 4;
  auto wide = dir.Write("wide.csv", "a\nabcd\nabcde\n");
  CHECK(ErrorOf(On(wide, {}), narrow) == wide + ":3: field longer than 4 bytes");
}

TEST_CASE("bytes that are not UTF-8 are an error naming their line") {
  DataFiles dir;
  auto bad = dir.Write("bad.csv", "a,b\n1,2\nx,\xff\n");
  CHECK(ErrorOf(On(bad, {})) == bad + ":3: not UTF-8");
  auto overlong = dir.Write("overlong.csv", "a\n\xc0\x80\n");
  CHECK(ErrorOf(On(overlong, {})) == overlong + ":2: not UTF-8");
  auto surrogate = dir.Write("surrogate.csv", "a\n1\n\xed\xa0\x80\n");
  CHECK(ErrorOf(On(surrogate, {})) == surrogate + ":3: not UTF-8");
  auto truncated = dir.Write("truncated.csv", "a\n\xe2\x82");
  CHECK(ErrorOf(On(truncated, {})) == truncated + ":2: not UTF-8");

  auto good = dir.Write("good.csv", "\xef\xbb\xbfname\n\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\n");
  auto name = Col("name", ColumnType::kString);
  name.allowed = {std::string("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80")};
  auto report = Check(On(good, {name}));
  CHECK(report.columns == std::vector<std::string>{"name"});  // the byte order mark is dropped
  CHECK(report.violations.empty());
}

TEST_CASE("a UTF-8 sequence split across read chunks is one character") {
  DataFiles dir;
  // Reads are 64 KiB: the euro sign's three bytes sit at offsets 65535..65537.
  std::string head = "s\n" + std::string(65535 - 2, 'a');
  auto split = dir.Write("split.csv", head + "\xe2\x82\xac\n");
  CHECK(Check(On(split, {Col("s")})).rows == 1);
  auto cut = dir.Write("cut.csv", head + "\xe2\x82x\n");
  CHECK(ErrorOf(On(cut, {})) == cut + ":2: not UTF-8");
}

// Cross-checked with Python: csv.reader(io.StringIO(data, newline='')) reads 7 non-empty rows
// (header + 6), texts 'line one\nline two', 'she said "hi"', 'a,"b",\nc', '' (row 5, unquoted:
// a null here) and '' (row 6, quoted: an empty string); score -1 at row 2, 12 at row 4, 'x' at 6.
TEST_CASE("a csv with quoted commas newlines and doubled quotes matches the python csv module") {
  DataFiles dir;
  auto path = dir.Write("quoted.csv",
                        "id,text,score\n"
                        "1,\"hello, world\",5\n"
                        "2,\"line one\nline two\",-1\n"
                        "3,\"she said \"\"hi\"\"\",7\n"
                        "\n"
                        "4,\"a,\"\"b\"\",\nc\",12\n"
                        "5,,3\n"
                        "6,\"\",x\n");
  auto text = Col("text", ColumnType::kString);
  text.nulls = false;
  text.allowed = {std::string("hello, world"), std::string("line one\nline two"),
                  std::string("she said \"hi\"")};
  auto score = Col("score", ColumnType::kInt);
  score.min = 0;
  score.max = 10;
  auto report = Check(On(path, {text, score}));
  CHECK(report.rows == 6);
  CHECK(report.columns == std::vector<std::string>{"id", "text", "score"});
  REQUIRE(report.violations.size() == 5);
  CheckViolation(report.violations[0], "text", "nulls", 1, {5}, "text: 1 null (row 5)");
  CheckViolation(report.violations[1], "text", "allowed", 2, {4, 6},
                 "text: 2 values not allowed (accepted: hello, world, line one\nline two, she said "
                 "\"hi\") (rows 4, 6)");
  CheckViolation(report.violations[2], "score", "type", 1, {6},
                 "score: 1 value not of type int (row 6)");
  CheckViolation(report.violations[3], "score", "min", 1, {2},
                 "score: 1 value below min 0 (row 2)");
  CheckViolation(report.violations[4], "score", "max", 1, {4},
                 "score: 1 value above max 10 (row 4)");
}

TEST_CASE("json lines check json types and an absent key is a null") {
  DataFiles dir;
  auto id = Col("id", ColumnType::kInt);
  id.unique = true;
  auto score = Col("score", ColumnType::kFloat);
  score.max = 10;
  auto name = Col("name", ColumnType::kString);
  name.nulls = false;
  auto ok = Col("ok", ColumnType::kBool);
  ok.nulls = false;
  auto path =
      dir.Write("rows.jsonl",
                "{\"id\": 1, \"score\": 0.5, \"name\": \"a\", \"ok\": true}\n"
                "\n"
                "{\"id\": 2.0, \"score\": 3, \"name\": 5, \"ok\": \"yes\", \"extra\": null}\r\n"
                "{\"id\": 3, \"score\": \"x\", \"ok\": false}\n"
                "{\"name\": \"d\", \"id\": 4, \"score\": 1e2}");
  auto report = Check(On(path, {id, score, name, ok}));
  CHECK(report.rows == 4);
  CHECK(report.columns == std::vector<std::string>{"id", "score", "name", "ok", "extra"});
  CHECK(Messages(report) == std::vector<std::string>{
                                "id: 1 value not of type int (row 2)",
                                "score: 1 value not of type float (row 3)",
                                "score: 1 value above max 10 (row 4)",
                                "name: 1 value not of type string (row 2)",
                                "name: 1 null (row 3)",
                                "ok: 1 value not of type bool (row 2)",
                                "ok: 1 null (row 4)",
                            });
  CheckViolation(report.violations[4], "name", "nulls", 1, {3}, "name: 1 null (row 3)");
}

TEST_CASE("json values of untyped columns compare by canonical text") {
  DataFiles dir;
  auto v = Col("v");
  v.allowed = {int64_t{1}, std::string("a")};
  auto big = Col("big", ColumnType::kInt);
  auto path = dir.Write("v.ndjson",
                        "{\"v\": 1.0, \"big\": 9223372036854775807}\n"
                        "{\"v\": \"1\", \"big\": 9223372036854775808}\n"
                        "{\"v\": true}\n"
                        "{\"v\": \"a\"}\n"
                        "{\"v\": [1]}\n");
  CHECK(Messages(Check(On(path, {v, big}))) ==
        std::vector<std::string>{"v: 2 values not allowed (accepted: 1, a) (rows 3, 5)",
                                 "big: 1 value not of type int (row 2)"});
}

TEST_CASE("json lines missing columns and empty files") {
  DataFiles dir;
  auto path = dir.Write("UPPER.NDJSON", "{\"a\": 1}\n{\"c\": null}\n");
  auto report = Check(On(path, {Col("b"), Col("c", ColumnType::kInt)}));
  CHECK(report.rows == 2);
  CHECK(Messages(report) == std::vector<std::string>{"b: column missing (found: a, c)"});

  // Like a CSV file without a header, a JSON lines file without an object is not data.
  auto empty = dir.Write("empty.jsonl", "\n\n");
  CHECK(ErrorOf(On(empty, {Col("b")})) == empty + ": empty: no JSON object");
}

TEST_CASE("json lines that are not objects are errors naming their line") {
  DataFiles dir;
  auto array = dir.Write("array.jsonl", "{\"a\": 1}\n\n[1, 2]\n");
  CHECK(ErrorOf(On(array, {})) == array + ":3: not a JSON object");
  auto invalid = dir.Write("invalid.jsonl", "{\"a\": 1}\n{bad\n");
  CHECK(ErrorOf(On(invalid, {})) == invalid + ":2: not a JSON object");
  auto overflow = dir.Write("overflow.jsonl", "{\"a\": 1e999}\n");
  CHECK(ErrorOf(On(overflow, {})) == overflow + ":1: not a JSON object");
  auto deep =
      dir.Write("deep.jsonl", "{\"a\": " + std::string(600, '[') + std::string(600, ']') + "}\n");
  CHECK(ErrorOf(On(deep, {})) == deep + ":1: JSON nested deeper than 512 levels");
  auto bytes = dir.Write("bytes.jsonl", "{\"a\": \"\xff\"}\n");
  CHECK(ErrorOf(On(bytes, {})) == bytes + ":1: not UTF-8");

  CheckLimits narrow;
  narrow.max_field_bytes = 8;
  auto longer = dir.Write("long.jsonl", "{\"a\":1}\n{\"a\":12345}\n");
  CHECK(ErrorOf(On(longer, {}), narrow) == longer + ":2: line longer than 8 bytes");
}

TEST_CASE("a large csv streams through many chunks") {
  DataFiles dir;
  std::string data = "i,v\n";
  for (int i = 1; i <= 100000; ++i) data += std::to_string(i) + "," + std::to_string(i % 7) + "\n";
  auto path = dir.Write("large.csv", data);
  auto i = Col("i", ColumnType::kInt);
  i.unique = true;
  auto v = Col("v", ColumnType::kInt);
  v.max = 5;
  auto report = Check(On(path, {i, v}));
  CHECK(report.rows == 100000);
  REQUIRE(report.violations.size() == 1);
  CheckViolation(report.violations[0], "v", "max", 14285, {6, 13, 20, 27, 34},
                 "v: 14285 values above max 5 (rows 6, 13, 20, 27, 34, ...)");
}
