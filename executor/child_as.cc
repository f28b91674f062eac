#include "executor/child_as.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "common/text.h"

// Sanitizers keep state in memory the child would share (shadow memory, interceptors): fork.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KILN_CHILD_FORKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define KILN_CHILD_FORKS 1
#endif
#endif
// The child in raw system calls (x86-64), whether it shares the memory or forks.
#if defined(__x86_64__)
#define KILN_RAW_CHILD 1
#endif

namespace kiln::executor::os {

namespace {

// Everything the child reads, in one block that outlives its exec (ChildAs::memory).
struct ChildMemory {
  std::vector<std::string> strings;  // programs, argv, env, cwd
  std::vector<char*> programs, argv, envp;
  const char* cwd = nullptr;
  std::vector<gid_t> groups;
  uid_t uid = 0;
  gid_t gid = 0;
  int output_fd = -1;
  int report_fd = -1;
  void* stack = nullptr;  // mmap'd: a guard page, then the stack
  size_t stack_bytes = 0;
  ~ChildMemory() {
    if (stack != nullptr) ::munmap(stack, stack_bytes);
  }
};

std::vector<char*> Pointers(std::vector<std::string>& strings, size_t from, size_t count) {
  std::vector<char*> out;
  out.reserve(count + 1);
  for (size_t i = from; i < from + count; ++i) out.push_back(strings[i].data());
  out.push_back(nullptr);
  return out;
}

#if defined(KILN_RAW_CHILD)

// A system call that leaves errno alone: the result, or -errno.
long Sys(long n, long a = 0, long b = 0, long c = 0, long d = 0) {
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                   : "rcx", "r11", "memory");
  return ret;
}

// The kernel's struct sigaction on x86-64.
struct KernelSigaction {
  unsigned long handler = 0;  // SIG_DFL
  unsigned long flags = 0;
  unsigned long restorer = 0;
  unsigned long mask = 0;
};

[[noreturn]] void Fail(int report_fd, int step, long result) {
  int msg[2] = {step, static_cast<int>(-result)};
  Sys(SYS_write, report_fd, reinterpret_cast<long>(msg), sizeof msg);
  for (;;) Sys(SYS_exit_group, 127);
}

long Id(uid_t id) { return static_cast<long>(id); }

// The child: raw system calls only, on its own stack (see child_as.h).
int Child(void* p) {
  const ChildMemory& m = *static_cast<const ChildMemory*>(p);
  const KernelSigaction dfl;
  for (long sig = 1; sig <= 64; ++sig) {
    Sys(SYS_rt_sigaction, sig, reinterpret_cast<long>(&dfl), 0, sizeof dfl.mask);
  }
  long r = Sys(SYS_setpgid, 0, 0);
  if (r < 0) Fail(m.report_fd, kStepFds, r);
  const long devnull =
      Sys(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/dev/null"), O_RDONLY | O_CLOEXEC);
  if (devnull < 0) Fail(m.report_fd, kStepFds, devnull);
  if ((r = Sys(SYS_dup2, devnull, 0)) < 0 || (r = Sys(SYS_dup2, m.output_fd, 1)) < 0 ||
      (r = Sys(SYS_dup2, m.output_fd, 2)) < 0) {
    Fail(m.report_fd, kStepFds, r);
  }
  // Only the effective user id first: the folder is entered as the user, while the real and
  // saved ids stay root's, so that the user's processes cannot signal (stop) this child yet.
  if ((r = Sys(SYS_setgroups, static_cast<long>(m.groups.size()),
               reinterpret_cast<long>(m.groups.data()))) < 0 ||
      (r = Sys(SYS_setresgid, Id(m.gid), Id(m.gid), Id(m.gid))) < 0 ||
      (r = Sys(SYS_setresuid, Id(static_cast<uid_t>(-1)), Id(m.uid), Id(static_cast<uid_t>(-1)))) <
          0) {
    Fail(m.report_fd, kStepUser, r);
  }
  if (m.cwd != nullptr && (r = Sys(SYS_chdir, reinterpret_cast<long>(m.cwd))) < 0) {
    Fail(m.report_fd, kStepCwd, r);
  }
  // Everything but 0, 1, 2 closes at exec (the report pipe too, which tells the parent it did).
  if ((r = Sys(SYS_close_range, 3, static_cast<long>(~0U), CLOSE_RANGE_CLOEXEC)) < 0) {
    Fail(m.report_fd, kStepFds, r);
  }
  const unsigned long none = 0;
  Sys(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&none), 0, sizeof none);
  // All three ids, right before exec: no capability and no way back.
  if ((r = Sys(SYS_setresuid, Id(m.uid), Id(m.uid), Id(m.uid))) < 0) {
    Fail(m.report_fd, kStepUser, r);
  }
  // Like execvp, as the user: a candidate that is missing or not the user's to run is passed
  // over; EACCES is reported only when no later one runs.
  bool denied = false;
  long last = -ENOENT;
  for (char* const* program = m.programs.data(); *program != nullptr; ++program) {
    last = Sys(SYS_execve, reinterpret_cast<long>(*program), reinterpret_cast<long>(m.argv.data()),
               reinterpret_cast<long>(m.envp.data()));
    if (last == -EACCES) {
      denied = true;
    } else if (last != -ENOENT && last != -ENOTDIR && last != -ESTALE && last != -ELOOP &&
               last != -ENAMETOOLONG) {
      Fail(m.report_fd, kStepExec, last);
    }
  }
  Fail(m.report_fd, kStepExec, denied ? -EACCES : last);
}

#else

// The child of a fork (a copy of a threaded process): async-signal-safe calls only.
[[noreturn]] void ForkedChild(const ChildMemory& m) {
  auto fail = [&m](int step) {
    int msg[2] = {step, errno};
    ssize_t ignored = ::write(m.report_fd, msg, sizeof msg);
    (void)ignored;
    ::_exit(127);
  };
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  if (::setpgid(0, 0) != 0) fail(kStepFds);
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0 || ::dup2(devnull, 0) < 0 || ::dup2(m.output_fd, 1) < 0 ||
      ::dup2(m.output_fd, 2) < 0) {
    fail(kStepFds);
  }
  if (::setgroups(m.groups.size(), m.groups.data()) != 0 || ::setresgid(m.gid, m.gid, m.gid) != 0 ||
      ::setresuid(-1, m.uid, -1) != 0) {
    fail(kStepUser);
  }
  if (m.cwd != nullptr && ::chdir(m.cwd) != 0) fail(kStepCwd);
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) fail(kStepFds);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::setresuid(m.uid, m.uid, m.uid) != 0) fail(kStepUser);
  bool denied = false;
  for (char* const* program = m.programs.data(); *program != nullptr; ++program) {
    ::execve(*program, m.argv.data(), m.envp.data());
    if (errno == EACCES) {
      denied = true;
    } else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE && errno != ELOOP &&
               errno != ENAMETOOLONG) {
      fail(kStepExec);
    }
  }
  if (denied) errno = EACCES;
  fail(kStepExec);
  ::_exit(127);
}

