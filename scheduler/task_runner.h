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
#include "common/users.h"

namespace kiln::scheduler {

// Names one attempt wherever it is recorded: run, task id, attempt number.
struct AttemptKey {
  RunId run{};
  std::string task_id;
  int attempt = 0;
  auto operator<=>(const AttemptKey&) const = default;
  // "7/train/2", for logs and file names (task ids hold no '/').
  std::string ToString() const {
    return kiln::ToString(run) + "/" + task_id + "/" + std::to_string(attempt);
  }
};

struct LaunchRequest {
  RunId run{};
  TaskId task{};
  std::string task_id;  // the task's id in the pipeline (with run and attempt: the attempt's key)
  int attempt = 1;
  std::vector<std::string> argv;  // rendered; for `command` tasks: {"/bin/sh", "-c", command}
  std::vector<std::pair<std::string, std::string>> env;  // the complete environment
  std::filesystem::path cwd;
  std::filesystem::path log_path;  // the attempt's log file (its folder may not exist yet)
  std::filesystem::path run_dir;   // the run's working folder (created if missing)
  Duration timeout{0};             // 0 = none
  // Who it runs as (switch_user = false: the runner's own user); the run folder is made its own.
  Identity user;
  // Run after the program exits 0, as the same user in the same folder (empty: nothing to
  // collect): it prints the attempt's results (AttemptOutcome::results) and exits 0, or prints
  // why the attempt fails and exits non-zero.
  std::vector<std::string> collect_argv;
  // Exit codes besides 0 after which collect_argv runs too (a kind's skip codes: a gate that does
  // not pass keeps its report and metrics). Best effort there: a collection that fails leaves
  // the outcome as it was (the reason in the log), and a skip stays a skip.
  std::vector<int> collect_also_on;
  // Values of the secrets in argv and env: every occurrence in the log is written as "***".
  std::vector<std::string> mask;
  std::string pool = "default";  // the task's pool (a runner may send some pools elsewhere)
  int priority = 0;
  int slots = 1;  // of its pool
  // False: started while the commit that records its start is in flight (StartsBeforeCommit);
  // TaskRunner::StartRecorded follows once it is durable, or Kill() if it was refused.
  bool start_recorded = true;
};

// What the commit of a start writes for another machine to claim (TaskRunner::HandOut).
struct Handout {
  std::string pool;
  int priority = 0;
  int slots = 1;
  std::string launch;  // the attempt's launch, as the runner encodes it
};

struct AttemptOutcome {
  bool started = false;  // false: the program could not start (reason in `error` and the log)
  std::string error;     // why it could not start, or other executor-side failure
  // Its supervisor is gone (or never knew it) and no end was recorded: nobody knows how it ended.
  // `error` says why. Counts as a failure; the task's retry policy applies.
  bool lost = false;
  // Why its supervisor stopped it on its own (killed is then true): "cancel" (the database says
  // the run is being cancelled), "superseded" (the database no longer has this attempt running)
  // "fenced" (the supervisor could not renew its lease), "unconfirmed" (started while its start
  // committed, and not confirmed in time) or "stopped" (the supervisor itself was told to stop).
  // Empty when nobody or Kill() stopped it.
  std::string stop_cause;
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
  // After a successful exit, what kiln collected of the task's declared inputs, outputs and
  // metrics: a JSON object (plugins/collect.h), empty when the task declares none.
  std::string results;
  // Collecting them failed (a declared output is missing, a metrics file is not a flat object of
  // numbers, the collector was stopped): the attempt failed though it exited 0; `error` says why.
  bool collect_failed = false;
  // Only from Adopt(): the attempt's start is recorded, but nothing of it runs and its
  // supervisor has no end of it (as a rule, it never received it: the daemon that committed it
  // died before sending it, or before handing it to a worker). Not an end: the scheduler starts
  // the same attempt now. Never stored nor sent.
  bool never_launched = false;
};

// An attempt that was started before this process took its run over (a restart, or a run taken
// from a daemon whose lease expired): its start is recorded, naming `supervisor`.
struct AdoptRequest {
  RunId run{};
  TaskId task{};
  int attempt = 1;
  std::string task_id;     // the task's id in the pipeline
  std::string supervisor;  // the lease owner recorded with the attempt
  Duration timeout{0};     // the task's timeout (the supervisor keeps enforcing it)
  // The adopting process never drove this run (a daemon that has just started): no end of the
  // attempt can have been handed to it and consumed already, so a supervisor of its own with no
  // record of the attempt never had it (never_launched). Otherwise (a run read again, taken
  // back) the rows may be older than an end already delivered: such an attempt is lost.
  bool at_start = false;
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
  // Watches an attempt that is already running (AdoptRequest). `on_exit` comes once, like for
  // Start(): with the attempt's real end when its supervisor has it or learns it, lost = true
  // when the supervisor is gone without having recorded an end, or never_launched = true when
  // its supervisor (this runner's) never had it (only for AdoptRequest::at_start). Kill() works on
  // it as on a started attempt. A runner without supervision answers lost at once. Never called
  // from inside Adopt().
  virtual void Adopt(const AdoptRequest& request, std::function<void(AttemptOutcome)> on_exit) = 0;
  // Whether the scheduler may start an attempt while the batch that records its start is still
  // being committed, instead of after it is durable. Only for runners where a start that never
  // becomes durable cannot leave an attempt that anyone resumes or repeats: the scheduler stops
  // an attempt whose start was refused or rejected; a crash before the commit must leave
  // nothing that a later owner of the run would run a second time next to it.
  virtual bool StartsBeforeCommit() const { return false; }
  // Whether starts of `pool` are handed to other machines in the same commit that records them
  // (HandOut), instead of being started after it.
  virtual bool HandsOut(const std::string& /*pool*/) const { return false; }
  // For a pool HandsOut names, called before the start's batch is sent: takes the attempt as
  // Start() would (`on_exit` likewise), and returns what the start's commit writes for another
  // machine to claim (start_recorded is true: it can be claimed only once committed). Nullopt
  // when it cannot go (`on_exit` then comes with why). StartRecorded or StartRefused follows
  // once the commit is over, whatever became of the run meanwhile.
  virtual std::optional<Handout> HandOut(LaunchRequest /*request*/,
                                         std::function<void(AttemptOutcome)> /*on_exit*/) {
    return std::nullopt;
  }
  // The start of an attempt started with start_recorded = false, or handed out, is committed
  // now.
  virtual void StartRecorded(RunId /*run*/, TaskId /*task*/, int /*attempt*/) {}
  // ... or was refused (the run is driven elsewhere) or could not be written: it must not run.
  virtual void StartRefused(RunId /*run*/, TaskId /*task*/, int /*attempt*/) {}
  // The end of the attempt is committed: its supervisor may forget what it kept of it.
  virtual void Recorded(RunId /*run*/, TaskId /*task*/, int /*attempt*/) {}
  // The run has ended (every attempt is over): its folder, made the tasks' own, goes back to the
  // runner's user with mode 0700, out of reach of every task, until a retry of the run takes it
  // over again. Called only when tasks run as another user.
  virtual void CloseRunFolder(const std::filesystem::path& /*run_dir*/) {}
};

}  // namespace kiln::scheduler
