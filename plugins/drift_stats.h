// The statistics of `kind = "drift"` (docs/pipelines.md): per numeric column, how far the current
// data moved from a reference. Pure: reads two data files, no daemon; runs inside `kiln task
// drift`.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "plugins/check_data.h"

namespace kiln::plugins {

enum class DriftMethod { kPsi, kKs };

// PSI: 10 bins cut at the reference's deciles (the 10th, 20th, ... 90th percentile, computed as
// numpy.quantile's default "linear" method; duplicate cut points merged, so a column with few
// distinct values has fewer bins); the first bin is (-inf, q10], the next (q10, q20], ..., the
// last (q90, +inf). Each bin's share p (reference) and q (current) is floored at 1e-4 before
// PSI = sum (q - p) * ln(q / p).
double Psi(const std::vector<double>& reference, const std::vector<double>& current);
// Two-sample Kolmogorov-Smirnov statistic D = max |F_ref(x) - F_cur(x)| (scipy.stats.ks_2samp's
// statistic), by one merge walk over both sorted samples.
double KsStatistic(std::vector<double> reference, std::vector<double> current);

struct ColumnDrift {
  std::string column;
  double statistic = 0;
  bool drifted = false;          // statistic > threshold
  int64_t reference_values = 0;  // non-null numeric values used
  int64_t current_values = 0;
};

struct DriftRequest {
  std::string reference;             // path: CSV with a header row, or JSON lines
  std::string current;               // path
  std::vector<std::string> columns;  // empty: every column numeric in both files
  DriftMethod method = DriftMethod::kPsi;
  double threshold = 0.2;
};

// Reads both files (streaming, through plugins/data_reader.h) and computes each column's
// statistic, in the order of `columns` (or of the reference file's header). Nulls are left out.
// A column is numeric when every non-null value is a number (CSV: parses as a finite double;
// JSON: a number). Errors (never a crash): a file unreadable as data (as CheckData), a named
// column missing from either file or not numeric (the message names the file, the column and
// the first row holding a non-number), a column with no values in either file, and, when
// `columns` is empty, no numeric column in common.
Result<std::vector<ColumnDrift>> ComputeDrift(const DriftRequest& request,
                                              const CheckLimits& limits = {});

}  // namespace kiln::plugins
