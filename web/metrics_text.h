// A metrics snapshot in the Prometheus text exposition format 0.0.4 (# HELP and # TYPE for every
// metric, histograms as _bucket{le=...}/_sum/_count, label values escaped). Pure.
#pragma once

#include <string>

#include "scheduler/metrics.h"

namespace kiln::web {

inline constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

std::string RenderMetrics(const scheduler::MetricsSnapshot& snapshot);

}  // namespace kiln::web
