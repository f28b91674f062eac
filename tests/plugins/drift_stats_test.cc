#include "plugins/drift_stats.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/plugins/data_files.h"

using kiln::plugins::ColumnDrift;
using kiln::plugins::ComputeDrift;
using kiln::plugins::DriftMethod;
using kiln::plugins::DriftRequest;
using kiln::plugins::KsStatistic;
using kiln::plugins::Psi;
using kiln::plugins::testing::DataFiles;

// Expected values were computed with Debian 12's python3-numpy 1.24.2 and python3-scipy 1.10.1;
// every snippet below assumes this prelude:
//
//   import math; import numpy as np; from scipy.stats import ks_2samp
//   def ks(a, b): return ks_2samp(a, b).statistic
//   def psi(ref, cur):
//       cuts = np.unique(np.quantile(ref, [.1, .2, .3, .4, .5, .6, .7, .8, .9]))
//       k = len(cuts) + 1  # searchsorted side='left': right-closed bins (a, b]
//       p = np.maximum(np.bincount(np.searchsorted(cuts, ref), minlength=k) / len(ref), 1e-4)
//       q = np.maximum(np.bincount(np.searchsorted(cuts, cur), minlength=k) / len(cur), 1e-4)
//       return float(np.sum((q - p) * np.log(q / p)))
//   A = [math.fmod(i * 0.37, 10) for i in range(200)]
//   B = [math.fmod(i * 0.41, 12) for i in range(210)]

namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with its files.

// fmod(i * step, mod) for i in [0, n): the A and B of the Python prelude.
std::vector<double> Wave(int n, double step, double mod) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) out.push_back(std::fmod(i * step, mod));
  return out;
}

DriftRequest Request(std::string reference, std::string current,
                     std::vector<std::string> columns = {}, DriftMethod method = DriftMethod::kPsi,
                     double threshold = 0.2) {
  DriftRequest request;
  request.reference = std::move(reference);
  request.current = std::move(current);
  request.columns = std::move(columns);
  request.method = method;
  request.threshold = threshold;
  return request;
}

std::vector<ColumnDrift> Drift(const DriftRequest& request) {
  auto result = ComputeDrift(request);
  INFO((result.ok() ? std::string() : result.message()));
  REQUIRE(result.ok());
  return *result;
}

std::string ErrorOf(const DriftRequest& request) {
  auto result = ComputeDrift(request);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == kiln::ErrorCode::kInvalidArgument);
  return result.message();
}

std::vector<std::string> Names(const std::vector<ColumnDrift>& drifts) {
  std::vector<std::string> out;
  for (const auto& d : drifts) out.push_back(d.column);
  return out;
}

void CheckColumn(const ColumnDrift& d, const std::string& column, double statistic, bool drifted,
                 int64_t reference_values, int64_t current_values) {
  CHECK(d.column == column);
  CHECK(d.statistic == Approx(statistic).epsilon(1e-9));
  CHECK(d.drifted == drifted);
  CHECK(d.reference_values == reference_values);
  CHECK(d.current_values == current_values);
}

// Reference data for the end-to-end cases: `name` is a string, `code` is numeric here but not in
// cur.csv, `sparse` has one value here and none in cur.csv, `only_ref` is missing from cur.csv.
constexpr const char* kRefCsv =
    "name,age,score,code,sparse,only_ref\n"
    "ann,30,1.5,7,,1\n"
    "bob,41,2.5,8,,2\n"
    "cy,,3.5,9,1,3\n"
    "dan,25,4.5,10,,4\n"
    "eve,38,5.5,11,,5\n";
constexpr const char* kCurCsv =
    "score,age,code,name,sparse,only_cur\n"
    "1.5,30,7,ann,,x\n"
    "9,50,abc,bob,,y\n"
    "10,60,9,cy,,z\n"
    "2.5,28,10,dan,,w\n";
// Keys in first-appearance order: x, label, y, z, flag.
constexpr const char* kRefJsonl =
    "{\"x\": 1.0, \"label\": \"a\", \"y\": 10}\n"
    "{\"y\": 12, \"x\": 2.5, \"z\": null, \"flag\": true}\n"
    "\n"
    "{\"x\": null, \"y\": 11, \"z\": 4}\n"
    "{\"x\": 4, \"y\": 30, \"label\": \"b\"}\n";
