#include "scheduler/retry.h"

#include <catch2/catch.hpp>
#include <climits>
#include <limits>

using namespace std::chrono_literals;
using kiln::Duration;
using kiln::dag::RetryPolicy;
using kiln::dag::TaskSpec;
using kiln::dag::TaskState;
using kiln::scheduler::AttemptOutcome;
using kiln::scheduler::Classify;
using kiln::scheduler::Describe;
using kiln::scheduler::RetryDelay;
using kiln::scheduler::ShouldRetry;

namespace {

RetryPolicy Policy(int retries, Duration delay, double backoff, Duration cap) {
  RetryPolicy policy;
  policy.retries = retries;
  policy.retry_delay = delay;
  policy.retry_backoff = backoff;
  policy.max_retry_delay = cap;
  return policy;
}

AttemptOutcome Exited(int code) {
  AttemptOutcome outcome;
  outcome.started = true;
  outcome.exit_code = code;
  return outcome;
}

AttemptOutcome Signalled(int signal) {
  AttemptOutcome outcome;
  outcome.started = true;
  outcome.signal = signal;
  return outcome;
}

AttemptOutcome NotStarted(std::string error) {
  AttemptOutcome outcome;
  outcome.started = false;
  outcome.error = std::move(error);
  return outcome;
}

TaskSpec TaskWithSkipCodes(std::vector<int> codes) {
  TaskSpec task;
  task.id = "evaluate";
  task.command = "true";
  task.skip_exit_codes = std::move(codes);
  task.timeout = 5s;
  return task;
}

}  // namespace

TEST_CASE("ShouldRetry allows `retries` extra attempts") {
  RetryPolicy two = Policy(2, 10s, 2.0, 1h);
  CHECK(ShouldRetry(two, 1));
  CHECK(ShouldRetry(two, 2));
  CHECK_FALSE(ShouldRetry(two, 3));
  CHECK_FALSE(ShouldRetry(two, INT_MAX));
  RetryPolicy none = Policy(0, 10s, 2.0, 1h);
  CHECK_FALSE(ShouldRetry(none, 1));
}

TEST_CASE("RetryDelay grows by the backoff and stops at the cap") {
  RetryPolicy policy = Policy(20, 10s, 2.0, 1h);
  CHECK(RetryDelay(policy, 1) == 10s);
  CHECK(RetryDelay(policy, 2) == 20s);
  CHECK(RetryDelay(policy, 3) == 40s);
  CHECK(RetryDelay(policy, 9) == 2560s);
  CHECK(RetryDelay(policy, 10) == 1h);  // 5120s capped
  CHECK(RetryDelay(policy, 11) == 1h);

  RetryPolicy defaults;  // 10s, 2.0, 1h
  CHECK(RetryDelay(defaults, 1) == 10s);
  CHECK(RetryDelay(defaults, 4) == 80s);
}

TEST_CASE("RetryDelay with fractional and unit backoff") {
  RetryPolicy policy = Policy(5, 10s, 1.5, 1h);
  CHECK(RetryDelay(policy, 2) == 15s);
  CHECK(RetryDelay(policy, 3) == 22500ms);
  CHECK(RetryDelay(policy, 4) == 33750ms);
  // 10s * 1.5^4 = 50.625s
  CHECK(RetryDelay(policy, 5) == 50625ms);

  RetryPolicy constant = Policy(5, 250ms, 1.0, 1h);
  CHECK(RetryDelay(constant, 1) == 250ms);
  CHECK(RetryDelay(constant, 1000000) == 250ms);
}

TEST_CASE("RetryDelay rounds to the nearest millisecond") {
  // 1ms * 1.1^(n-1): 1.1, 1.21, 1.331 ... 1.1^10 = 2.5937...
  RetryPolicy policy = Policy(50, 1ms, 1.1, 1h);
  CHECK(RetryDelay(policy, 2) == 1ms);
  CHECK(RetryDelay(policy, 11) == 3ms);
  CHECK(RetryDelay(Policy(1, 3ms, 1.5, 1h), 2) == 5ms);  // 4.5 rounds up
}

TEST_CASE("RetryDelay never overflows") {
  RetryPolicy policy = Policy(INT_MAX, 10s, 2.0, 10min);
  CHECK(RetryDelay(policy, 64) == 10min);
  CHECK(RetryDelay(policy, 1100) == 10min);  // 2^1099 is +inf in double
  CHECK(RetryDelay(policy, INT_MAX) == 10min);

  RetryPolicy huge_backoff = Policy(3, 10s, 1e308, 1h);
  CHECK(RetryDelay(huge_backoff, 1) == 10s);
  CHECK(RetryDelay(huge_backoff, 2) == 1h);
  CHECK(RetryDelay(huge_backoff, 3) == 1h);

  RetryPolicy no_cap = Policy(3, 10s, 2.0, Duration::max());
  CHECK(RetryDelay(no_cap, 3) == 40s);
  CHECK(RetryDelay(no_cap, 100) == Duration::max());
  CHECK(RetryDelay(no_cap, INT_MAX) == Duration::max());

  RetryPolicy longest = Policy(3, Duration::max(), 2.0, Duration::max());
  CHECK(RetryDelay(longest, 2) == Duration::max());
}

