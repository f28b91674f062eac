#include "executor/guard.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "common/log.h"
#include "executor/cgroup.h"
#include "executor/os.h"

namespace kiln::executor::guard {

namespace {

std::mutex mu;
int report_fd = -1;  // the starter's end of the socket pair; -1 without a guard
pid_t guard_pid = 0;
std::string pending;  // what the socket has not taken yet
constexpr int kStuckMs = 500;

void WriteText(int fd, const std::string& text) {
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// Only the socket and stderr stay open (the starter's other descriptors, its locks and pipes
// among them, must not outlive it here); stdin and stdout are /dev/null.
int KeepOnly(int fd) {
  if (fd < 3) fd = ::fcntl(fd, F_DUPFD, 3);
  if (fd > 3) ::close_range(3, static_cast<unsigned>(fd - 1), 0);
  ::close_range(static_cast<unsigned>(fd + 1), ~0U, 0);
  const int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    if (null > 2 && null != fd) ::close(null);
  }
  return fd;
}

// A guard forked by a thread that sits in a task's cgroup (cgroup.h) would be killed with that
// task: it moves back to the hierarchy's root.
void LeaveTaskCgroup() {
  const int fd = ::open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[4096];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return;
  const std::string text(buf, static_cast<size_t>(n));
  if (text.find(":pids:/kiln/") == std::string::npos) return;
  const int procs = ::open("/sys/fs/cgroup/pids/cgroup.procs", O_WRONLY | O_CLOEXEC);
  if (procs < 0) return;
  WriteText(procs, std::to_string(::getpid()));
  ::close(procs);
}

// The guard's life: the groups it is told of, until the starter's end of the socket closes.
[[noreturn]] void Watch(int fd, pid_t starter, const std::string& who) {
  ::prctl(PR_SET_NAME, "kiln-guard", 0, 0, 0);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU}) {
    ::signal(s, SIG_IGN);
  }
  ::setpgid(0, 0);
  fd = KeepOnly(fd);
  LeaveTaskCgroup();
  std::unordered_set<pid_t> groups;
  char buf[4096];
  size_t have = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf + have, sizeof buf - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += static_cast<size_t>(n);
    size_t at = 0;
    for (; at + 4 <= have; at += 4) {
      int32_t report = 0;
      std::memcpy(&report, buf + at, 4);
      if (report > 1) {
        groups.insert(report);
      } else if (report < -1) {
        groups.erase(-report);
      }
    }
    std::memmove(buf, buf + at, have - at);
    have -= at;
  }
  // The cgroups first: their lists hold every process of the tasks, whichever group it is in,
  // only while those processes live.
  const int in_cgroups = KillCgroupsOf(std::to_string(starter));
  // Each is its group's leader by the time it was reported (ProcessManager makes sure).
  for (pid_t pid : groups) ::kill(-pid, SIGKILL);
  // Only when tasks were left: processes a clean exit has just killed may still be listed.
  if (!groups.empty()) {
    WriteText(2, "kiln guard: " + who + " (pid " + std::to_string(starter) +
                     ") is gone; stopped the processes of its " + std::to_string(groups.size()) +
                     " running task(s) (" + std::to_string(in_cgroups) +
                     " found in its cgroups)\n");
  }
  ::_exit(0);
}

// Without a guard from now on. With `mu` held.
void Drop(const std::string& why) {
  ::close(report_fd);
  report_fd = -1;
  pending.clear();
  ::waitpid(guard_pid, nullptr, 0);  // this process is its parent; it is gone or going
  log::Warn("guard: " + why + "; the tasks of this process are no longer stopped if it is killed");
}

// Every report goes out now, in order: the guard never acts on a list it is behind on. A guard
// that takes nothing for kStuck (stopped, or the machine starved it that long) is killed before
// its socket closes. With `mu` held.
void Flush() {
  while (!pending.empty()) {
    const ssize_t n =
        ::send(report_fd, pending.data(), pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      pending.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd writable{report_fd, POLLOUT, 0};
      int ready;
      while ((ready = ::poll(&writable, 1, kStuckMs)) < 0 && errno == EINTR) {
      }
      if (ready > 0) continue;
      ::kill(guard_pid, SIGKILL);
      Drop("took no report for " + std::to_string(kStuckMs) + " ms (stopped?) and was killed");
      return;
    }
    Drop("gone (" + os::ErrnoText(errno) + ")");
    return;
  }
}

void Report(int32_t report) {
  std::lock_guard lock(mu);
  if (report_fd < 0) return;
  char bytes[4];
  std::memcpy(bytes, &report, 4);
  pending.append(bytes, 4);
  Flush();
}

}  // namespace

Status Start(const std::string& who) {
  std::lock_guard lock(mu);
  if (guard_pid != 0) return Status::Ok();
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return Status::Error("cannot start the guard of this process's tasks: socketpair: " +
                         os::ErrnoText(errno));
  }
  // Never on 0, 1 or 2 (one closed when this process started): what this process writes to its
  // standard output or error must not reach the guard's stream.
  for (int& end : pair) {
    if (end > 2) continue;
    const int moved = ::fcntl(end, F_DUPFD_CLOEXEC, 3);
    ::close(end);
    end = moved;
  }
  if (pair[0] < 0 || pair[1] < 0) {
    if (pair[0] >= 0) ::close(pair[0]);
    if (pair[1] >= 0) ::close(pair[1]);
    return Status::Error("cannot start the guard of this process's tasks: no descriptor");
  }
  const pid_t starter = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(pair[0]);
    ::close(pair[1]);
    return Status::Error("cannot start the guard of this process's tasks: fork: " +
                         os::ErrnoText(err));
  }
  if (pid == 0) {
    ::close(pair[0]);
    Watch(pair[1], starter, who);
  }
  ::close(pair[1]);
  ::shutdown(pair[0], SHUT_RD);
  report_fd = pair[0];
  guard_pid = pid;
  return Status::Ok();
}

pid_t Pid() {
  std::lock_guard lock(mu);
  return guard_pid;
}

void Spawned(pid_t pid) { Report(static_cast<int32_t>(pid)); }

void Gone(pid_t pid) { Report(-static_cast<int32_t>(pid)); }

}  // namespace kiln::executor::guard