constexpr const char* kCurJsonl =
    "{\"y\": 20, \"x\": 1.0, \"z\": \"n/a\"}\n"
    "{\"x\": 7, \"y\": 25, \"flag\": 1}\n"
    "{\"x\": 8, \"y\": 9}\n";

}  // namespace

// ks([1,2,2,3,4], [2,2,3,5,6,7]) -> 0.5; ks([1,2,2,2], [2,2,2,3]) -> 0.25
TEST_CASE("ks statistic steps over tied values in both samples before measuring") {
  CHECK(KsStatistic({1, 2, 2, 3, 4}, {2, 2, 3, 5, 6, 7}) == Approx(0.5).epsilon(1e-9));
  CHECK(KsStatistic({2, 3, 5, 6, 7, 2}, {4, 3, 2, 2, 1}) == Approx(0.5).epsilon(1e-9));
  // Measuring after the reference's three 2s alone would give 1.
  CHECK(KsStatistic({1, 2, 2, 2}, {2, 2, 2, 3}) == Approx(0.25).epsilon(1e-9));
}

// ks([1,2,2,3], [2,3,1,2]) -> 0.0; ks([1,2,3], [4,5]) -> 1.0
TEST_CASE("ks statistic is 0 for identical samples and 1 for disjoint ones") {
  CHECK(KsStatistic({1, 2, 2, 3}, {2, 3, 1, 2}) == 0);
  CHECK(KsStatistic({7, 7, 7}, {7}) == 0);
  CHECK(KsStatistic({1, 2, 3}, {4, 5}) == Approx(1.0).epsilon(1e-9));
  CHECK(KsStatistic({4, 5}, {1, 2, 3}) == Approx(1.0).epsilon(1e-9));
}

// ks(A, B) -> 0.16666666666666666; ks(A, A) -> 0.0
TEST_CASE("ks statistic of two generated samples matches scipy") {
  auto a = Wave(200, 0.37, 10);
  auto b = Wave(210, 0.41, 12);
  CHECK(KsStatistic(a, b) == Approx(0.16666666666666666).epsilon(1e-9));
  CHECK(KsStatistic(a, b) == 0.16666666666666666);  // bit for bit: 700/4200 rounded once
  CHECK(KsStatistic(b, a) == Approx(0.16666666666666666).epsilon(1e-9));
  CHECK(KsStatistic(a, a) == 0);
}

TEST_CASE("ks statistic and psi of an empty sample are 0") {
  CHECK(KsStatistic({}, {1, 2}) == 0);
  CHECK(KsStatistic({1, 2}, {}) == 0);
  CHECK(KsStatistic({}, {}) == 0);
  CHECK(Psi({}, {1, 2}) == 0);
  CHECK(Psi({1, 2}, {}) == 0);
  CHECK(Psi({}, {}) == 0);
}

// psi(list(range(1, 21)), [x + 3 for x in range(1, 21)]) -> 0.862185721179436
// np.quantile(1..20, [.1..]) = 2.9 4.8 6.7 8.6 10.5 12.4 14.3 16.2 18.1 (19 * k/10 between ranks)
//   bin          ref (1..20)  p     cur (4..23)   q       (q - p) ln(q / p)
//   (-inf, 2.9]  1 2          0.1   -             1e-4    (1e-4 - 0.1) ln(1e-3) = 0.6900847
//   (2.9, 4.8]   3 4          0.1   4             0.05    -0.05 ln 0.5        = 0.0346574
//   (4.8, 6.7] .. (16.2, 18.1]: two values each in both, p = q = 0.1:     0
//   (18.1, inf)  19 20        0.1   19..23        0.25    0.15 ln 2.5         = 0.1374436
//   sum = 0.8621857 (the floored share 1e-4 is used as is: the q's then sum to 1.0001)
TEST_CASE("psi of a shifted sample follows the worked decile table") {
  std::vector<double> reference, current;
  for (int i = 1; i <= 20; ++i) reference.push_back(i), current.push_back(i + 3);
  CHECK(Psi(reference, current) == Approx(0.862185721179436).epsilon(1e-9));
}

