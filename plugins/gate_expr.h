// The conditions of kind = "gate" (docs/pipelines.md): `NAME OP VALUE` (NAME: letters, digits,
// `_` and `.`) with OP one of >=, >, <=,
// <, ==, !=, and VALUE a number or `champion.NAME` optionally followed by `+ number` or
// `- number`. Parsed when the pipeline loads, evaluated by the gate's process against the metrics
// file and the champion's metrics. Pure: no I/O.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace kiln::plugins {

struct Condition {
  std::string text;    // as written, trimmed
  std::string metric;  // the left side: a metric of the metrics file
  std::string op;      // ">=", ">", "<=", "<", "==", "!="
  // The right side: a number, or a champion's metric plus `offset`.
  std::optional<std::string> champion_metric;
  double value = 0;  // the number, or the offset added to the champion's metric
};

// A condition, or what is wrong with it and what is accepted.
Result<Condition> ParseCondition(std::string_view text);

using Metrics = std::map<std::string, double>;

struct Verdict {
  bool holds = false;
  double left = 0;
  std::optional<double> right;  // empty: a champion condition with no champion (it holds)
};

// Evaluates `c` on `metrics` and the champion's (nullptr: the model has no champion). An error
// names the missing metric: "the metrics have no 'accuracy'", "the champion's metrics have no
// 'accuracy'".
Result<Verdict> Evaluate(const Condition& c, const Metrics& metrics, const Metrics* champion);

}  // namespace kiln::plugins
