#include "store/subprocess.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::store {

namespace {

// Where a child failed before exec, reported through a pipe as {step, errno}.
enum Step : int { kStepFds = 1, kStepUser, kStepCwd, kStepExec };

const char* StepName(int step) {
  switch (step) {
    case kStepFds:
      return "setting up its files";
    case kStepUser:
      return "switching user";
    case kStepCwd:
      return "changing directory";
    default:
      return "exec";
  }
}

// The functions below run in a forked child of a threaded process: async-signal-safe calls only.
[[noreturn]] void ChildFail(int report_fd, int step) {
  int msg[2] = {step, errno};
  ssize_t ignored = write(report_fd, msg, sizeof msg);
  (void)ignored;
  _exit(127);
}

bool DropPrivileges(const Identity& who) {
  if (!who.switch_user) return true;
  return setgroups(who.groups.size(), who.groups.data()) == 0 && setgid(who.gid) == 0 &&
         setuid(who.uid) == 0;
}

void ResetSignals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
}

// stdin <- /dev/null, stdout and stderr -> out_fd, every other fd closed except the report fd,
// which is returned (moved to >= 3 first so that the dup2s cannot clobber it).
int SetUpFds(int devnull, int out_fd, int report_fd) {
  int report = fcntl(report_fd, F_DUPFD_CLOEXEC, 3);
  int in = fcntl(devnull, F_DUPFD_CLOEXEC, 3);
  int out = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
  if (report < 0) _exit(127);
  if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) {
    ChildFail(report, kStepFds);
  }
  if (report > 3) close_range(3, report - 1, 0);
  close_range(report + 1, ~0U, 0);
  return report;
}

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

Status SysError(const std::string& what) {
  return Status::Error(what + ": " + std::strerror(errno));
}

int WaitExit(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1000;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

void ReadAll(int fd, std::string& out, size_t keep) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > 2 * keep) out.erase(0, out.size() - keep);
  }
  if (out.size() > keep) out.erase(0, out.size() - keep);
}

}  // namespace

namespace {

// Forks and execs argv as `who` with stdout and stderr to `out_fd`, in a session of its own when
// `new_session`; the child's pid, once it has exec'd (or an error about starting it). Closes
// `out_fd`.
Result<pid_t> Launch(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                     const Identity& who, int out_fd, bool new_session) {
  std::vector<char*> args = CStrings(argv);
  std::vector<char*> envp = CStrings(env);
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    close(out_fd);
    return SysError("pipe");
  }
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = devnull < 0 ? -1 : fork();
  if (pid == 0) {
    ResetSignals();
    if (new_session) setsid();
    int report_fd = SetUpFds(devnull, out_fd, report[1]);
    if (!DropPrivileges(who)) ChildFail(report_fd, kStepUser);
    if (chdir("/") != 0) ChildFail(report_fd, kStepCwd);
    umask(077);
    execve(args[0], args.data(), envp.data());
    ChildFail(report_fd, kStepExec);
  }
  int fork_errno = errno;
  close(out_fd);
  close(report[1]);
  if (devnull >= 0) close(devnull);
  if (pid < 0) {
    close(report[0]);
    errno = fork_errno;
    return SysError("starting " + argv[0]);
  }
  // The report pipe closes at exec (close-on-exec): a read returns at once after it.
  int failure[2] = {0, 0};
  ssize_t n;
  do {
    n = read(report[0], failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  close(report[0]);
  if (n == static_cast<ssize_t>(sizeof failure)) {
    WaitExit(pid);
    return Status::Error("starting " + argv[0] + " as user '" + who.name +
                         "': " + StepName(failure[0]) + ": " + std::strerror(failure[1]));
  }
  return pid;
}

}  // namespace

Result<ProgramResult> RunProgram(const std::vector<std::string>& argv,
                                 const std::vector<std::string>& env, const Identity& who) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return SysError("pipe");
  auto pid = Launch(argv, env, who, out[1], /*new_session=*/false);
  ProgramResult result;
  if (pid.ok()) ReadAll(out[0], result.output, 16384);
  close(out[0]);
  if (!pid.ok()) return pid.status();
  result.exit_code = WaitExit(*pid);
  return result;
}

Result<pid_t> StartProgram(const std::vector<std::string>& argv,
                           const std::vector<std::string>& env, const Identity& who, int out_fd) {
  return Launch(argv, env, who, out_fd, /*new_session=*/true);
}

}  // namespace kiln::store