// psi([1, 2] + [5]*16 + [8, 9], [1, 5, 5, 5, 5, 5.2, 6, 7, 8, 9]) -> 1.383231932930261
// cuts 4.7, 5 (seven times), 5.3 merge into 4.7, 5, 5.3: four bins
//   bin          p                q            (q - p) ln(q / p)
//   (-inf, 4.7]  2/20 = 0.1       1/10 = 0.1   0
//   (4.7, 5]     16/20 = 0.8      4/10 = 0.4   -0.4 ln 0.5            = 0.2772589
//   (5, 5.3]     0 -> 1e-4        1/10 = 0.1   (0.1 - 1e-4) ln 1000   = 0.6900847
//   (5.3, inf)   2/20 = 0.1       4/10 = 0.4   0.3 ln 4               = 0.4158883
// psi([3], [1, 3, 5]) -> 2.8382532243304146 (one cut, 3: bins (-inf, 3] and (3, inf))
TEST_CASE("psi merges duplicate cut points of a reference with few distinct values") {
  std::vector<double> reference = {1, 2, 8, 9};
  reference.insert(reference.end(), 16, 5.0);
  CHECK(Psi(reference, {1, 5, 5, 5, 5, 5.2, 6, 7, 8, 9}) ==
        Approx(1.383231932930261).epsilon(1e-9));
  CHECK(Psi({3}, {1, 3, 5}) == Approx(2.8382532243304146).epsilon(1e-9));
  CHECK(Psi({3}, {3, 3}) == 0);
}

// psi(A, A) -> 0.0; psi(A, B) -> 0.13627148118745946; psi(B, A) -> 0.7310320380835948
TEST_CASE("psi of generated samples matches numpy and is 0 for identical data") {
  auto a = Wave(200, 0.37, 10);
  auto b = Wave(210, 0.41, 12);
  CHECK(Psi(a, a) == 0);
  CHECK(Psi(std::vector<double>(a.rbegin(), a.rend()), a) == 0);
  CHECK(Psi(a, b) == Approx(0.13627148118745946).epsilon(1e-9));
  CHECK(Psi(b, a) == Approx(0.7310320380835948).epsilon(1e-9));
}

// psi([30, 41, 25, 38], [30, 50, 60, 28]) -> 6.038974089478948
// psi([1.5, 2.5, 3.5, 4.5, 5.5], [1.5, 9, 10, 2.5]) -> 3.3360423780185924
TEST_CASE("drift of csv files defaults to the numeric columns of both in reference order") {
  DataFiles dir;
  auto ref = dir.Write("ref.csv", kRefCsv);
  auto cur = dir.Write("cur.csv", kCurCsv);
  auto drifts = Drift(Request(ref, cur));
  REQUIRE(Names(drifts) == std::vector<std::string>{"age", "score"});
  CheckColumn(drifts[0], "age", 6.038974089478948, true, 4, 4);
  CheckColumn(drifts[1], "score", 3.3360423780185924, true, 5, 4);

  drifts = Drift(Request(ref, cur, {}, DriftMethod::kPsi, 6.0));
  REQUIRE(drifts.size() == 2);
  CHECK(drifts[0].drifted);
  CHECK_FALSE(drifts[1].drifted);
}

// ks([30, 41, 25, 38], [30, 50, 60, 28]) -> 0.5
// ks([1.5, 2.5, 3.5, 4.5, 5.5], [1.5, 9, 10, 2.5]) -> 0.5
TEST_CASE("drift of chosen csv columns keeps their order and drifted is above the threshold") {
  DataFiles dir;
  auto ref = dir.Write("ref.csv", kRefCsv);
  auto cur = dir.Write("cur.csv", kCurCsv);
  auto drifts = Drift(Request(ref, cur, {"score", "age"}, DriftMethod::kKs, 0.45));
  REQUIRE(Names(drifts) == std::vector<std::string>{"score", "age"});
  CheckColumn(drifts[0], "score", 0.5, true, 5, 4);
  CheckColumn(drifts[1], "age", 0.5, true, 4, 4);

  drifts = Drift(Request(ref, cur, {"age", "age"}, DriftMethod::kKs, 0.5));
  REQUIRE(Names(drifts) == std::vector<std::string>{"age", "age"});
  CheckColumn(drifts[0], "age", 0.5, false, 4, 4);  // equal to the threshold: not drifted
  CheckColumn(drifts[1], "age", 0.5, false, 4, 4);
}

