#include "executor/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
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
// spawn, in the one of the spawn just made until the mover has moved it on, or stayed in one
// whose move out failed).
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

// Cgroup names unique within this process, whichever of its process managers makes them.
std::atomic<uint64_t> next_name{1};

// Moves threads of this process from a thread of its own, and knows where each thread sits as
// this process's moves left it ("": the root). Per process, not per Cgroups: a thread that two
// managers spawn from is moved by both.
//
// A move that comes after a pause of moves (anywhere on the machine) waits for an RCU grace
// period, 10-30 ms: cgroup v1 takes a global lock for writing, whose fast path lapses a grace
// period after its last use. A spawning thread hands its move into the cgroup of its next spawn
// to this thread and goes on; its next spawn waits only for what is left of that move.
class Mover {
 public:
  static Mover& Get() {
    static Mover* mover = new Mover;  // never destroyed: its thread may outlive static objects
    return *mover;
  }

  // Moves thread `tid` into `cgroup` soon; where that fails, into `root`.
  void Post(long tid, std::string cgroup, fs::path root) {
    {
      std::lock_guard lock(mu_);
      if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
      queue_.push_back(Move{tid, std::move(cgroup), std::move(root)});
      ++queued_[tid];
    }
    wake_.notify_all();
  }

  // Has the mover move itself where it is: the lock that moves take is taken now, and a move
  // made within a grace period after this one does not wait for one.
  void WarmUp(fs::path root) { Post(0, "", std::move(root)); }

  // Waits until no move of `tid` is queued or under way; where it sits then.
  std::string Settle(long tid) {
    std::unique_lock lock(mu_);
    done_.wait(lock, [&] { return !queued_.contains(tid); });
    auto it = sitting_.find(tid);
    return it == sitting_.end() ? "" : it->second;
  }

  // After a move made by the thread itself (settled before).
  void Sat(long tid, const std::string& cgroup) {
    std::lock_guard lock(mu_);
    if (cgroup.empty()) {
      sitting_.erase(tid);
    } else {
      sitting_[tid] = cgroup;
    }
  }

 private:
  struct Move {
    long tid;
    std::string cgroup;
    fs::path root;
  };

  void Loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return !queue_.empty(); });
      Move move = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      const std::string id = std::to_string(move.tid != 0 ? move.tid : ThreadId());
      std::string now;
      if (move.cgroup.empty()) {
        WriteText(move.root / "tasks", id);
      } else if (WriteText(fs::path(move.cgroup) / "tasks", id)) {
        now = move.cgroup;
      } else if (!WriteText(move.root / "tasks", id)) {
        now = "?";  // neither: a thread that has ended, or a hierarchy gone
      }
      lock.lock();
      if (now.empty()) {
        sitting_.erase(move.tid);
      } else {
        sitting_[move.tid] = now;
      }
      if (--queued_[move.tid] == 0) queued_.erase(move.tid);
      done_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;  // a move queued
  std::condition_variable done_;  // a move made
  std::deque<Move> queue_;
  std::map<long, int> queued_;  // moves queued or under way, by thread
  std::map<long, std::string> sitting_;
  std::thread thread_;
};

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
  // The parked thread back to the root, so that its cgroup can go (from any thread: a move is
  // made by naming the thread).
  if (parked_tid_ != 0) {
    const std::string sitting = Mover::Get().Settle(parked_tid_);
    if (sitting.rfind(home_.string() + "/", 0) == 0 &&
        WriteText(root_ / "tasks", std::to_string(parked_tid_))) {
      Mover::Get().Sat(parked_tid_, "");
    }
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

void Cgroups::WarmUp() { Mover::Get().WarmUp(root_); }

std::string Cgroups::Make() {
  RetryPending();
  if (!parked_.empty() && ThreadId() == parked_tid_) {
    // The parked thread's own next spawn: where it was moved, once the move is made.
    if (Mover::Get().Settle(parked_tid_) == parked_) return std::exchange(parked_, "");
    ::rmdir(parked_.c_str());  // it could not be entered
    parked_.clear();
  }
  if (!kept_.empty()) {
    std::string cgroup = std::move(kept_.back());
    kept_.pop_back();
    return cgroup;
  }
  return MakeNew();
}

// One thread parks (the first to spawn; a process manager spawns from its io thread); others
// move in and back out.
void Cgroups::SpawnInside(const std::string& cgroup, const std::function<void()>& spawn) {
  const long tid = ThreadId();
  if (parked_tid_ == 0) parked_tid_ = tid;
  const bool parks = parked_tid_ == tid;
  const std::string sitting = Mover::Get().Settle(tid);
  bool moved = false;
  if (!cgroup.empty()) {
    moved = sitting == cgroup || WriteText(fs::path(cgroup) / "tasks", std::to_string(tid));
    // A kept cgroup removed meanwhile (Open() of another manager of this process removes empty
    // ones): made again.
    if (!moved && errno == ENOENT && ::mkdir(cgroup.c_str(), 0755) == 0) {
      moved = WriteText(fs::path(cgroup) / "tasks", std::to_string(tid));
    }
    if (moved) {
      Mover::Get().Sat(tid, cgroup);
    } else {
      // Not born in another task's cgroup either, to be killed with it.
      if (!sitting.empty() && WriteText(root_ / "tasks", std::to_string(tid))) {
        Mover::Get().Sat(tid, "");
      }
      log::Warn("cgroups: cannot move thread " + std::to_string(tid) + " into " + cgroup +
                "; what it starts now is followed by its process group only");
    }
  }
  spawn();
  if (!moved) return;
  if (parks && parked_.empty()) {
    // On into the cgroup of the next spawn, from where that spawn needs no move: made by the
    // mover, so that this thread does not wait for it (Mover). One that cannot be entered is
    // dropped by that next Make(), and this thread is moved back to the root instead.
    if (!kept_.empty()) {
      parked_ = std::move(kept_.back());
      kept_.pop_back();
    } else {
      parked_ = MakeNew();
    }
    if (!parked_.empty()) {
      Mover::Get().Post(tid, parked_, root_);
      return;
    }
  }
  if (WriteText(root_ / "tasks", std::to_string(tid))) {
    Mover::Get().Sat(tid, "");
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