#endif

// Whether a child may share this process's memory (CLONE_VM) while it changes ids. Its change
// of ids sets the shared memory's dump flag to fs.suid_dumpable: 0 (the kernel's default) makes
// it undumpable, so the task's user can neither ptrace the child nor make it dump core until its
// exec. With 1 or 2 the user could do either, and reach this process's memory through the
// child: then it forks. Read at every start, so that a change of the setting counts at once.
[[maybe_unused]] bool MemoryMayBeShared() {
  const int fd = ::open("/proc/sys/fs/suid_dumpable", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char text[4] = {0};
  const ssize_t n = ::read(fd, text, sizeof text);
  ::close(fd);
  return n >= 1 && text[0] == '0' && (n == 1 || text[1] == '\n');
}

}  // namespace

Result<ChildAs> StartChildAs(const std::vector<std::string>& programs,
                             const std::vector<std::string>& argv,
                             const std::vector<std::string>& env, const std::filesystem::path& cwd,
                             const Identity& user, int output_fd) {
  const std::string name = argv.empty() ? programs.front() : argv[0];
  auto fail = [&](int err) {
    return Status::Error("cannot start '" + name + "': " + ErrnoText(err));
  };
  int report[2];
  if (::pipe2(report, O_CLOEXEC | O_NONBLOCK) != 0) return fail(errno);
  UniqueFd report_read(report[0]);
  UniqueFd report_write(report[1]);
  auto m = std::make_shared<ChildMemory>();
  m->strings.reserve(programs.size() + argv.size() + env.size() + 1);
  for (const auto* list : {&programs, &argv, &env}) {
    m->strings.insert(m->strings.end(), list->begin(), list->end());
  }
  m->strings.push_back(cwd.string());
  m->programs = Pointers(m->strings, 0, programs.size());
  m->argv = Pointers(m->strings, programs.size(), argv.size());
  m->envp = Pointers(m->strings, programs.size() + argv.size(), env.size());
  m->cwd = cwd.empty() ? nullptr : m->strings.back().c_str();
  m->groups = user.groups;
  m->uid = user.uid;
  m->gid = user.gid;
  m->output_fd = output_fd;
  m->report_fd = report_write.get();
  // No handler of the daemon may run in the child before it has reset them.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = -1;
#if defined(KILN_RAW_CHILD) && !defined(KILN_CHILD_FORKS)
  if (MemoryMayBeShared()) {
    // Enough for Child (a few hundred bytes); its lowest page faults rather than run into other
    // memory.
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    m->stack_bytes = page + 16 * 1024;
    void* stack = ::mmap(nullptr, m->stack_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack != MAP_FAILED) {
      m->stack = stack;
      ::mprotect(stack, page, PROT_NONE);
      pid = ::clone(Child, static_cast<char*>(stack) + m->stack_bytes, CLONE_VM | SIGCHLD, m.get());
    }
  } else {
    pid = ::fork();
    if (pid == 0) Child(m.get());
  }
#elif defined(KILN_RAW_CHILD)
  pid = ::fork();
  if (pid == 0) Child(m.get());
#else
  pid = ::fork();
  if (pid == 0) ForkedChild(*m);
#endif
  const int err = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return fail(err);
  ChildAs out;
  out.pid = pid;
  out.report = std::move(report_read);
  out.memory = std::move(m);
  return out;
}

}  // namespace kiln::executor::os
