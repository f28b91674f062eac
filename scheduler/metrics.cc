#include "scheduler/metrics.h"

#include <algorithm>

namespace kiln::scheduler {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size(), 0) {}

void Histogram::Observe(double seconds) {
  ++count_;
  sum_ += seconds;
  // Cumulative buckets: every bound >= the value counts it.
  auto first = std::lower_bound(bounds_.begin(), bounds_.end(), seconds);
  for (auto i = static_cast<size_t>(first - bounds_.begin()); i < counts_.size(); ++i) ++counts_[i];
}

Histogram Histogram::ForDurations() {
  return Histogram({0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600});
}

Histogram Histogram::ForLatencies() {
  return Histogram(
      {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
}

}  // namespace kiln::scheduler
