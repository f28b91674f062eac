#include "store/postmaster.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "common/log.h"

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

// Milliseconds left until `deadline`, for poll(); 0 once it has passed.
int MsLeft(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// What the lock file <cluster>/postmaster.pid says: the server's pid (negative for a
// single-user backend) and its status line ("starting", "ready", "stopping", "standby"; empty
// before the server has written one).
struct LockFile {
  pid_t pid = 0;
  std::string status;
};

// Nullopt while the file is being written: no pid or start time yet.
std::optional<LockFile> ParseLockFile(std::string_view text) {
  // Lines: pid, data directory, start time, port, socket directory, listen address, shared
  // memory key, status.
  std::vector<std::string_view> lines;
  while (!text.empty() && lines.size() < 8) {
    const size_t nl = text.find('\n');
    if (nl == std::string_view::npos) break;  // a line still being written
    lines.push_back(text.substr(0, nl));
    text.remove_prefix(nl + 1);
  }
  if (lines.size() < 3) return std::nullopt;
  LockFile out;
  long long started = 0;
  auto pid = std::from_chars(lines[0].data(), lines[0].data() + lines[0].size(), out.pid);
  auto at = std::from_chars(lines[2].data(), lines[2].data() + lines[2].size(), started);
  if (pid.ec != std::errc() || at.ec != std::errc()) return std::nullopt;
  if (lines.size() == 8) {
    std::string_view status = lines[7];
    while (!status.empty() && status.back() == ' ') status.remove_suffix(1);
    out.status = status;
  }
  return out;
}

// What process `pid` is to `cluster`: its server when it is `owner`'s and was started as
// `postgres -D <cluster>` (by pg_ctl or by kiln); kStale when it is another program, another
// user's, or gone (a zombie has no command line). /proc/PID and its cmdline need no ptrace
// rights, unlike its cwd. An error when they cannot be read (a /proc mounted with hidepid), and
// for `owner`'s postgres whose command line does not name the cluster (started with PGDATA or a
// relative -D): it may be this cluster's server, and is neither signalled nor started over.
Result<LockHolder::Kind> Classify(pid_t pid, const fs::path& cluster, uid_t owner) {
  const std::string proc = "/proc/" + std::to_string(pid);
  struct stat st {};
  if (::stat(proc.c_str(), &st) != 0) {
    if (errno == ENOENT) return LockHolder::kStale;  // gone
    return Status::Error(Errno(proc));
  }
  if (st.st_uid != owner) return LockHolder::kStale;
  Fd fd(::open((proc + "/cmdline").c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) {
    if (errno == ENOENT) return LockHolder::kStale;
    return Status::Error(Errno(proc + "/cmdline"));
  }
  std::string cmdline(65536, '\0');
  size_t got = 0;
  while (got < cmdline.size()) {
    const ssize_t n = ::read(fd.fd, cmdline.data() + got, cmdline.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  cmdline.resize(got);
  std::vector<std::string_view> args;
  for (std::string_view rest = cmdline; !rest.empty();) {
    const size_t end = std::min(rest.find('\0'), rest.size());
    args.push_back(rest.substr(0, end));
    rest.remove_prefix(std::min(end + 1, rest.size()));
  }
  if (args.empty() || fs::path(args[0]).filename() != "postgres") return LockHolder::kStale;
  for (size_t i = 1; i + 1 < args.size(); ++i) {
    if (args[i] != "-D") continue;
    std::error_code ec;
    if (fs::path(args[i + 1]) == cluster || fs::equivalent(args[i + 1], cluster, ec)) {
      return LockHolder::kServer;
    }
    return LockHolder::kStale;  // another cluster's server
  }
  return Status::Error("pid " + std::to_string(pid) + " (" + cluster.string() +
                       "/postmaster.pid) is a PostgreSQL server whose command line does not "
                       "show its data folder; stop it (pg_ctl stop -D " +
                       cluster.string() + ") and start kiln again");
}

std::optional<LockFile> ReadLockFile(const fs::path& cluster, uid_t owner) {
  auto text = ReadOwnedFile(cluster / "postmaster.pid", owner, 4096);
  if (!text) return std::nullopt;
  return ParseLockFile(*text);
}

}  // namespace

std::optional<std::string> ReadOwnedFile(const fs::path& file, uid_t owner, size_t max,
                                         std::string* why) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd.fd < 0) {
    if (errno != ENOENT && why != nullptr) *why = Errno(file.string());
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) {
    if (why != nullptr) *why = Errno(file.string());
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode) || st.st_uid != owner) {
    if (why != nullptr) {
      *why = file.string() + " is not a regular file of uid " + std::to_string(owner);
    }
    return std::nullopt;
  }
  std::string out(max, '\0');
  size_t got = 0;
  while (got < max) {
    const ssize_t n = ::read(fd.fd, out.data() + got, max - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

Result<bool> WaitUntilReady(const fs::path& cluster, uid_t owner, pid_t server,
                            std::chrono::milliseconds timeout, int* exit_code) {
  // Watched first, read after: a change between the two is an event still to come. Without
  // inotify or a pidfd (a limit reached), the lock file and the process are looked at every
  // 20 ms instead.
  Fd watch(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (watch.fd >= 0 && ::inotify_add_watch(watch.fd, cluster.c_str(),
                                           IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
    ::close(std::exchange(watch.fd, -1));
  }
  Fd exited(PidFd(server));
  const bool looking = watch.fd < 0 || exited.fd < 0;
  if (looking) {
    log::Warn("embedded PostgreSQL: " + Errno("watching the server start") +
              "; looking every 20 ms instead");
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    // The server writes its lock file when it starts and its status line as it goes.
    if (auto lock = ReadLockFile(cluster, owner);
        lock && lock->pid == server && (lock->status == "ready" || lock->status == "standby")) {
      return true;
    }
    int status = 0;
    const pid_t reaped = exited.fd < 0 ? ::waitpid(server, &status, WNOHANG) : 0;
    if (reaped == server) {
      *exit_code = ExitCode(status);
      return false;
    }
    pollfd fds[2] = {{watch.fd, POLLIN, 0}, {exited.fd, POLLIN, 0}};
    const int wait = looking ? std::min(MsLeft(deadline), 20) : MsLeft(deadline);
    const int n = ::poll(fds, 2, wait);
    if (n < 0 && errno != EINTR) return Status::Error(Errno("poll"));
    if (exited.fd >= 0 && fds[1].revents != 0) {
      while (::waitpid(server, &status, 0) < 0 && errno == EINTR) {
      }
      *exit_code = ExitCode(status);
      return false;
    }
    if (watch.fd >= 0) {
      char events[4096];
      while (::read(watch.fd, events, sizeof events) > 0) {
      }
    }
    if (n == 0 && MsLeft(deadline) == 0) {
      return Status::Error(ErrorCode::kUnavailable, "the server did not say it was ready within " +
                                                        std::to_string(timeout.count() / 1000) +
                                                        " s");
    }
  }
}

LockHolder::~LockHolder() {
  if (pidfd >= 0) ::close(pidfd);
}

LockHolder::LockHolder(LockHolder&& other) noexcept
    : kind(other.kind), pid(other.pid), pidfd(std::exchange(other.pidfd, -1)) {}

Result<LockHolder> FindServer(const fs::path& cluster, uid_t owner) {
  const fs::path file = cluster / "postmaster.pid";
  std::string why;
  auto text = ReadOwnedFile(file, owner, 4096, &why);
  if (!text) {
    if (!why.empty()) return Status::Error(why);
    return LockHolder{};  // no lock file: no server
  }
  auto lock = ParseLockFile(*text);
  if (!lock) return Status::Error(file.string() + " is being written: a server is starting");
  if (lock->pid <= 0) {
    return Status::Error("a single-user server (pid " + std::to_string(-lock->pid) +
                         ") runs on the cluster; end it first");
  }
  LockHolder out;
  out.pid = lock->pid;
  // Opened before the process is looked at: what is signalled later through it is the very
  // process looked at, even if the pid is reused meanwhile.
  out.pidfd = PidFd(lock->pid);
  if (out.pidfd < 0) {
    if (errno != ESRCH) return Status::Error(Errno("pidfd_open"));
    out.kind = LockHolder::kStale;  // gone, its lock file left behind
    return out;
  }
  auto kind = Classify(lock->pid, cluster, owner);
  if (!kind.ok()) return kind.status();
  out.kind = *kind;
  return out;
}

Result<bool> ShutDown(const fs::path& cluster, uid_t owner, std::chrono::milliseconds timeout) {
  auto found = FindServer(cluster, owner);
  if (!found.ok()) return found.status();
  if (found->kind != LockHolder::kServer) return false;
  if (::syscall(SYS_pidfd_send_signal, found->pidfd, SIGINT, nullptr, 0) != 0 && errno != ESRCH) {
    return Status::Error(Errno("signalling the server (pid " + std::to_string(found->pid) + ")"));
  }
  pollfd fd = {found->pidfd, POLLIN, 0};
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const int n = ::poll(&fd, 1, MsLeft(deadline));
    if (n > 0) break;
    if (n == 0) {
      return Status::Error(ErrorCode::kUnavailable,
                           "the server (pid " + std::to_string(found->pid) +
                               ") did not stop within " + std::to_string(timeout.count() / 1000) +
                               " s");
    }
    if (errno != EINTR) return Status::Error(Errno("poll"));
  }
  // Reaped when it is this process's child (kiln started it); ECHILD otherwise.
  siginfo_t info{};
  ::waitid(static_cast<idtype_t>(3 /* P_PIDFD */), static_cast<id_t>(found->pidfd), &info,
           WEXITED | WNOHANG);
  return true;
}

Status SignalServer(const LockHolder& server, int signal) {
  if (::syscall(SYS_pidfd_send_signal, server.pidfd, signal, nullptr, 0) != 0) {
    return Status::Error(Errno("signalling the server (pid " + std::to_string(server.pid) + ")"));
  }
  return Status::Ok();
}

}  // namespace kiln::store
