#include "plugins/gate_expr.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace kiln::plugins {

namespace {

constexpr std::string_view kAccepted =
    "expected NAME OP VALUE with OP one of >=, >, <=, <, ==, != and VALUE a number or "
    "champion.NAME, optionally + or - a number, e.g. \"accuracy >= champion.accuracy - 0.005\"";

bool NameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
}

class Cursor {
 public:
  explicit Cursor(std::string_view text) : text_(text) {}
  void Space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }
  bool done() const { return pos_ >= text_.size(); }
  std::string Name() {
    Space();
    const size_t start = pos_;
    while (pos_ < text_.size() && NameChar(text_[pos_])) ++pos_;
    return std::string(text_.substr(start, pos_ - start));
  }
  std::string Op() {
    Space();
    for (std::string_view op : {">=", "<=", "==", "!=", ">", "<"}) {
      if (text_.substr(pos_).starts_with(op)) {
        pos_ += op.size();
        return std::string(op);
      }
    }
    return "";
  }
  std::optional<double> Number() {
    Space();
    const std::string rest(text_.substr(pos_));
    char* end = nullptr;
    const double v = std::strtod(rest.c_str(), &end);
    if (end == rest.c_str() || !std::isfinite(v)) return std::nullopt;
    // No hex, no "inf"/"nan" words: plain decimal numbers only.
    const std::string_view used(rest.c_str(), static_cast<size_t>(end - rest.c_str()));
    if (used.find_first_not_of("0123456789+-.eE") != std::string_view::npos) return std::nullopt;
    pos_ += used.size();
    return v;
  }
  bool Take(char c) {
    Space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

Status Bad(std::string_view text, const std::string& why) {
  return Status::Error("invalid condition '" + std::string(text) + "': " + why + "; " +
                       std::string(kAccepted));
}

}  // namespace

Result<Condition> ParseCondition(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  Condition c;
  c.text = std::string(text);
  Cursor in(text);
  c.metric = in.Name();
  if (c.metric.empty()) return Bad(text, "no metric name at the start");
  if (c.metric.starts_with("champion.")) {
    return Bad(text, "the left side is a metric of this run, not of the champion");
  }
  c.op = in.Op();
  if (c.op.empty()) return Bad(text, "no comparison after '" + c.metric + "'");
  in.Space();
  if (auto number = in.Number()) {
    c.value = *number;
  } else {
    const std::string name = in.Name();
    if (!name.starts_with("champion.") || name.size() == 9) {
      return Bad(text, name.empty() ? "no value after '" + c.op + "'"
                                    : "'" + name + "' is neither a number nor champion.NAME");
    }
    c.champion_metric = name.substr(9);
    if (in.Take('+')) {
      auto offset = in.Number();
      if (!offset) return Bad(text, "no number after '+'");
      c.value = *offset;
    } else if (in.Take('-')) {
      auto offset = in.Number();
      if (!offset) return Bad(text, "no number after '-'");
      c.value = -*offset;
    }
  }
  in.Space();
  if (!in.done()) return Bad(text, "unexpected text at the end");
  return c;
}

Result<Verdict> Evaluate(const Condition& c, const Metrics& metrics, const Metrics* champion) {
  auto left = metrics.find(c.metric);
  if (left == metrics.end()) return Status::Error("the metrics have no '" + c.metric + "'");
  Verdict v;
  v.left = left->second;
  double right = c.value;
  if (c.champion_metric) {
    if (champion == nullptr) {
      v.holds = true;  // no champion yet: nothing to beat
      return v;
    }
    auto it = champion->find(*c.champion_metric);
    if (it == champion->end()) {
      return Status::Error("the champion's metrics have no '" + *c.champion_metric + "'");
    }
    right = it->second + c.value;
  }
  v.right = right;
  const double l = v.left;
  if (c.op == ">=") v.holds = l >= right;
  if (c.op == ">") v.holds = l > right;
  if (c.op == "<=") v.holds = l <= right;
  if (c.op == "<") v.holds = l < right;
  if (c.op == "==") v.holds = l == right;
  if (c.op == "!=") v.holds = l != right;
  return v;
}

}  // namespace kiln::plugins
