// One cgroup (v1 "pids" hierarchy) per spawned process, holding every process it starts, in its
// process group or not (`setsid`, double forks): the way to find them all when its attempt ends.
//
// A process is born in a cgroup by spawning it from a thread that sits in that cgroup: cgroup v1
// places threads one by one (the `tasks` file), and a child starts where its parent thread is.
// After a spawn the spawning thread moves on into the cgroup the next spawn will get (one move
// per spawn, not two), and a cgroup found empty when its process ended is kept for a later spawn
// instead of being removed and made again: each mkdir and rmdir costs tens of microseconds, on
// the path from one task's end to the next start. A thread moves itself only, and says so ("0"
// in the `tasks` file, not its id): recent kernels then do not write-lock the global
// thread-group rwsem for the move, which after a pause of moves waits for an RCU grace period
// (cgroup.cc, MoveSelf).
//
// Where the hierarchy is missing or not writable (not root, cgroup v2 only), Open() returns null
// and processes are followed by their process group only.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kiln::executor {

class Cgroups {
 public:
  // The folder <pids hierarchy>/kiln/<name> for this process's cgroups (made; left-over empty
  // cgroups of an earlier process of the same name are removed), or null when there is none.
  // `name` is this process's pid: the cgroups of processes that are gone (a supervisor killed
  // with SIGKILL) are emptied with SIGKILL and removed here.
  static std::unique_ptr<Cgroups> Open(const std::string& name);
  ~Cgroups();

  // An empty cgroup for one spawn (a kept one, or a new one); "" when none can be made.
  std::string Make();
  // Runs `spawn` on the calling thread while that thread sits in `cgroup` (so that what it
  // spawns is born there), then moves the thread into the cgroup the next Make() hands out (or
  // back to the root). Runs it anyway when the move fails.
  void SpawnInside(const std::string& cgroup, const std::function<void()>& spawn);
  // Sends `signal` to every process in `cgroup`; the processes found.
  std::vector<pid_t> Signal(const std::string& cgroup, int signal);
  // The process of `cgroup` ended: sends SIGKILL to every process still in it and removes it;
  // the processes killed. One found empty is kept for a later Make() instead. One whose processes
  // have not finished exiting (or forked meanwhile) is killed and removed again at the next
  // Make() and when this object dies.
  std::vector<pid_t> KillAndRemove(const std::string& cgroup);

 private:
  Cgroups(std::filesystem::path root, std::filesystem::path home)
      : root_(std::move(root)), home_(std::move(home)) {}
  std::string MakeNew();
  void RetryPending();
  std::filesystem::path root_;        // the hierarchy's root, where the thread returns
  std::filesystem::path home_;        // where this process's cgroups are made
  std::vector<std::string> pending_;  // killed, not removed yet
  std::vector<std::string> kept_;     // empty, for later spawns
  // The thread that parks between spawns (the first to spawn), and the cgroup it moved on into
  // while the next Make() has not handed it out yet. Where each thread sits is tracked per
  // thread (cgroup.cc), so that another manager moving the same thread is seen.
  long parked_tid_ = 0;
  std::string parked_;
};

// Sends SIGKILL to every process in the cgroups of the process `owner` (Open()'s name), which
// must be gone; how many were found. Nothing is removed: the next Open() does that. For the
// guard (guard.h), which cannot wait for the owner's pid to be reaped.
int KillCgroupsOf(const std::string& owner);

}  // namespace kiln::executor