TEST_CASE("RetryDelay of zero stays zero") {
  RetryPolicy policy = Policy(3, 0ms, 2.0, 1h);
  CHECK(RetryDelay(policy, 1) == 0ms);
  CHECK(RetryDelay(policy, INT_MAX) == 0ms);  // not 0 * inf
  CHECK(RetryDelay(Policy(3, 10s, 2.0, 0ms), 2) == 0ms);
  CHECK(RetryDelay(Policy(3, 10s, 2.0, 5s), 1) == 5s);  // the cap applies to the first delay too
}

TEST_CASE("Classify maps outcomes to end states") {
  TaskSpec task = TaskWithSkipCodes({99, 42});
  CHECK(Classify(task, Exited(0)) == TaskState::kSuccess);
  CHECK(Classify(task, Exited(1)) == TaskState::kFailed);
  CHECK(Classify(task, Exited(99)) == TaskState::kSkipped);
  CHECK(Classify(task, Exited(42)) == TaskState::kSkipped);
  CHECK(Classify(task, Exited(98)) == TaskState::kFailed);
  CHECK(Classify(task, Signalled(9)) == TaskState::kFailed);
  CHECK(Classify(task, NotStarted("No such file or directory")) == TaskState::kFailed);
  CHECK(Classify(TaskWithSkipCodes({}), Exited(99)) == TaskState::kFailed);
  // 0 listed: a clean exit ends the task skipped, whether or not its outputs are there.
  CHECK(Classify(TaskWithSkipCodes({0}), Exited(0)) == TaskState::kSkipped);
  AttemptOutcome without_outputs = Exited(0);
  without_outputs.collect_failed = true;
  CHECK(Classify(TaskWithSkipCodes({0}), without_outputs) == TaskState::kSkipped);
  CHECK(Classify(TaskWithSkipCodes({99}), without_outputs) == TaskState::kFailed);

  AttemptOutcome timed_out = Exited(99);
  timed_out.timed_out = true;
  CHECK(Classify(task, timed_out) == TaskState::kFailed);
  AttemptOutcome killed = Exited(0);
  killed.killed = true;
  CHECK(Classify(task, killed) == TaskState::kFailed);
  AttemptOutcome no_status;
  no_status.started = true;
  CHECK(Classify(task, no_status) == TaskState::kFailed);
}

TEST_CASE("Describe says why an attempt ended") {
  CHECK(Describe(Exited(3), 0ms) == "exit code 3");
  CHECK(Describe(Exited(0), 0ms) == "exit code 0");
  CHECK(Describe(Signalled(9), 0ms) == "killed by signal 9 (SIGKILL)");
  CHECK(Describe(Signalled(15), 0ms) == "killed by signal 15 (SIGTERM)");
  CHECK(Describe(Signalled(11), 0ms) == "killed by signal 11 (SIGSEGV)");
  CHECK(Describe(Signalled(6), 0ms) == "killed by signal 6 (SIGABRT)");
  CHECK(Describe(Signalled(2), 0ms) == "killed by signal 2 (SIGINT)");
  CHECK(Describe(Signalled(1), 0ms) == "killed by signal 1 (SIGHUP)");
  CHECK(Describe(Signalled(13), 0ms) == "killed by signal 13 (SIGPIPE)");
  CHECK(Describe(Signalled(7), 0ms) == "killed by signal 7 (SIGBUS)");
  CHECK(Describe(Signalled(8), 0ms) == "killed by signal 8 (SIGFPE)");
  CHECK(Describe(Signalled(3), 0ms) == "killed by signal 3 (SIGQUIT)");
  CHECK(Describe(Signalled(64), 0ms) == "killed by signal 64");
  CHECK(Describe(NotStarted("No such file or directory"), 0ms) ==
        "could not start: No such file or directory");

  AttemptOutcome timed_out = Signalled(15);
  timed_out.timed_out = true;
  CHECK(Describe(timed_out, 5s) == "timed out after 5s");
  CHECK(Describe(timed_out, 90min) == "timed out after 1h30m");

  AttemptOutcome killed = Signalled(15);
  killed.killed = true;
  CHECK(Describe(killed, 5s) == "cancelled");
}

TEST_CASE("Describe for a task knows its skip codes and timeout") {
  TaskSpec task = TaskWithSkipCodes({99});
  CHECK(Describe(task, Exited(99)) == "skipped (exit code 99)");
  CHECK(Describe(task, Exited(98)) == "exit code 98");
  AttemptOutcome timed_out = Exited(99);
  timed_out.timed_out = true;
  CHECK(Describe(task, timed_out) == "timed out after 5s");
}
