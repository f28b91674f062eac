// Runs task attempts as local processes: the scheduler's TaskRunner on top of ProcessManager.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <utility>

#include "common/ids.h"
#include "common/time.h"
#include "executor/process.h"
#include "scheduler/task_runner.h"

namespace kiln::executor {

// Maps a LaunchRequest to a ProcessSpec (argv, env, cwd, log file, timeout) and reports the
// ProcessResult as an AttemptOutcome.
//
// Threads: like ProcessManager, everything happens on the io_context's thread; on_exit is posted
// there, never called from inside Start(). Must be destroyed before the io_context; attempts still
// running then are SIGKILLed and their on_exit is never called.
// Errors: a run folder that cannot be created, a missing working directory or program are start
// failures (started = false, reason in `error` and in the attempt's log file).
class LocalTaskRunner final : public scheduler::TaskRunner {
 public:
  // `log_cap_bytes` caps each attempt's log file; `kill_grace` is the time between SIGTERM and
  // SIGKILL on timeout or Kill().
  LocalTaskRunner(boost::asio::io_context& io, uint64_t log_cap_bytes, Duration kill_grace);

  // Creates request.run_dir (mode 0750; request.user's with mode 0700 when it switches user) if
  // missing, then starts the process as request.user.
  void Start(scheduler::LaunchRequest request,
             std::function<void(scheduler::AttemptOutcome)> on_exit) override;
  void Kill(RunId run, TaskId task) override;
  // Closes it here (the folder is on this host): os::CloseFolder; errors are logged.
  void CloseRunFolder(const std::filesystem::path& run_dir) override;
  // Processes of this runner live and die with it: an attempt started elsewhere is reported lost
  // (posted, like every on_exit).
  void Adopt(const scheduler::AdoptRequest& request,
             std::function<void(scheduler::AttemptOutcome)> on_exit) override;
  // Yes: its attempts belong to this process (`kiln run`), whose run nobody resumes (a daemon
  // ends it cancelled when the process is gone), so a start whose commit never lands is never
  // run a second time; the scheduler stops one that the store refuses.
  bool StartsBeforeCommit() const override { return true; }
  // Kill() for every running attempt (e.g. at shutdown); their on_exit still comes.
  void KillAll();
  // Attempts started and not yet reported.
  size_t running() const { return processes_.running(); }

 private:
  struct Attempt {
    ProcessManager::Handle handle = 0;
    int number = 0;
  };

  boost::asio::io_context& io_;
  ProcessManager processes_;
  uint64_t log_cap_bytes_;
  Duration kill_grace_;
  std::map<std::pair<RunId, TaskId>, Attempt> attempts_;
};

// The scheduler's view of a process result (field by field).
scheduler::AttemptOutcome ToAttemptOutcome(const ProcessResult& result);

}  // namespace kiln::executor
