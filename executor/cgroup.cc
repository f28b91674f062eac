#include "executor/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
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

// The processes in `cgroup`, never this one (whose spawning thread sits in the cgroup of the next
// spawn, or stayed in one whose move out failed).
// `read_all`, when given, says whether the whole list could be read.
std::vector<pid_t> Members(const fs::path& cgroup, bool* read_all = nullptr) {
  std::vector<pid_t> out;
  if (read_all) *read_all = false;
  const int fd = ::open((cgroup / "cgroup.procs").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  std::string text;
  char buf[4096];
  bool whole = true;
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      whole = false;
      break;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (read_all) *read_all = whole;
  const pid_t self = ::getpid();
  for (const char *p = text.data(), *end = p + text.size(); p < end;) {
    pid_t pid = 0;
    const auto [next, ec] = std::from_chars(p, end, pid);
    if (ec == std::errc() && pid > 0 && pid != self) out.push_back(pid);
    p = next == p ? p + 1 : next;  // past a newline (or anything that is not a number)
  }
  return out;
}

long ThreadId() { return static_cast<long>(::syscall(SYS_gettid)); }

// Moves the calling thread into `cgroup`. Written as "0" (the writer itself), not as its thread
// id: kernels with the single-thread migration optimisation (upstream since 2022; this project's
// machines run 6.x) then move the one thread without write-locking the global thread-group
// rwsem, whose fast path lapses an RCU grace period after its last use. Written as an id, a move
// after a pause of moves anywhere on the machine waited for a grace period (6-20 ms measured);
// "0" took 0.01 ms. On a kernel without that optimisation "0" waits as an id does.
bool MoveSelf(const fs::path& cgroup) { return WriteText(cgroup / "tasks", "0"); }

// Cgroup names unique within this process, whichever of its process managers makes them.
std::atomic<uint64_t> next_name{1};

// The cgroup the calling thread sits in as this process's moves left it ("": the root). Per
// thread, not per Cgroups: a thread that two managers spawn from is moved by both.
thread_local std::string t_sitting;

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

int KillCgroupsOf(const std::string& owner) {
  const fs::path home = fs::path("/sys/fs/cgroup/pids/kiln") / owner;
  const pid_t gone = static_cast<pid_t>(std::strtol(owner.c_str(), nullptr, 10));
  int found = 0;
  std::error_code ec;
  for (const auto& cgroup : fs::directory_iterator(home, ec)) {
    std::error_code inner;
    if (!cgroup.is_directory(inner)) continue;
    // No fork from now on, so that one pass kills everything (a process forked between the
    // list's read and the kill would be missed otherwise).
    WriteText(cgroup.path() / "pids.max", "0");
    for (pid_t pid : Members(cgroup.path())) {
      if (pid == gone) continue;  // the owner's thread parked there, as the owner exits
      ::kill(pid, SIGKILL);
      ++found;
    }
  }
  return found;
}

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
  // This thread back to the root when it sits in one of these cgroups, so that it can go (a
  // thread parked from another thread cannot be moved here: its cgroup is left to the next
  // process of this name, which removes empty ones).
  if (t_sitting.rfind(home_.string() + "/", 0) == 0 && MoveSelf(root_)) {
    t_sitting.clear();
  }
  if (!parked_.empty()) ::rmdir(parked_.c_str());
  for (const std::string& cgroup : kept_) ::rmdir(cgroup.c_str());
  ::rmdir(home_.c_str());
}

std::string Cgroups::MakeNew() {
  fs::path cgroup = home_ / std::to_string(next_name.fetch_add(1));
  if (::mkdir(cgroup.c_str(), 0755) != 0 && errno != EEXIST) return "";
  return cgroup.string();
}

std::string Cgroups::Make() {
  RetryPending();
  if (!parked_.empty()) return std::exchange(parked_, "");
  if (!kept_.empty()) {
    std::string cgroup = std::move(kept_.back());
    kept_.pop_back();
    return cgroup;
  }
  return MakeNew();
}

// One thread parks (the first to spawn; a process manager spawns from its io thread); others
// move in and back out as before.
void Cgroups::SpawnInside(const std::string& cgroup, const std::function<void()>& spawn) {
  const long tid = ThreadId();
  if (parked_tid_ == 0) parked_tid_ = tid;
  const bool parks = parked_tid_ == tid;
  bool moved = false;
  if (!cgroup.empty()) {
    moved = t_sitting == cgroup || MoveSelf(cgroup);
    // A kept cgroup removed meanwhile (Open() of another manager of this process removes empty
    // ones): made again.
    if (!moved && errno == ENOENT && ::mkdir(cgroup.c_str(), 0755) == 0) {
      moved = MoveSelf(cgroup);
    }
    if (moved) {
      t_sitting = cgroup;
    } else {
      // Not born in another task's cgroup either, to be killed with it.
      if (!t_sitting.empty() && MoveSelf(root_)) t_sitting.clear();
      log::Warn("cgroups: cannot move thread " + std::to_string(tid) + " into " + cgroup +
                "; what it starts now is followed by its process group only");
    }
  }
  spawn();
  if (!moved) return;
  if (parks && parked_.empty()) {
    // On into the cgroup of the next spawn, from where that spawn needs no move.
    // A kept one that cannot be entered (removed meanwhile) is dropped; a new one is tried.
    while (!kept_.empty() && !MoveSelf(kept_.back())) {
      ::rmdir(kept_.back().c_str());
      kept_.pop_back();
    }
    std::string next;
    if (!kept_.empty()) {
      next = std::move(kept_.back());
      kept_.pop_back();
    } else if (std::string made = MakeNew(); !made.empty() && MoveSelf(made)) {
      next = std::move(made);
    } else if (!made.empty()) {
      kept_.push_back(std::move(made));
    }
    if (!next.empty()) {
      parked_ = t_sitting = next;
      return;
    }
  }
  if (MoveSelf(root_)) {
    t_sitting.clear();
  } else {
    log::Error("cgroups: cannot move thread " + std::to_string(tid) + " back out of " + cgroup +
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
  bool read_all = false;
  auto killed = Members(cgroup, &read_all);
  for (pid_t pid : killed) ::kill(pid, SIGKILL);
  // Empty (what it held has exited): kept for a later spawn. Only when its list was read whole
  // (a cgroup whose list could not be read may still hold processes: rmdir says, below); no
  // process can enter an empty cgroup but through a thread of this one.
  if (read_all && killed.empty()) {
    kept_.push_back(cgroup);
    return killed;
  }
  // Killed processes leave the cgroup when the kernel has finished their exit, a moment later:
  // one that cannot be removed yet is killed and removed again at the next Make().
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
