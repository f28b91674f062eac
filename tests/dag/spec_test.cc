#include "dag/spec.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

using kiln::dag::ConvertLike;
using kiln::dag::Diagnostic;
using kiln::dag::ParamValue;
using kiln::dag::RunState;
using kiln::dag::TaskState;
using kiln::dag::ToText;
using kiln::dag::TriggerRule;
using kiln::dag::TypeName;

TEST_CASE("trigger rules, task states and run states round-trip through their names") {
  for (auto rule : {TriggerRule::kAllSuccess, TriggerRule::kAllFailed, TriggerRule::kAllDone,
                    TriggerRule::kOneSuccess, TriggerRule::kOneFailed, TriggerRule::kNoneFailed,
                    TriggerRule::kNoneFailedMinOneSuccess}) {
    CHECK(kiln::dag::ParseTriggerRule(Name(rule)) == rule);
  }
  CHECK(Name(TriggerRule::kNoneFailedMinOneSuccess) == "none_failed_min_one_success");
  for (auto state : {TaskState::kPending, TaskState::kQueued, TaskState::kRunning,
                     TaskState::kUpForRetry, TaskState::kSuccess, TaskState::kFailed,
                     TaskState::kSkipped, TaskState::kUpstreamFailed, TaskState::kCancelled}) {
    CHECK(kiln::dag::ParseTaskState(Name(state)) == state);
  }
  CHECK(Name(TaskState::kUpForRetry) == "up_for_retry");
  CHECK(Name(TaskState::kUpstreamFailed) == "upstream_failed");
  for (auto state : {RunState::kQueued, RunState::kRunning, RunState::kSuccess, RunState::kFailed,
                     RunState::kCancelled}) {
    CHECK(kiln::dag::ParseRunState(Name(state)) == state);
  }
  CHECK_FALSE(kiln::dag::ParseTriggerRule("All_Success").has_value());
  CHECK_FALSE(kiln::dag::ParseTaskState("done").has_value());
  CHECK_FALSE(kiln::dag::ParseRunState("").has_value());
}

TEST_CASE("terminal states are the end states of the format") {
  CHECK(IsTerminal(TaskState::kSuccess));
  CHECK(IsTerminal(TaskState::kFailed));
  CHECK(IsTerminal(TaskState::kSkipped));
  CHECK(IsTerminal(TaskState::kUpstreamFailed));
  CHECK(IsTerminal(TaskState::kCancelled));
  CHECK_FALSE(IsTerminal(TaskState::kPending));
  CHECK_FALSE(IsTerminal(TaskState::kQueued));
  CHECK_FALSE(IsTerminal(TaskState::kRunning));
  CHECK_FALSE(IsTerminal(TaskState::kUpForRetry));
  CHECK(IsTerminal(RunState::kSuccess));
  CHECK(IsTerminal(RunState::kFailed));
  CHECK(IsTerminal(RunState::kCancelled));
  CHECK_FALSE(IsTerminal(RunState::kQueued));
  CHECK_FALSE(IsTerminal(RunState::kRunning));
}

TEST_CASE("diagnostics print as file:line:col: field: message") {
  CHECK(Diagnostic{"churn.toml", {31, 9}, "tasks.train.needs", "dependency cycle a -> a"}
            .ToString() == "churn.toml:31:9: tasks.train.needs: dependency cycle a -> a");
  CHECK(Diagnostic{"churn.toml", {0, 0}, "tasks", "no tasks"}.ToString() ==
        "churn.toml: tasks: no tasks");
  CHECK(Diagnostic{"churn.toml", {3, 1}, "", "invalid TOML: x"}.ToString() ==
        "churn.toml:3:1: invalid TOML: x");
  CHECK(
      Diagnostic{"churn.toml", {}, "", "cannot read file: No such file or directory"}.ToString() ==
      "churn.toml: cannot read file: No such file or directory");
}

