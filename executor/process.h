// The process layer: starts programs, captures their output into a capped log file, enforces
// timeouts and reports how they ended. It speaks argv, env, cwd, limits and exit status; it knows
// nothing about DAGs, runs or tasks.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/time.h"
#include "common/users.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace kiln::executor {

inline constexpr uint64_t kDefaultLogCapBytes = uint64_t{64} << 20;

struct ProcessSpec {
  // argv[0] without a '/' is looked up in the PATH of `env` (default /usr/local/bin:/usr/bin:/bin).
  std::vector<std::string> argv;
  // The complete environment of the process; nothing is inherited from the daemon.
  std::vector<std::pair<std::string, std::string>> env;
  // Working directory; must exist. Empty: the daemon's own.
  std::filesystem::path cwd;
  // Receives stdout and stderr (one stream, in order of writes). Its missing folders are made
  // (mode 0750) and a file already there is truncated before the start; the file itself is
  // created (mode 0640) at the first byte to write, so that a process that prints nothing costs
  // no file. Empty: output is read and discarded.
  std::filesystem::path log_path;
  // Output beyond this many bytes is discarded after one marker line (see ProcessResult).
  uint64_t log_cap_bytes = kDefaultLogCapBytes;
  // Folders created (mode 0750, with parents) before the start; failing is a start failure.
  // With `user` set they are made that user's with mode 0700 (an existing one is taken over),
  // and their missing parents get mode 0711 so that the user can pass through them.
  std::vector<std::filesystem::path> create_dirs;
  // Who the process runs as. switch_user = false: kiln's own user. Otherwise (kiln must be root)
  // the user's uid, gid and groups; the working directory and the program are checked as that
  // user, and the process gets no capabilities.
  Identity user;
  // 0: no timeout. Otherwise SIGTERM to the process group when it passes, SIGKILL kill_grace later.
  kiln::Duration timeout{0};
  kiln::Duration kill_grace = std::chrono::seconds(10);
  // Secret values: every occurrence in the log (also one split across two writes, and where the
  // log is cut at its cap) and in ProcessResult::error is written as "***". The cap counts the
  // bytes written (masked); log_bytes the task's own.
  std::vector<std::string> mask;
};

struct ProcessResult {
  // false: the program never ran. `error` says why ("cannot start 'x': No such file or
  // directory", "working directory '/x' does not exist", ...) and the same text is written to the
  // log file as "[kiln: <error>]" when the log file could be opened.
  bool started = false;
  // Why it could not start, or an executor-side problem while it ran (e.g. the log file could not
  // be written; the process still ran and its exit status is valid).
  std::string error;
  std::optional<int> exit_code;  // set when the process exited normally
  std::optional<int> signal;     // set when a signal ended the process
  bool timed_out = false;        // the timeout passed and the group was terminated
  bool killed = false;           // Terminate() stopped it
  kiln::Instant started_at{};
  kiln::Instant ended_at{};  // when the main process was reaped
  kiln::Duration cpu{0};     // user + system of the process and the children it waited for
  int64_t max_rss_kb = 0;    // peak resident set of the process or of a waited-for child
  uint64_t log_bytes = 0;    // bytes of output the process produced, including discarded ones
  // Output exceeded log_cap_bytes: the log holds the first log_cap_bytes bytes, then the line
  // "\n[kiln: log truncated at <cap> bytes; further output discarded]\n".
  bool log_truncated = false;
};

// Starts processes and reports their end on an io_context.
//
// Threads: every member function must be called on the io_context's thread (or while no thread
// runs it); on_exit runs on that thread too. Not thread-safe otherwise.
//
// Guarantees for every Spawn:
// - on_exit is called exactly once, posted to the io_context (never from inside Spawn), unless
//   the manager is destroyed first.
// - The process runs in its own process group with stdin from /dev/null, stdout and stderr into
//   the log, no fd other than 0, 1 and 2, an empty signal mask, default signal dispositions and
//   exactly spec.env.
// - on_exit comes once the process has been reaped, no process of its group is left (leftover
//   background processes get SIGTERM, then SIGKILL kill_grace later) and the output pipe reached
//   end of file; if a process outside the group keeps the pipe open, kill_grace after the group
//   ended. The log file is closed before on_exit runs.
//
// Process-wide effect: the constructor makes this process a child subreaper
// (PR_SET_CHILD_SUBREAPER), so that orphaned background processes of a task are re-parented here
// and can be terminated and reaped rather than left as zombies under init. Processes a task
// moves out of its group (setsid) are not tracked and, once they exit, stay zombies of the daemon.
class ProcessManager {
 public:
  using Handle = uint64_t;

  explicit ProcessManager(boost::asio::io_context& io);
  // Sends SIGKILL to the groups of processes still running and drops their on_exit callbacks
  // without calling them. Must be destroyed before its io_context.
  ~ProcessManager();
  ProcessManager(const ProcessManager&) = delete;
  ProcessManager& operator=(const ProcessManager&) = delete;

  // Starts a process. Start failures are reported through on_exit (started = false). The
  // returned handle is unique for the lifetime of the manager.
  Handle Spawn(ProcessSpec spec, std::function<void(ProcessResult)> on_exit);
  // SIGTERM to the process group, SIGKILL spec.kill_grace later; the result has killed = true.
  // No effect on unknown or finished handles, or once the main process has exited.
  void Terminate(Handle handle);
  // Terminate() for every running process (e.g. at shutdown).
  void TerminateAll();
  // SIGKILL to the process group at once, no grace period; the result has killed = true. For a
  // supervisor that must stop its tasks before its lease runs out.
  void KillNow(Handle handle);
  // The pid (and process-group id) of a started process; -1 for an unknown handle or one that
  // never started.
  int pid(Handle handle) const;
  // Processes whose on_exit has not been posted yet.
  size_t running() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::executor
