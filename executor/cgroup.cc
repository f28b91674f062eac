#include "executor/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>
#include <vector>

#include "common/log.h"

namespace kiln::executor {

namespace fs = std::filesystem;

namespace {

bool WriteText(const fs::path& file, const std::string& text) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

// The processes in `cgroup`, never this one (whose spawning thread sits there if moving it back
// out ever failed).
std::vector<pid_t> Members(const fs::path& cgroup) {
  std::vector<pid_t> out;
  std::ifstream in(cgroup / "cgroup.procs");
  long pid = 0;
  while (in >> pid) {
    if (pid != ::getpid()) out.push_back(static_cast<pid_t>(pid));
  }
  return out;
}

std::string ThreadId() { return std::to_string(static_cast<long>(::syscall(SYS_gettid))); }

// The cgroups of processes that are gone (a supervisor or `kiln run` killed with SIGKILL): what
// their tasks started outside their process groups is killed, the cgroups removed. Folders are
// named by the owner's pid; one whose owner lives is left alone.
void RemoveOrphaned(const fs::path& kiln) {
  std::error_code ec;
  for (const auto& owner : fs::directory_iterator(kiln, ec)) {
    const std::string name = owner.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos ||
        name.size() > 9) {
      continue;
    }
    if (::kill(static_cast<pid_t>(std::stol(name)), 0) == 0 || errno != ESRCH) continue;
    std::error_code inner;
    for (const auto& cgroup : fs::directory_iterator(owner.path(), inner)) {
      if (!cgroup.is_directory(inner)) continue;
      for (pid_t pid : Members(cgroup.path())) ::kill(pid, SIGKILL);
      ::rmdir(cgroup.path().c_str());  // fails while a killed process is still exiting
    }
    ::rmdir(owner.path().c_str());
  }
}

}  // namespace

std::unique_ptr<Cgroups> Cgroups::Open(const std::string& name) {
  const fs::path root = "/sys/fs/cgroup/pids";
  std::error_code ec;
  if (!fs::exists(root / "tasks", ec) || ::access((root / "tasks").c_str(), W_OK) != 0) {
    return nullptr;
  }
  const fs::path home = root / "kiln" / name;
  fs::create_directories(home, ec);
  if (ec) return nullptr;
  RemoveOrphaned(root / "kiln");
  // Empty cgroups an earlier process of this name left behind (it was killed): rmdir removes
  // only empty ones.
  for (const auto& entry : fs::directory_iterator(home, ec)) ::rmdir(entry.path().c_str());
  return std::unique_ptr<Cgroups>(new Cgroups(root, home));
}

Cgroups::~Cgroups() {
  RetryPending();
  ::rmdir(home_.c_str());
}

std::string Cgroups::Make(const std::string& id) {
  RetryPending();
  fs::path cgroup = home_ / id;
  if (::mkdir(cgroup.c_str(), 0755) != 0 && errno != EEXIST) return "";
  return cgroup.string();
}

void Cgroups::SpawnInside(const std::string& cgroup, const std::function<void()>& spawn) {
  const std::string tid = ThreadId();
  bool moved = !cgroup.empty() && WriteText(fs::path(cgroup) / "tasks", tid);
  spawn();
  if (moved && !WriteText(root_ / "tasks", tid)) {
    log::Error("cgroups: cannot move thread " + tid + " back out of " + cgroup +
               "; it stays there (this process is never signalled through it)");
  }
}

std::vector<pid_t> Cgroups::Signal(const std::string& cgroup, int signal) {
  if (cgroup.empty()) return {};
  auto members = Members(cgroup);
  for (pid_t pid : members) ::kill(pid, signal);
  return members;
}

std::vector<pid_t> Cgroups::KillAndRemove(const std::string& cgroup) {
  if (cgroup.empty()) return {};
  // Killed processes leave the cgroup when the kernel has finished their exit, a moment later:
  // one that cannot be removed yet is killed and removed again at the next Make().
  auto killed = Signal(cgroup, SIGKILL);
  if (::rmdir(cgroup.c_str()) != 0 && errno != ENOENT) pending_.push_back(cgroup);
  return killed;
}

void Cgroups::RetryPending() {
  std::vector<std::string> still;
  for (const std::string& cgroup : pending_) {
    Signal(cgroup, SIGKILL);
    if (::rmdir(cgroup.c_str()) != 0 && errno != ENOENT) still.push_back(cgroup);
  }
  pending_ = std::move(still);
}

}  // namespace kiln::executor