// ks([1, 2.5, 4], [1, 7, 8]) -> 0.6666666666666666; ks([10, 12, 11, 30], [20, 25, 9])
// -> 0.4166666666666667
TEST_CASE("drift of json lines defaults to numeric keys in first-appearance order") {
  DataFiles dir;
  auto ref = dir.Write("ref.jsonl", kRefJsonl);
  auto cur = dir.Write("cur.ndjson", kCurJsonl);
  auto drifts = Drift(Request(ref, cur, {}, DriftMethod::kKs, 0.5));
  REQUIRE(Names(drifts) == std::vector<std::string>{"x", "y"});
  CheckColumn(drifts[0], "x", 0.6666666666666666, true, 3, 3);
  CheckColumn(drifts[1], "y", 0.4166666666666667, false, 4, 3);
}

// psi([1, 2.5, 4], [1, 7, 8]) -> 2.9341472484810085
// psi([30, 41, 25, 38], [30, 31.5]) -> 6.90540806517888; ks(...) -> 0.5
TEST_CASE("drift compares a csv reference with json lines and back") {
  DataFiles dir;
  auto ref_csv = dir.Write("ref.csv", kRefCsv);
  auto cur_jsonl = dir.Write("cur.jsonl", "{\"age\": 30, \"score\": \"x\"}\n{\"age\": 31.5}\n");
  auto drifts = Drift(Request(ref_csv, cur_jsonl));
  REQUIRE(Names(drifts) == std::vector<std::string>{"age"});
  CheckColumn(drifts[0], "age", 6.90540806517888, true, 4, 2);
  drifts = Drift(Request(ref_csv, cur_jsonl, {}, DriftMethod::kKs, 0.2));
  REQUIRE(drifts.size() == 1);
  CheckColumn(drifts[0], "age", 0.5, true, 4, 2);

  auto ref_jsonl = dir.Write("ref.jsonl", kRefJsonl);
  auto cur_csv = dir.Write("cur.csv", "x,y\n1,\n7,\n8,\n");
  drifts = Drift(Request(ref_jsonl, cur_csv, {"x"}));
  REQUIRE(drifts.size() == 1);
  CheckColumn(drifts[0], "x", 2.9341472484810085, true, 3, 3);
}

TEST_CASE("drift names the file and the missing column with the columns found") {
  DataFiles dir;
  auto ref = dir.Write("ref.csv", kRefCsv);
  auto cur = dir.Write("cur.csv", kCurCsv);
  CHECK(ErrorOf(Request(ref, cur, {"age", "missing"})) ==
        ref + ": no column 'missing' (found: name, age, score, code, sparse, only_ref)");
  CHECK(ErrorOf(Request(ref, cur, {"only_ref"})) ==
        cur + ": no column 'only_ref' (found: score, age, code, name, sparse, only_cur)");

  auto ref_jsonl = dir.Write("ref.jsonl", kRefJsonl);
  auto empty = dir.Write("empty.jsonl", "");
  CHECK(ErrorOf(Request(ref_jsonl, cur, {"w"})) ==
        ref_jsonl + ": no column 'w' (found: x, label, y, z, flag)");
  CHECK(ErrorOf(Request(ref_jsonl, empty, {"x"})) == empty + ": empty: no JSON object");
}

