#include "dag/trigger_rule.h"

#include <catch2/catch.hpp>

using kiln::dag::Decision;
using kiln::dag::Evaluate;
using kiln::dag::TaskState;
using kiln::dag::TriggerRule;
using kiln::dag::UpstreamCounts;

namespace {

// Counts for a task whose upstreams are `total`, of which the given end states are known.
UpstreamCounts Counts(int total, std::initializer_list<TaskState> ended) {
  UpstreamCounts counts;
  counts.total = total;
  for (TaskState state : ended) counts.Add(state);
  return counts;
}

constexpr TaskState kS = TaskState::kSuccess;
constexpr TaskState kF = TaskState::kFailed;
constexpr TaskState kUf = TaskState::kUpstreamFailed;
constexpr TaskState kSk = TaskState::kSkipped;
constexpr TaskState kC = TaskState::kCancelled;

}  // namespace

TEST_CASE("Add counts each end state") {
  UpstreamCounts counts = Counts(6, {kS, kS, kF, kUf, kSk, kC});
  CHECK(counts.success == 2);
  CHECK(counts.failed == 1);
  CHECK(counts.upstream_failed == 1);
  CHECK(counts.skipped == 1);
  CHECK(counts.cancelled == 1);
  CHECK(counts.done() == 6);
}

TEST_CASE("a task without upstreams runs whatever its rule") {
  for (TriggerRule rule : {TriggerRule::kAllSuccess, TriggerRule::kAllFailed, TriggerRule::kAllDone,
                           TriggerRule::kOneSuccess, TriggerRule::kOneFailed,
                           TriggerRule::kNoneFailed, TriggerRule::kNoneFailedMinOneSuccess}) {
    CHECK(Evaluate(rule, Counts(0, {})) == Decision::kRun);
  }
}

TEST_CASE("all_success") {
  const TriggerRule r = TriggerRule::kAllSuccess;
  CHECK(Evaluate(r, Counts(2, {})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(2, {kS})) == Decision::kWait);
  // Already certain, but decided only when every upstream is done.
  CHECK(Evaluate(r, Counts(2, {kF})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(2, {kS, kS})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(1, {kS})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kS, kF})) == Decision::kUpstreamFailed);
  CHECK(Evaluate(r, Counts(2, {kS, kUf})) == Decision::kUpstreamFailed);
  CHECK(Evaluate(r, Counts(2, {kS, kC})) == Decision::kUpstreamFailed);
  CHECK(Evaluate(r, Counts(2, {kSk, kF})) == Decision::kUpstreamFailed);
  CHECK(Evaluate(r, Counts(2, {kS, kSk})) == Decision::kSkip);
  CHECK(Evaluate(r, Counts(2, {kSk, kSk})) == Decision::kSkip);
}

TEST_CASE("all_failed") {
  const TriggerRule r = TriggerRule::kAllFailed;
  CHECK(Evaluate(r, Counts(2, {kF})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(2, {kS})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(2, {kF, kF})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kF, kUf})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kUf, kUf})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kF, kC})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kF, kS})) == Decision::kSkip);
  CHECK(Evaluate(r, Counts(2, {kF, kSk})) == Decision::kSkip);
  CHECK(Evaluate(r, Counts(2, {kS, kS})) == Decision::kSkip);
}

TEST_CASE("all_done") {
  const TriggerRule r = TriggerRule::kAllDone;
  CHECK(Evaluate(r, Counts(3, {kF, kS})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(3, {kF, kS, kSk})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kUf, kC})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kS, kS})) == Decision::kRun);
}

TEST_CASE("one_success runs as soon as one upstream succeeded") {
  const TriggerRule r = TriggerRule::kOneSuccess;
  CHECK(Evaluate(r, Counts(3, {})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(3, {kF})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(3, {kS})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(3, {kF, kS})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(3, {kF, kS, kUf})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(3, {kF, kSk, kUf})) == Decision::kSkip);
  CHECK(Evaluate(r, Counts(2, {kC, kC})) == Decision::kSkip);
  CHECK(Evaluate(r, Counts(2, {kSk, kSk})) == Decision::kSkip);
}

TEST_CASE("one_failed runs as soon as one upstream failed") {
  const TriggerRule r = TriggerRule::kOneFailed;
  CHECK(Evaluate(r, Counts(3, {})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(3, {kS})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(3, {kF})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(3, {kS, kF})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(3, {kUf})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(3, {kC})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(3, {kS, kSk, kS})) == Decision::kSkip);
  CHECK(Evaluate(r, Counts(1, {kSk})) == Decision::kSkip);
}

TEST_CASE("none_failed") {
  const TriggerRule r = TriggerRule::kNoneFailed;
  CHECK(Evaluate(r, Counts(2, {kS})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(2, {kF})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(2, {kS, kS})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kS, kSk})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kSk, kSk})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kS, kF})) == Decision::kUpstreamFailed);
  CHECK(Evaluate(r, Counts(2, {kS, kUf})) == Decision::kUpstreamFailed);
  CHECK(Evaluate(r, Counts(2, {kSk, kC})) == Decision::kUpstreamFailed);
}

TEST_CASE("none_failed_min_one_success") {
  const TriggerRule r = TriggerRule::kNoneFailedMinOneSuccess;
  CHECK(Evaluate(r, Counts(2, {kS})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(2, {kF})) == Decision::kWait);
  CHECK(Evaluate(r, Counts(2, {kS, kS})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kS, kSk})) == Decision::kRun);
  CHECK(Evaluate(r, Counts(2, {kSk, kSk})) == Decision::kSkip);
  CHECK(Evaluate(r, Counts(2, {kS, kF})) == Decision::kUpstreamFailed);
  CHECK(Evaluate(r, Counts(2, {kSk, kUf})) == Decision::kUpstreamFailed);
  CHECK(Evaluate(r, Counts(2, {kS, kC})) == Decision::kUpstreamFailed);
}
