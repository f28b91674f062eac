#include "plugins/gate_expr.h"

#include <catch2/catch.hpp>

using kiln::plugins::Condition;
using kiln::plugins::Evaluate;
using kiln::plugins::Metrics;
using kiln::plugins::ParseCondition;

namespace {

Condition Parsed(const std::string& text) {
  auto c = ParseCondition(text);
  INFO(text << ": " << (c.ok() ? std::string() : c.message()));
  REQUIRE(c.ok());
  return *c;
}

bool Holds(const std::string& text, const Metrics& metrics, const Metrics* champion) {
  auto v = Evaluate(Parsed(text), metrics, champion);
  INFO(text << ": " << (v.ok() ? std::string() : v.message()));
  REQUIRE(v.ok());
  return v->holds;
}

}  // namespace

TEST_CASE("gate conditions are parsed with and without spaces") {
  const Condition a = Parsed("  accuracy >= 0.9 ");
  CHECK(a.text == "accuracy >= 0.9");
  CHECK(a.metric == "accuracy");
  CHECK(a.op == ">=");
  CHECK_FALSE(a.champion_metric.has_value());
  CHECK(a.value == 0.9);
  const Condition b = Parsed("accuracy>=champion.accuracy-0.005");
  CHECK(b.champion_metric == "accuracy");
  CHECK(b.value == -0.005);
  const Condition c = Parsed("latency_ms <= champion.latency_ms + 5");
  CHECK(c.op == "<=");
  CHECK(c.value == 5);
  CHECK(Parsed("loss.val < -1e-3").value == -0.001);
  CHECK(Parsed("a != 2").op == "!=");
  CHECK(Parsed("a == champion.a").value == 0);
}

TEST_CASE("a malformed gate condition says what is wrong and what is accepted") {
  const std::string accepted =
      "; expected NAME OP VALUE with OP one of >=, >, <=, <, ==, != and VALUE a number or "
      "champion.NAME, optionally + or - a number, e.g. \"accuracy >= champion.accuracy - 0.005\"";
  CHECK(ParseCondition("accuracy => 0.9").message() ==
        "invalid condition 'accuracy => 0.9': no comparison after 'accuracy'" + accepted);
  CHECK(ParseCondition(">= 1").message() ==
        "invalid condition '>= 1': no metric name at the start" + accepted);
  CHECK(ParseCondition("a >= b").message() ==
        "invalid condition 'a >= b': 'b' is neither a number nor champion.NAME" + accepted);
  CHECK(ParseCondition("a >=").message() ==
        "invalid condition 'a >=': no value after '>='" + accepted);
  CHECK(ParseCondition("a >= champion.a * 2").message() ==
        "invalid condition 'a >= champion.a * 2': unexpected text at the end" + accepted);
  CHECK(ParseCondition("a >= champion.a +").message() ==
        "invalid condition 'a >= champion.a +': no number after '+'" + accepted);
  CHECK(ParseCondition("champion.a >= 1").message() ==
        "invalid condition 'champion.a >= 1': the left side is a metric of this run, not of the "
        "champion" +
            accepted);
  CHECK_FALSE(ParseCondition("a >= inf").ok());
  CHECK_FALSE(ParseCondition("a >= 0x10").ok());
  CHECK_FALSE(ParseCondition("a >= 1e999").ok());
}

TEST_CASE("gate conditions compare against thresholds and the champion") {
  const Metrics m = {{"accuracy", 0.91}, {"latency_ms", 40}};
  const Metrics champion = {{"accuracy", 0.93}, {"latency_ms", 45}};
  CHECK(Holds("accuracy >= 0.9", m, nullptr));
  CHECK_FALSE(Holds("accuracy > 0.91", m, nullptr));
  CHECK(Holds("accuracy == 0.91", m, nullptr));
  CHECK(Holds("latency_ms < 50", m, nullptr));
  // Worse than the champion by more than the margin.
  CHECK_FALSE(Holds("accuracy >= champion.accuracy - 0.005", m, &champion));
  CHECK(Holds("accuracy >= champion.accuracy - 0.05", m, &champion));
  CHECK(Holds("latency_ms <= champion.latency_ms", m, &champion));
  // No champion yet: a champion condition holds.
  auto v = Evaluate(Parsed("accuracy >= champion.accuracy"), m, nullptr);
  REQUIRE(v.ok());
  CHECK(v->holds);
  CHECK_FALSE(v->right.has_value());
  auto worse = Evaluate(Parsed("accuracy >= champion.accuracy + 0.01"), m, &champion);
  REQUIRE(worse.ok());
  CHECK(worse->left == 0.91);
  CHECK(worse->right == Approx(0.94));
  CHECK(Evaluate(Parsed("auc >= 0.9"), m, nullptr).message() == "the metrics have no 'auc'");
  CHECK(Evaluate(Parsed("accuracy >= champion.auc"), m, &champion).message() ==
        "the champion's metrics have no 'auc'");
}
