// The statistics of `kind = "drift"`: data_reader.cc streams both files, this file collects each
// wanted column's numbers and compares the two samples (PSI or Kolmogorov-Smirnov).
#include "plugins/drift_stats.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "plugins/data_reader.h"

namespace kiln::plugins {
namespace {

using Json = nlohmann::ordered_json;

constexpr double kShareFloor = 1e-4;  // PSI: a bin's share is at least this
constexpr size_t kShownBytes = 60;    // the longest offending value quoted in a message

Status Invalid(std::string message) {
  return Status::Error(ErrorCode::kInvalidArgument, std::move(message));
}

// A finite decimal or scientific number with an optional sign: CheckData's rule for a float.
std::optional<double> ParseNumber(std::string_view s) {
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

// `text` cut to kShownBytes (on a UTF-8 boundary) with "..." when longer.
std::string Shown(std::string_view text) {
  if (text.size() <= kShownBytes) return std::string(text);
  size_t end = kShownBytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return std::string(text.substr(0, end)) + "...";
}

// One column of one file: its numbers, or where the first non-number is.
struct Column {
  std::string name;
  bool present = false;        // in the CSV header, or a key of some JSON object
  std::vector<double> values;  // non-null numbers, in file order (emptied at the first non-number)
  int64_t bad_row = 0;         // the first data row (1-based) holding a non-number; 0: none
  std::string bad_text;        // that value as text

  bool numeric() const { return bad_row == 0; }
};

// Collects the columns `wanted` (or, when `all`, every column) of one data file.
class ColumnReader {
 public:
  ColumnReader(std::string path, const std::vector<std::string>& wanted, bool all)
      : path_(std::move(path)), all_(all) {
    for (const auto& name : wanted) Slot(name);
  }

  Status Read(const CheckLimits& limits) {
    max_columns_ = limits.max_columns;
    if (data::IsJsonLinesPath(path_)) {
      return data::ReadJsonLines(path_, limits, [this](const Json& object) { JsonRow(object); });
    }
    return data::ReadCsv(
        path_, limits, [this](const std::vector<std::string>& names) { Header(names); },
        [this](const data::CsvCells& cells) { CsvRow(cells); });
  }

  const std::vector<Column>& columns() const { return columns_; }
  Column& at(const std::string& name) { return columns_[index_.at(name)]; }

  // Ok when the column is present, numeric and holds at least one value.
  Status Usable(const std::string& name) const {
    const Column& c = columns_[index_.at(name)];
    if (!c.present) {
      return Invalid(path_ + ": no column '" + name +
                     "' (found: " + (found_.empty() ? "none" : data::ListNames(found_)) + ")");
    }
    if (!c.numeric()) {
      return Invalid(path_ + ": column '" + name + "' is not numeric (row " +
                     std::to_string(c.bad_row) + ": '" + c.bad_text + "')");
    }
    if (c.values.empty()) return Invalid(path_ + ": column '" + name + "' has no values");
    return Status::Ok();
  }

 private:
  // The index in columns_ of `name`, added when new.
  size_t Slot(const std::string& name) {
    auto [it, added] = index_.try_emplace(name, columns_.size());
    if (added) columns_.emplace_back().name = name;
    return it->second;
  }

  void Header(const std::vector<std::string>& names) {
    found_ = names;
    by_position_.assign(names.size(), kSkip);
    for (size_t i = 0; i < names.size(); ++i) {
      if (!all_ && !index_.contains(names[i])) continue;
      Column& c = columns_[Slot(names[i])];
      if (c.present) continue;  // a repeated name: its first column counts
      c.present = true;
      by_position_[i] = index_.at(names[i]);
    }
  }

  void CsvRow(const data::CsvCells& cells) {
    ++rows_;
    for (size_t i = 0; i < by_position_.size(); ++i) {
      if (by_position_[i] == kSkip || !cells[i]) continue;
      Column& c = columns_[by_position_[i]];
      if (!c.numeric()) continue;
      if (auto number = ParseNumber(*cells[i])) {
        c.values.push_back(*number);
      } else {
        NotNumeric(c, *cells[i]);
      }
    }
  }

  void JsonRow(const Json& object) {
    ++rows_;
    for (const auto& [key, value] : object.items()) {
      if (seen_.size() < max_columns_ && seen_.insert(key).second) found_.push_back(key);
      if (!all_ && !index_.contains(key)) continue;
      if (all_ && !index_.contains(key) && columns_.size() >= max_columns_) continue;
      Column& c = columns_[Slot(key)];
      c.present = true;
      if (value.is_null() || !c.numeric()) continue;
      if (value.is_number() && std::isfinite(value.get<double>())) {
        c.values.push_back(value.get<double>());
      } else {
        NotNumeric(c, value.is_string() ? value.get_ref<const std::string&>() : value.dump());
      }
    }
  }

  void NotNumeric(Column& c, std::string_view text) {
    c.bad_row = rows_;
    c.bad_text = Shown(text);
    std::vector<double>().swap(c.values);  // not numeric: its values are of no use
  }

  static constexpr size_t kSkip = static_cast<size_t>(-1);
  std::string path_;
  bool all_;
  std::vector<Column> columns_;                    // wanted order, then file order
  std::unordered_map<std::string, size_t> index_;  // name -> columns_
  std::vector<size_t> by_position_;                // CSV: header position -> columns_ or kSkip
  std::vector<std::string> found_;                 // the file's columns, in order
  std::unordered_set<std::string> seen_;           // JSON: found_ as a set
  int64_t rows_ = 0;
  size_t max_columns_ = 10000;
};

// numpy.quantile(sorted, p) with the default "linear" method, numpy's arithmetic included.
double Quantile(const std::vector<double>& sorted, double p) {
  double h = static_cast<double>(sorted.size() - 1) * p;
  double below = std::floor(h);
  size_t i = static_cast<size_t>(below);
  size_t j = std::min(i + 1, sorted.size() - 1);
  double t = h - below;
  double a = sorted[i], b = sorted[j];
  double diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

// Each bin's share of `values`, the bins being (-inf, cuts[0]], (cuts[0], cuts[1]], ...,
// (cuts.back(), +inf), floored at kShareFloor.
std::vector<double> Shares(const std::vector<double>& values, const std::vector<double>& cuts) {
  std::vector<int64_t> counts(cuts.size() + 1, 0);
  for (double v : values) {
    ++counts[static_cast<size_t>(std::lower_bound(cuts.begin(), cuts.end(), v) - cuts.begin())];
  }
  std::vector<double> shares;
  for (int64_t n : counts) {
    shares.push_back(
        std::max(static_cast<double>(n) / static_cast<double>(values.size()), kShareFloor));
  }
  return shares;
}

std::vector<double> WithoutNan(std::vector<double> values) {
  std::erase_if(values, [](double v) { return std::isnan(v); });
  return values;
}

ColumnDrift Compare(std::string name, std::vector<double> reference, std::vector<double> current,
                    const DriftRequest& request) {
  ColumnDrift out;
  out.column = std::move(name);
  out.reference_values = static_cast<int64_t>(reference.size());
  out.current_values = static_cast<int64_t>(current.size());
  out.statistic = request.method == DriftMethod::kKs
                      ? KsStatistic(std::move(reference), std::move(current))
                      : Psi(reference, current);
  out.drifted = out.statistic > request.threshold;
  return out;
}

// The columns numeric with values in both files, in the reference's order: `current` was asked
// for those of the reference, in its order.
std::vector<std::string> InCommon(const ColumnReader& current) {
  std::vector<std::string> names;
  for (const Column& c : current.columns()) {
    if (c.present && c.numeric() && !c.values.empty()) names.push_back(c.name);
  }
  return names;
}

Result<std::vector<ColumnDrift>> Drift(const DriftRequest& request, const CheckLimits& limits) {
  bool all = request.columns.empty();
  ColumnReader reference(request.reference, request.columns, all);
  if (Status s = reference.Read(limits); !s.ok()) return s;
  std::vector<std::string> candidates = request.columns;
  for (const auto& name : request.columns) {
    if (Status s = reference.Usable(name); !s.ok()) return s;
  }
  if (all) {
    for (const Column& c : reference.columns()) {
      if (c.numeric() && !c.values.empty()) candidates.push_back(c.name);
    }
  }
  ColumnReader current(request.current, candidates, false);
  if (Status s = current.Read(limits); !s.ok()) return s;
  for (const auto& name : request.columns) {
    if (Status s = current.Usable(name); !s.ok()) return s;
  }
  std::vector<std::string> names = all ? InCommon(current) : request.columns;
  if (names.empty()) {
    return Invalid("no numeric column in both " + request.reference + " and " + request.current);
  }
  std::vector<ColumnDrift> out;
  std::unordered_map<std::string, size_t> done;  // column -> its result in `out`
  for (const auto& name : names) {
    if (auto it = done.find(name); it != done.end()) {
      // A column named twice: its values were moved out already.
      out.push_back(ColumnDrift(out[it->second]));
      continue;
    }
    done.emplace(name, out.size());
    out.push_back(Compare(name, std::move(reference.at(name).values),
                          std::move(current.at(name).values), request));
  }
  return out;
}

}  // namespace

double Psi(const std::vector<double>& reference, const std::vector<double>& current) {
  std::vector<double> sorted = WithoutNan(reference);
  std::vector<double> cur = WithoutNan(current);
  if (sorted.empty() || cur.empty()) return 0;
  std::sort(sorted.begin(), sorted.end());
  std::vector<double> cuts;
  for (int k = 1; k <= 9; ++k) {
    double cut = Quantile(sorted, k / 10.0);
    if (!std::isnan(cut)) cuts.push_back(cut);  // inf - inf between infinite values
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<double> p = Shares(sorted, cuts);
  std::vector<double> q = Shares(cur, cuts);
  double psi = 0;
  for (size_t i = 0; i < p.size(); ++i) psi += (q[i] - p[i]) * std::log(q[i] / p[i]);
  return psi;
}

double KsStatistic(std::vector<double> reference, std::vector<double> current) {
  reference = WithoutNan(std::move(reference));
  current = WithoutNan(std::move(current));
  if (reference.empty() || current.empty()) return 0;
  std::sort(reference.begin(), reference.end());
  std::sort(current.begin(), current.end());
  // The gap i/n - j/m is kept exact as i*m - j*n (in units of 1/(n*m)) and divided once at the
  // end: D = k / lcm(n, m) correctly rounded, which is what scipy's exact mode reports.
  using Wide = unsigned __int128;
  const Wide n = reference.size(), m = current.size();
  size_t i = 0, j = 0;
  Wide widest = 0;
  // Once one sample is used up the gap only shrinks, so the walk may stop there.
  while (i < reference.size() && j < current.size()) {
    double x = std::min(reference[i], current[j]);
    while (i < reference.size() && reference[i] <= x) ++i;  // every value equal to x, in both
    while (j < current.size() && current[j] <= x) ++j;
    Wide a = i * m, b = j * n;
    widest = std::max(widest, a > b ? a - b : b - a);
  }
  const Wide g = std::gcd(reference.size(), current.size());
  return static_cast<double>(widest / g) / static_cast<double>(n / g * m);
}

Result<std::vector<ColumnDrift>> ComputeDrift(const DriftRequest& request,
                                              const CheckLimits& limits) {
  try {
    return Drift(request, limits);
  } catch (const std::exception& e) {  // e.g. out of memory for a huge column
    return Status::Error(request.reference + ", " + request.current + ": " + e.what());
  }
}

}  // namespace kiln::plugins
