#include "executor/os.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <system_error>

#include "executor/child_as.h"

namespace kiln::executor::os {

namespace {

constexpr std::string_view kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

std::string Quote(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

// posix_spawn's attribute and file-action objects need a matching destroy call on every path.
class SpawnSetup {
 public:
  SpawnSetup() {
    posix_spawnattr_init(&attr_);
    posix_spawn_file_actions_init(&actions_);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions_);
    posix_spawnattr_destroy(&attr_);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;

  // Returns 0 or an errno value.
  int Prepare(int output_fd, const std::filesystem::path& cwd) {
    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    int rc = 0;
    // A process group of its own, so a timeout or Kill reaches everything the task started.
    rc = rc ? rc : posix_spawnattr_setpgroup(&attr_, 0);
    // The daemon's mask and handlers (Asio, Catch2, ...) must not leak into the task.
    rc = rc ? rc : posix_spawnattr_setsigmask(&attr_, &empty);
    rc = rc ? rc : posix_spawnattr_setsigdefault(&attr_, &all);
    rc = rc ? rc
            : posix_spawnattr_setflags(
                  &attr_, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = rc ? rc : posix_spawn_file_actions_addopen(&actions_, 0, "/dev/null", O_RDONLY, 0);
    rc = rc ? rc : posix_spawn_file_actions_adddup2(&actions_, output_fd, 1);
    rc = rc ? rc : posix_spawn_file_actions_adddup2(&actions_, output_fd, 2);
    if (!cwd.empty()) rc = rc ? rc : posix_spawn_file_actions_addchdir_np(&actions_, cwd.c_str());
    // Our own fds are O_CLOEXEC, but libraries linked into the daemon may not be that careful.
    rc = rc ? rc : posix_spawn_file_actions_addclosefrom_np(&actions_, 3);
    return rc;
  }

  const posix_spawnattr_t* attr() const { return &attr_; }
  const posix_spawn_file_actions_t* actions() const { return &actions_; }

 private:
  posix_spawnattr_t attr_;
  posix_spawn_file_actions_t actions_;
};

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

bool IsExecutableFile(const std::string& path, int* err) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    *err = errno;
    return false;
  }
  if (!S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0) {
    *err = EACCES;
    return false;
  }
  return true;
}

}  // namespace

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string ErrnoText(int err) { return std::generic_category().message(err); }

Status MakeDirs(const std::filesystem::path& dir, mode_t mode) {
  if (dir.empty()) return Status::Ok();
  if (::mkdir(dir.c_str(), mode) == 0) return Status::Ok();
  int err = errno;
  if (err == ENOENT && dir.has_relative_path() && dir.parent_path() != dir) {
    Status parent = MakeDirs(dir.parent_path(), mode);
    if (!parent.ok()) return parent;
    if (::mkdir(dir.c_str(), mode) == 0) return Status::Ok();
    err = errno;
  }
  struct stat st;
  if (err == EEXIST && ::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::Ok();
    err = ENOTDIR;
  }
  return Status::Error("cannot create folder " + Quote(dir) + ": " + ErrnoText(err));
}

Status MakePrivateDir(const std::filesystem::path& dir, const Identity& who) {
  auto fail = [&](int err) {
    return Status::Error("cannot create folder " + Quote(dir) + ": " + ErrnoText(err));
  };
  if (dir.has_relative_path() && dir.parent_path() != dir) {
    if (Status parent = MakeDirs(dir.parent_path(), 0711); !parent.ok()) return parent;
    // Passable for the user whatever the umask was, or whoever made it (a `kiln run` makes it
    // 0750): x for group and others, nothing more.
    UniqueFd parent(::open(dir.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat st;
    if (parent.valid() && ::fstat(parent.get(), &st) == 0 && st.st_uid == ::geteuid() &&
        (st.st_mode & 0011) != 0011) {
      ::fchmod(parent.get(), (st.st_mode & 07777) | 0011);
    }
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return fail(errno);
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return fail(errno == ELOOP ? ENOTDIR : errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return fail(errno);
  if ((st.st_uid != who.uid || st.st_gid != who.gid) && ::fchown(fd.get(), who.uid, who.gid) != 0) {
    return fail(errno);
  }
  if ((st.st_mode & 07777) != 0700 && ::fchmod(fd.get(), 0700) != 0) return fail(errno);
  return Status::Ok();
}

Status CloseFolder(const std::filesystem::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid() && (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)) return Status::Ok();
  if (!fd.valid() || ::fchown(fd.get(), ::geteuid(), ::getegid()) != 0 ||
      ::fchmod(fd.get(), 0700) != 0) {
    return Status::Error("cannot close folder " + Quote(dir) + ": " + ErrnoText(errno));
  }
  return Status::Ok();
}

// No file is created here: on some file systems (ext4 without a journal) creating one scans past
// every inode deleted in the last minute, a cost on the path from one task's end to the next
// start that a task printing nothing need not pay at all.
Result<UniqueFd> PrepareLogFile(const std::filesystem::path& path) {
  if (path.has_parent_path()) {
    Status dirs = MakeDirs(path.parent_path(), 0750);
    if (!dirs.ok())
      return Status::Error("cannot open log file " + Quote(path) + ": " + dirs.message());
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno != ENOENT) {
    return Status::Error("cannot open log file " + Quote(path) + ": " + ErrnoText(errno));
  }
  return UniqueFd(fd);
}

int CreateLogFile(const std::filesystem::path& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
}

int WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return 0;
}

Status CheckWorkingDirectory(const std::filesystem::path& cwd) {
  struct stat st;
  if (::stat(cwd.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return Status::Error("working directory " + Quote(cwd) + " does not exist");
    return Status::Error("working directory " + Quote(cwd) +
                         " is not accessible: " + ErrnoText(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::Error("working directory " + Quote(cwd) + " is not a directory");
  }
  if (::access(cwd.c_str(), X_OK) != 0) {
    return Status::Error("working directory " + Quote(cwd) +
                         " is not accessible: " + ErrnoText(errno));
  }
  return Status::Ok();
}

std::vector<std::string> ProgramCandidates(const std::string& argv0, const Env& env,
                                           const std::filesystem::path& cwd) {
  if (argv0.find('/') != std::string::npos) return {argv0};
  std::string_view path = kDefaultPath;
  for (const auto& [name, value] : env) {
    if (name == "PATH") {
      path = value;
      break;
    }
  }
  std::vector<std::string> out;
  while (true) {
    size_t colon = path.find(':');
    std::filesystem::path dir(path.substr(0, colon));
    if (dir.empty()) dir = ".";
    if (dir.is_relative() && !cwd.empty()) dir = cwd / dir;
    out.push_back((dir / argv0).string());
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  return out;
}

Result<std::string> ResolveProgram(const std::string& argv0, const Env& env,
                                   const std::filesystem::path& cwd) {
  if (argv0.empty()) return Status::Error("cannot start '': the program name is empty");
  if (argv0.find('/') != std::string::npos) return argv0;
  std::string_view path = kDefaultPath;
  for (const auto& [name, value] : env) {
    if (name == "PATH") {
      path = value;
      break;
    }
  }
  // Like execvp: a found-but-not-executable file is reported only if nothing better turns up.
  int err = ENOENT;
  while (true) {
    size_t colon = path.find(':');
    std::filesystem::path dir(path.substr(0, colon));
    if (dir.empty()) dir = ".";
    if (dir.is_relative() && !cwd.empty()) dir = cwd / dir;
    std::string candidate = (dir / argv0).string();
    int candidate_err = 0;
    if (IsExecutableFile(candidate, &candidate_err)) return candidate;
    if (candidate_err == EACCES) err = EACCES;
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  return Status::Error("cannot start '" + argv0 + "': " + ErrnoText(err));
}

namespace {}  // namespace

Result<Spawned> SpawnProcess(const std::string& program, const std::vector<std::string>& argv,
                             const Env& env, const std::filesystem::path& cwd,
                             const Identity& user) {
  const std::string subject = "cannot start '" + (argv.empty() ? program : argv[0]) + "': ";
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Status::Error(subject + ErrnoText(errno));
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  // Only our end is non-blocking: the flag lives in the shared open file description, and the
  // task must see an ordinary blocking stdout.
  if (::fcntl(read_end.get(), F_SETFL, O_NONBLOCK) != 0) {
    return Status::Error(subject + ErrnoText(errno));
  }
  std::vector<std::string> env_strings;
  env_strings.reserve(env.size());
  for (const auto& [name, value] : env) env_strings.push_back(name + "=" + value);
  pid_t pid = -1;
  UniqueFd report;
  std::shared_ptr<void> child_memory;
  if (user.switch_user) {
    auto child = StartChildAs(ProgramCandidates(program, env, cwd), argv, env_strings, cwd, user,
                              write_end.get());
    if (!child.ok()) return child.status();
    pid = child->pid;
    report = std::move(child->report);
    child_memory = std::move(child->memory);
  } else {
    SpawnSetup setup;
    if (int rc = setup.Prepare(write_end.get(), cwd); rc != 0) {
      return Status::Error(subject + ErrnoText(rc));
    }
    std::vector<char*> c_argv = CStrings(argv);
    std::vector<char*> c_env = CStrings(env_strings);
    // glibc's posix_spawn uses CLONE_VFORK and reports exec failures as its return value.
    int rc = ::posix_spawn(&pid, program.c_str(), setup.actions(), setup.attr(), c_argv.data(),
                           c_env.data());
    if (rc != 0) return Status::Error(subject + ErrnoText(rc));
  }
  write_end.reset();
  int pidfd = OpenPidfd(pid);
  if (pidfd < 0) {
    int err = errno;
    // The child itself too: it may not lead its group yet (setpgid is its first step).
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return Status::Error(subject + "cannot watch the process: " + ErrnoText(err));
  }
  Spawned spawned;
  spawned.pid = pid;
  spawned.pidfd.reset(pidfd);
  spawned.output = std::move(read_end);
  spawned.report = std::move(report);
  spawned.child_memory = std::move(child_memory);
  return spawned;
}

std::optional<std::string> StartFailure(int report_fd, const std::string& argv0,
                                        const std::filesystem::path& cwd, const Identity& user) {
  int msg[2] = {0, 0};
  ssize_t got;
  while ((got = ::read(report_fd, msg, sizeof msg)) < 0 && errno == EINTR) {
  }
  if (got != static_cast<ssize_t>(sizeof msg)) return std::nullopt;
  const std::string reason = ErrnoText(msg[1]);
  const std::string as = " (as user '" + user.name + "')";
  switch (msg[0]) {
    case kStepUser:
      return "cannot start '" + argv0 + "' as user '" + user.name + "': switching user: " + reason;
    case kStepCwd:
      return "working directory " + Quote(cwd) + " is not accessible: " + reason + as;
    case kStepExec:
      return "cannot start '" + argv0 + "': " + reason + as;
    default:
      return "cannot start '" + argv0 + "': " + reason;
  }
}

std::vector<GroupMember> ListGroupMembers(pid_t pgid) {
  std::vector<GroupMember> members;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return members;
  while (const dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0') continue;
    std::string stat_path = "/proc/" + std::string(entry->d_name) + "/stat";
    int fd = ::open(stat_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char buf[512];
    ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    ::close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    // "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
    const char* close_paren = std::strrchr(buf, ')');
    char state = 0;
    int ppid = 0, group = 0;
    if (close_paren == nullptr ||
        std::sscanf(close_paren + 1, " %c %d %d", &state, &ppid, &group) != 3) {
      continue;
    }
    if (group == pgid) members.push_back({static_cast<pid_t>(pid), state == 'Z' || state == 'X'});
  }
  ::closedir(proc);
  return members;
}

// glibc 2.36's <sys/pidfd.h> lacks extern "C", so its wrapper cannot be linked from C++.
int OpenPidfd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u)); }

bool TryReap(pid_t pid) {
  siginfo_t info{};
  int r;
  while ((r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG)) != 0 &&
         errno == EINTR) {
  }
  return r == 0 && info.si_pid == pid;
}

}  // namespace kiln::executor::os
