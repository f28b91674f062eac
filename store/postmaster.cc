#include "store/postmaster.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <string_view>

namespace kiln::store {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// Closes a file descriptor when it goes.
struct Fd {
  explicit Fd(int fd) : fd(fd) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int fd;
};

int PidFd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

std::string Errno(std::string_view what) { return std::string(what) + ": " + std::strerror(errno); }

int ExitCode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status); }

// The parent of process `pid` (0 when it cannot be read).
pid_t ParentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const size_t close = stat.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos || close + 4 > stat.size()) return 0;
  const char* p = stat.data() + close + 4;  // past ") S "
  pid_t parent = 0;
  std::from_chars(p, stat.data() + stat.size(), parent);
  return parent;
}

// Milliseconds left until `deadline`, for poll(); 0 once it has passed.
int MsLeft(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

}  // namespace

std::optional<LockFile> ReadLockFile(const fs::path& cluster) {
  std::ifstream in(cluster / "postmaster.pid");
  if (!in) return std::nullopt;
  // Lines: pid, data directory, start time, port, socket directory, listen address, shared
  // memory key, status.
  std::string lines[8];
  for (std::string& line : lines) {
    if (!std::getline(in, line)) break;
  }
  LockFile out;
  long long started = 0;
  auto pid = std::from_chars(lines[0].data(), lines[0].data() + lines[0].size(), out.pid);
  auto at = std::from_chars(lines[2].data(), lines[2].data() + lines[2].size(), started);
  if (pid.ec != std::errc() || at.ec != std::errc()) return std::nullopt;  // being written
  out.started = static_cast<std::time_t>(started);
  out.status = lines[7];
  while (!out.status.empty() && out.status.back() == ' ') out.status.pop_back();
  return out;
}

Result<bool> WaitUntilReady(const fs::path& cluster, std::time_t since, pid_t starter,
                            std::chrono::milliseconds timeout, int* exit_code) {
  // Watched first, read after: a change between the two is an event still to come.
  Fd watch(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (watch.fd < 0) return Status::Error(Errno("inotify"));
  if (::inotify_add_watch(watch.fd, cluster.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) <
      0) {
    return Status::Error(Errno("watching " + cluster.string()));
  }
  Fd exited(PidFd(starter));
  if (exited.fd < 0) return Status::Error(Errno("pidfd_open"));
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    // The server writes its lock file when it starts and its status line as it goes; a
    // starting server's file may be read half written (no start time yet): not ready. Its
    // server is the starter's child (pg_ctl forks it), which no stale file names.
    if (auto lock = ReadLockFile(cluster); lock && lock->pid > 0 && lock->started >= since &&
                                           lock->status == "ready" &&
                                           ParentOf(lock->pid) == starter) {
      return true;
    }
    pollfd fds[2] = {{watch.fd, POLLIN, 0}, {exited.fd, POLLIN, 0}};
    const int n = ::poll(fds, 2, MsLeft(deadline));
    if (n < 0 && errno != EINTR) return Status::Error(Errno("poll"));
    if (n == 0) {
      return Status::Error(ErrorCode::kUnavailable, "the server did not say it was ready within " +
                                                        std::to_string(timeout.count() / 1000) +
                                                        " s");
    }
    if (fds[1].revents != 0) {
      *exit_code = ReapStarter(starter);
      return false;
    }
    char events[4096];
    while (::read(watch.fd, events, sizeof events) > 0) {
    }
  }
}

int ReapStarter(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1000;  // reaped elsewhere
  }
  return ExitCode(status);
}

Result<bool> ShutDown(const fs::path& cluster, std::chrono::milliseconds timeout) {
  auto lock = ReadLockFile(cluster);
  if (!lock) return false;
  if (lock->pid <= 0) {
    return Status::Error("a single-user server (pid " + std::to_string(-lock->pid) +
                         ") runs on the cluster; end it first");
  }
  Fd exited(PidFd(lock->pid));
  if (exited.fd < 0) {
    if (errno == ESRCH) return false;  // gone, its lock file left behind
    return Status::Error(Errno("pidfd_open"));
  }
  // Only this cluster's server: a postmaster works in its data directory.
  std::error_code ec;
  const fs::path cwd = fs::read_symlink("/proc/" + std::to_string(lock->pid) + "/cwd", ec);
  if (ec || !fs::equivalent(cwd, cluster, ec) || ec) return false;
  // Signalled through the pidfd: the very process checked above, even if its pid is reused.
  if (::syscall(SYS_pidfd_send_signal, exited.fd, SIGINT, nullptr, 0) != 0) {
    if (errno == ESRCH) return true;  // it ended meanwhile
    return Status::Error(Errno("signalling the server (pid " + std::to_string(lock->pid) + ")"));
  }
  pollfd fd = {exited.fd, POLLIN, 0};
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const int n = ::poll(&fd, 1, MsLeft(deadline));
    if (n > 0) return true;
    if (n == 0) {
      return Status::Error(ErrorCode::kUnavailable, "the server (pid " + std::to_string(lock->pid) +
                                                        ") did not stop within " +
                                                        std::to_string(timeout.count() / 1000) +
                                                        " s");
    }
    if (errno != EINTR) return Status::Error(Errno("poll"));
  }
}

}  // namespace kiln::store
