// What the scheduler needs from an executor: start one attempt of a task, stop it. Implemented by
// executor/ (local processes) and by fakes in tests. Knows nothing about processes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/time.h"

namespace kiln::scheduler {

struct LaunchRequest {
  RunId run{};
  TaskId task{};
  int attempt = 1;
  std::vector<std::string> argv;  // rendered; for `command` tasks: {"/bin/sh", "-c", command}
  std::vector<std::pair<std::string, std::string>> env;  // the complete environment
  std::filesystem::path cwd;
  std::filesystem::path log_path;  // the attempt's log file (its folder may not exist yet)
  std::filesystem::path run_dir;   // the run's working folder (created if missing)
  Duration timeout{0};             // 0 = none
};

struct AttemptOutcome {
  bool started = false;  // false: the program could not start (reason in `error` and the log)
  std::string error;     // why it could not start, or other executor-side failure
  std::optional<int> exit_code;
  std::optional<int> signal;  // terminating signal
  bool timed_out = false;     // killed because the attempt's timeout passed
  bool killed = false;        // killed because Kill() was called
  Instant started_at{};
  Instant ended_at{};
  Duration cpu{0};  // user + system
  int64_t max_rss_kb = 0;
  uint64_t log_bytes = 0;
  bool log_truncated = false;
};

class TaskRunner {
 public:
  virtual ~TaskRunner() = default;
  // Starts the attempt. `on_exit` is called exactly once, on the scheduler's io_context thread,
  // never from inside Start().
  virtual void Start(LaunchRequest request, std::function<void(AttemptOutcome)> on_exit) = 0;
  // Stops a running attempt (SIGTERM to its group, grace period, SIGKILL). Its on_exit still
  // comes, with killed = true. No effect when the attempt is not running.
  virtual void Kill(RunId run, TaskId task) = 0;
};

}  // namespace kiln::scheduler