TEST_CASE("param values name their type") {
  CHECK(TypeName(ParamValue(std::string("x"))) == "string");
  CHECK(TypeName(ParamValue(int64_t{1})) == "integer");
  CHECK(TypeName(ParamValue(1.5)) == "float");
  CHECK(TypeName(ParamValue(true)) == "boolean");
}

TEST_CASE("param values print canonically") {
  CHECK(ToText(ParamValue(std::string("data/churn.csv"))) == "data/churn.csv");
  CHECK(ToText(ParamValue(int64_t{-42})) == "-42");
  CHECK(ToText(ParamValue(INT64_MIN)) == "-9223372036854775808");
  CHECK(ToText(ParamValue(0.85)) == "0.85");
  CHECK(ToText(ParamValue(1.0)) == "1.0");
  CHECK(ToText(ParamValue(-3.0)) == "-3.0");
  CHECK(ToText(ParamValue(0.1 + 0.2)) == "0.30000000000000004");
  CHECK(ToText(ParamValue(1e300)) == "1e+300");
  CHECK(ToText(ParamValue(1e-7)) == "1e-07");
  CHECK(ToText(ParamValue(true)) == "true");
  CHECK(ToText(ParamValue(false)) == "false");
}

TEST_CASE("floats print as text that reads back to the same value") {
  for (double d : {0.85, 1.0 / 3.0, 123456789.125, 2.5e-300, 6.02214076e23}) {
    const std::string text = ToText(ParamValue(d));
    CHECK(text.find_first_of(".e") != std::string::npos);
    auto back = ConvertLike(ParamValue(0.0), text);
    REQUIRE(back.has_value());
    CHECK(std::get<double>(*back) == d);
  }
}

TEST_CASE("trigger-time text converts to the declared type") {
  const ParamValue text_param = std::string("default");
  const ParamValue int_param = int64_t{10};
  const ParamValue float_param = 0.85;
  const ParamValue bool_param = false;

  CHECK(ConvertLike(text_param, " any text; $(x) ") == ParamValue(std::string(" any text; $(x) ")));
  CHECK(ConvertLike(text_param, "") == ParamValue(std::string()));

  CHECK(ConvertLike(int_param, "20") == ParamValue(int64_t{20}));
  CHECK(ConvertLike(int_param, "-7") == ParamValue(int64_t{-7}));
  CHECK(ConvertLike(int_param, "9223372036854775807") == ParamValue(INT64_MAX));
  CHECK_FALSE(ConvertLike(int_param, "9223372036854775808").has_value());
  CHECK_FALSE(ConvertLike(int_param, "ten").has_value());
  CHECK_FALSE(ConvertLike(int_param, "1.5").has_value());
  CHECK_FALSE(ConvertLike(int_param, "12abc").has_value());
  CHECK_FALSE(ConvertLike(int_param, " 12").has_value());
  CHECK_FALSE(ConvertLike(int_param, "").has_value());

  CHECK(ConvertLike(float_param, "0.9") == ParamValue(0.9));
  CHECK(ConvertLike(float_param, "1") == ParamValue(1.0));
  CHECK(ConvertLike(float_param, "-2.5e-3") == ParamValue(-2.5e-3));
  CHECK_FALSE(ConvertLike(float_param, "high").has_value());
  CHECK_FALSE(ConvertLike(float_param, "0.9x").has_value());
  CHECK_FALSE(ConvertLike(float_param, "inf").has_value());
  CHECK_FALSE(ConvertLike(float_param, "nan").has_value());
  CHECK_FALSE(ConvertLike(float_param, "").has_value());

  CHECK(ConvertLike(bool_param, "true") == ParamValue(true));
  CHECK(ConvertLike(bool_param, "false") == ParamValue(false));
  CHECK_FALSE(ConvertLike(bool_param, "True").has_value());
  CHECK_FALSE(ConvertLike(bool_param, "1").has_value());
  CHECK_FALSE(ConvertLike(bool_param, "yes").has_value());
}