TEST_CASE("drift names the first row holding a non-number of a chosen column") {
  DataFiles dir;
  auto ref = dir.Write("ref.csv", kRefCsv);
  auto cur = dir.Write("cur.csv", kCurCsv);
  CHECK(ErrorOf(Request(ref, cur, {"age", "name"})) ==
        ref + ": column 'name' is not numeric (row 1: 'ann')");
  CHECK(ErrorOf(Request(ref, cur, {"code"})) ==
        cur + ": column 'code' is not numeric (row 2: 'abc')");

  auto ref_jsonl = dir.Write("ref.jsonl", kRefJsonl);
  auto cur_jsonl = dir.Write("cur.jsonl", kCurJsonl);
  CHECK(ErrorOf(Request(ref_jsonl, cur_jsonl, {"flag"})) ==
        ref_jsonl + ": column 'flag' is not numeric (row 2: 'true')");
  CHECK(ErrorOf(Request(ref_jsonl, cur_jsonl, {"z"})) ==
        cur_jsonl + ": column 'z' is not numeric (row 1: 'n/a')");

  auto odd = dir.Write("odd.csv", "v,w\n1,2\n\"\",3\nnan,4\ninf,5\n");
  CHECK(ErrorOf(Request(odd, odd, {"v"})) == odd + ": column 'v' is not numeric (row 2: '')");
  auto nan = dir.Write("nan.csv", "v\n1\n+2\n-3e1\nnan\ninf\n");
  CHECK(ErrorOf(Request(nan, nan, {"v"})) == nan + ": column 'v' is not numeric (row 4: 'nan')");
  auto inf = dir.Write("inf.csv", "v\n1\n-inf\n");
  CHECK(ErrorOf(Request(inf, inf, {"v"})) == inf + ": column 'v' is not numeric (row 2: '-inf')");
  auto long_text = dir.Write("long.csv", "v\n" + std::string(70, 'a') + "\n");
  CHECK(ErrorOf(Request(long_text, long_text, {"v"})) ==
        long_text + ": column 'v' is not numeric (row 1: '" + std::string(60, 'a') + "...')");
  auto nested = dir.Write("nested.jsonl", "{\"v\": 1}\n{\"v\": [1, 2]}\n");
  CHECK(ErrorOf(Request(nested, nested, {"v"})) ==
        nested + ": column 'v' is not numeric (row 2: '[1,2]')");
}

TEST_CASE("drift refuses a chosen column with no values in either file") {
  DataFiles dir;
  auto ref = dir.Write("ref.csv", kRefCsv);
  auto cur = dir.Write("cur.csv", kCurCsv);
  CHECK(ErrorOf(Request(ref, cur, {"sparse"})) == cur + ": column 'sparse' has no values");
  CHECK(ErrorOf(Request(cur, ref, {"sparse"})) == cur + ": column 'sparse' has no values");
  auto nulls = dir.Write("nulls.jsonl", "{\"a\": null}\n{\"a\": null, \"b\": 1}\n");
  CHECK(ErrorOf(Request(nulls, nulls, {"b", "a"})) == nulls + ": column 'a' has no values");
}

TEST_CASE("drift with no numeric column in common is an error") {
  DataFiles dir;
  auto ref = dir.Write("ref.csv", kRefCsv);
  auto words = dir.Write("words.csv", "name,age,score\nann,old,\n");
  CHECK(ErrorOf(Request(ref, words)) == "no numeric column in both " + ref + " and " + words);
  auto empty = dir.Write("empty.jsonl", "\n");
  CHECK(ErrorOf(Request(empty, ref)) == empty + ": empty: no JSON object");
}

TEST_CASE("drift passes on the reader's error for a file that is not readable data") {
  DataFiles dir;
  auto ref = dir.Write("ref.csv", kRefCsv);
  auto missing = (fs::temp_directory_path() / "kiln_drift_no_such_file.csv").string();
  CHECK(ErrorOf(Request(ref, missing)).starts_with(missing + ": cannot open: "));
  CHECK(ErrorOf(Request(missing, ref)).starts_with(missing + ": cannot open: "));
  auto bad = dir.Write("bad.jsonl", "{\"x\": 1}\n[1]\n");
  CHECK(ErrorOf(Request(bad, ref)) == bad + ":2: not a JSON object");
  auto empty = dir.Write("empty.csv", "");
  CHECK(ErrorOf(Request(ref, empty, {"age"})) == empty + ": empty: no header row");
}
