// Thin POSIX helpers behind ProcessManager: folders, the log file, program lookup, posix_spawn and
// process-group inspection. Internal to executor/; other modules use process.h.
//
// Thread safety: every function is safe to call from any thread (they keep no state).
// Errors: returned as Status/Result whose message names the subject first, e.g.
// "working directory '/x' does not exist" or "cannot start 'nosuch': No such file or directory".
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/users.h"

namespace kiln::executor::os {

using Env = std::vector<std::pair<std::string, std::string>>;

// Owns one file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Creates `dir` and its missing parents with `mode` (the umask still applies). Ok when `dir`
// already is a folder. Error: "cannot create folder '<dir>': <reason>".
Status MakeDirs(const std::filesystem::path& dir, mode_t mode);

// `dir` made `who`'s with mode 0700: created (its missing parents with mode 0711, and its parent
// made passable: x for group and others) or, when it exists as a folder, chowned and chmodded; a
// symbolic link is refused.
// Error: "cannot create folder '<dir>': <reason>".
Status MakePrivateDir(const std::filesystem::path& dir, const Identity& who);

// `dir` made this process's user's with mode 0700 (nothing when it is missing; a symbolic link is
// left alone). Errors: "cannot close folder '<dir>': <reason>".
Status CloseFolder(const std::filesystem::path& dir);

// Before a start: makes the missing folders of a log file (mode 0750) and truncates the file if
// it is there already (then its fd is returned; otherwise an invalid one: CreateLogFile makes it
// at the first write). The fd is O_CLOEXEC and write-only. Error: "cannot open log file
// '<path>': <reason>".
Result<UniqueFd> PrepareLogFile(const std::filesystem::path& path);
// Creates (or truncates) a log file with mode 0640; -1 and errno on failure.
int CreateLogFile(const std::filesystem::path& path);

// Writes all of `data`, retrying short writes. Returns 0 or the errno of the failure.
int WriteAll(int fd, std::string_view data);

// Checks that `cwd` exists, is a folder and can be entered, with a message naming it.
Status CheckWorkingDirectory(const std::filesystem::path& cwd);

// Finds the program for argv[0] like execvp() does, but searching the PATH of the task's own
// environment (`env`; "/usr/local/bin:/usr/bin:/bin" when it has none). Names with a '/' are
// returned unchanged. Relative PATH entries are taken relative to `cwd` (where the task runs).
Result<std::string> ResolveProgram(const std::string& argv0, const Env& env,
                                   const std::filesystem::path& cwd);
// Every place ResolveProgram would look, in order (argv0 alone when it has a '/'): what a child
// that switched user tries with execve, as that user, the way execvp does.
std::vector<std::string> ProgramCandidates(const std::string& argv0, const Env& env,
                                           const std::filesystem::path& cwd);

// A started child: its pid (also its process-group id), a pidfd for it and the read end of its
// output pipe (non-blocking). All fds are O_CLOEXEC and owned by the caller.
struct Spawned {
  pid_t pid = -1;
  UniqueFd pidfd;
  UniqueFd output;
  // As another user: the read end (non-blocking) of the pipe through which the child reports a
  // failure before its exec; read it with StartFailure once the child has exited.
  UniqueFd report;
  // As another user: what the child runs on until its exec (child_as.h). Keep it until the child
  // has exited.
  std::shared_ptr<void> child_memory;
};

// Starts `program` (as another user: argv[0] is searched in env's PATH by the child itself, as
// that user, so that a PATH entry kiln may read and the user may not is passed over): a new
// process group, stdin from /dev/null, stdout and stderr into one pipe,
// no other fds, empty signal mask, default dispositions, exactly `env`, in `cwd` (unchanged when
// empty). Error: "cannot start '<argv[0]>': <reason>".
//
// As kiln's own user (user.switch_user false) with posix_spawn, which returns once the child has
// exec'd or failed to. As another user (kiln is root) with fork, returning at once: the child
// alone takes the user's groups and gid, its uid as the effective one to enter `cwd` (with the
// user's rights, while the user's processes cannot signal it), and all three ids right before
// exec (no capability and no way back). Nothing of kiln ever runs with the user's ids (a thread
// with them could be signalled by the user's processes). A failure before the exec (switching
// user, entering `cwd`, exec itself) is written to Spawned::report and the child exits 127.
Result<Spawned> SpawnProcess(const std::string& program, const std::vector<std::string>& argv,
                             const Env& env, const std::filesystem::path& cwd,
                             const Identity& user);

// Once the child of a spawn as another user has exited: why it never exec'd, or nullopt when it
// did (or was killed before it could). Messages name the user when it was refused:
// "working directory '/x' is not accessible: Permission denied (as user 'kiln-task')".
std::optional<std::string> StartFailure(int report_fd, const std::string& argv0,
                                        const std::filesystem::path& cwd, const Identity& user);

// The live and zombie processes whose process group is `pgid` (read from /proc).
struct GroupMember {
  pid_t pid = -1;
  bool zombie = false;
};
std::vector<GroupMember> ListGroupMembers(pid_t pgid);

// pidfd_open(2): an O_CLOEXEC fd that becomes readable when `pid` exits; -1 and errno on failure.
int OpenPidfd(pid_t pid);

// Reaps `pid` if it is an exited child of this process (true); does nothing otherwise.
bool TryReap(pid_t pid);

// strerror() text for an errno value.
std::string ErrnoText(int err);

}  // namespace kiln::executor::os
