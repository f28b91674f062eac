#include "scheduler/retry.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <string>

#include "common/status.h"

namespace kiln::scheduler {
namespace {

// strsignal() is locale-dependent and not thread-safe; the names users know are few.
struct SignalName {
  int number;
  const char* name;
};
constexpr SignalName kSignalNames[] = {
    {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
    {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
    {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
    {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGXCPU, "SIGXCPU"},
    {SIGXFSZ, "SIGXFSZ"}, {SIGSYS, "SIGSYS"},
};

const char* SignalNameOf(int number) {
  for (const SignalName& s : kSignalNames) {
    if (s.number == number) return s.name;
  }
  return nullptr;
}

bool IsSkipCode(const dag::TaskSpec& task, int exit_code) {
  return std::find(task.skip_exit_codes.begin(), task.skip_exit_codes.end(), exit_code) !=
         task.skip_exit_codes.end();
}

}  // namespace

bool ShouldRetry(const dag::RetryPolicy& policy, int attempt) {
  KILN_CHECK(attempt >= 1);
  return attempt <= policy.retries;
}

Duration RetryDelay(const dag::RetryPolicy& policy, int attempt) {
  KILN_CHECK(attempt >= 1);
  // In double: retry_backoff^(attempt - 1) overflows to +inf for large attempts, which the cap
  // absorbs; the comparison is written so that NaN lands on the cap too.
  const Duration cap = std::max(policy.max_retry_delay, Duration(0));
  // Checked first: 0 * inf would be NaN.
  if (policy.retry_delay <= Duration(0)) return Duration(0);
  const double base = static_cast<double>(policy.retry_delay.count());
  const double delay = base * std::pow(policy.retry_backoff, static_cast<double>(attempt - 1));
  if (!(delay < static_cast<double>(cap.count()))) return cap;
  if (!(delay > 0)) return Duration(0);
  return Duration(std::llround(delay));
}

dag::TaskState Classify(const dag::TaskSpec& task, const AttemptOutcome& outcome) {
  if (!outcome.started || outcome.lost || outcome.timed_out || outcome.killed ||
      outcome.signal.has_value() || !outcome.exit_code.has_value()) {
    return dag::TaskState::kFailed;
  }
  // Any listed code skips, 0 included (the pipeline format: "exit codes that end the task
  // skipped"); a skipped task owes no outputs.
  if (IsSkipCode(task, *outcome.exit_code)) return dag::TaskState::kSkipped;
  if (outcome.collect_failed) return dag::TaskState::kFailed;
  if (*outcome.exit_code == 0) return dag::TaskState::kSuccess;
  return dag::TaskState::kFailed;
}

std::string Describe(const AttemptOutcome& outcome, Duration timeout) {
  if (outcome.lost) return "lost: " + outcome.error;
  if (!outcome.started) return "could not start: " + outcome.error;
  if (outcome.timed_out) return "timed out after " + FormatDuration(timeout);
  if (outcome.killed && !outcome.stop_cause.empty()) {
    return "stopped by its supervisor: " + outcome.error;
  }
  if (outcome.killed) return "cancelled";
  if (outcome.signal.has_value()) {
    std::string text = "killed by signal " + std::to_string(*outcome.signal);
    if (const char* name = SignalNameOf(*outcome.signal)) text += std::string(" (") + name + ")";
    return text;
  }
  if (outcome.collect_failed) return outcome.error;
  if (outcome.exit_code.has_value()) return "exit code " + std::to_string(*outcome.exit_code);
  if (!outcome.error.empty()) return outcome.error;
  return "ended without an exit status";
}

std::string Describe(const dag::TaskSpec& task, const AttemptOutcome& outcome) {
  if (Classify(task, outcome) == dag::TaskState::kSkipped) {
    return "skipped (exit code " + std::to_string(*outcome.exit_code) + ")";
  }
  return Describe(outcome, task.timeout);
}

}  // namespace kiln::scheduler
