// Ready tasks wait here, one priority queue per pool, until their pool has slots free and the
// global parallel limit allows. Pure: no I/O, no clock.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"

namespace kiln::scheduler {

struct Ticket {
  RunId run{};
  TaskId task{};
  std::string pool;
  int slots = 1;
  int priority = 0;  // higher first; ties in arrival order
  // Backfill work: starts after every other waiting ticket of its pool, whatever the priorities,
  // so that backfills never hold back scheduled and triggered runs.
  bool background = false;
};

class PoolQueue {
 public:
  // `pool_sizes`: slots per pool. `max_parallel`: tasks running at once over all pools (0 = no
  // limit).
  PoolQueue(std::map<std::string, int> pool_sizes, int max_parallel);

  // Why a ticket can never start (unknown pool, more slots than the pool has, fewer than 1 slot),
  // or nullopt: "pool 'gpu' is not configured (configured: default)",
  // "task needs 3 slots but pool 'gpu' has 2".
  std::optional<std::string> Reject(const Ticket& ticket) const;
  // Queues a ticket; KILN_CHECKs that Reject() is nullopt.
  void Push(Ticket ticket);
  // Pops every ticket that can start now, taking its slots: per pool highest priority first; a
  // ticket that does not fit blocks lower ones of its pool (no starvation of wide tasks).
  // Across pools, the startable pool heads are taken best first by (priority desc, arrival asc),
  // so when max_parallel is the limit it goes to the best tickets of all pools.
  std::vector<Ticket> TakeStartable();
  // Gives back the slots of a ticket returned by TakeStartable (or taken by Occupy).
  void Release(const Ticket& ticket);
  // Takes the slots of a ticket that is already running (an attempt adopted after a restart),
  // even beyond the pool's size or the parallel limit: it runs whether or not they are free.
  // False (nothing taken) when its pool is not configured any more.
  bool Occupy(const Ticket& ticket);
  // Drops queued tickets of a run (cancel); returns them in arrival order. Slots of its tickets
  // already taken stay in use until Release.
  std::vector<Ticket> RemoveRun(RunId run);
  // Drops the queued ticket of one task (a task marked by hand while it waited); false when it is
  // not queued. O(queued tickets): for rare operator actions, not per completion.
  bool Remove(RunId run, TaskId task);

  // New sizes and parallel limit (a reload of kiln.toml), or why not, with nothing changed: a
  // pool left out while tasks wait or run in it, or made smaller than a waiting task's slots
  // ("pool 'gpu' is still used by 2 tasks", "pool 'gpu' of 1 slot is too small for a waiting
  // task that needs 2"). Slots in use beyond a smaller size stay in use until released; no
  // ticket starts there meanwhile.
  std::optional<std::string> Resize(std::map<std::string, int> pool_sizes, int max_parallel);

  // Queued tickets / slots in use of a pool; 0 for an unknown pool. O(log pools), no scan.
  int waiting(const std::string& pool) const;
  int in_use(const std::string& pool) const;
  int running() const { return running_; }
  const std::map<std::string, int>& sizes() const { return sizes_; }

 private:
  struct Entry {
    Ticket ticket;
    uint64_t seq;
  };
  struct Pool {
    int size = 0;
    int used = 0;
    std::vector<Entry> heap;  // max-heap by (priority, -seq)
  };
  std::map<std::string, int> sizes_;
  std::map<std::string, Pool> pools_;
  int max_parallel_ = 0;
  int running_ = 0;
  uint64_t next_seq_ = 0;
};

}  // namespace kiln::scheduler
