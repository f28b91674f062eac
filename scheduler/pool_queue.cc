#include "scheduler/pool_queue.h"

#include <algorithm>
#include <iterator>
#include <string>
#include <utility>

#include "common/status.h"

namespace kiln::scheduler {
namespace {

// Heap order: true when `a` should start after `b` (lower priority, or same priority and later
// arrival). std::push_heap/pop_heap with this keep the best entry at the front.
template <typename Entry>
bool StartsAfter(const Entry& a, const Entry& b) {
  if (a.ticket.background != b.ticket.background) return a.ticket.background;
  if (a.ticket.priority != b.ticket.priority) return a.ticket.priority < b.ticket.priority;
  return a.seq > b.seq;
}

std::string Slots(int n) { return std::to_string(n) + (n == 1 ? " slot" : " slots"); }

}  // namespace

PoolQueue::PoolQueue(std::map<std::string, int> pool_sizes, int max_parallel)
    : sizes_(std::move(pool_sizes)), max_parallel_(max_parallel) {
  KILN_CHECK(max_parallel_ >= 0);
  for (const auto& [name, size] : sizes_) {
    KILN_CHECK(size >= 0);
    pools_[name].size = size;
  }
}

std::optional<std::string> PoolQueue::Reject(const Ticket& ticket) const {
  auto it = sizes_.find(ticket.pool);
  if (it == sizes_.end()) {
    std::string configured;
    for (const auto& [name, size] : sizes_) {
      if (!configured.empty()) configured += ", ";
      configured += name;
    }
    if (configured.empty()) configured = "none";
    return "pool '" + ticket.pool + "' is not configured (configured: " + configured + ")";
  }
  if (ticket.slots < 1) {
    return "task needs " + Slots(ticket.slots) + " but every task needs at least 1 slot";
  }
  if (ticket.slots > it->second) {
    return "task needs " + Slots(ticket.slots) + " but pool '" + ticket.pool + "' has " +
           std::to_string(it->second);
  }
  return std::nullopt;
}

void PoolQueue::Push(Ticket ticket) {
  KILN_CHECK(!Reject(ticket).has_value());
  Pool& pool = pools_.at(ticket.pool);
  pool.heap.push_back(Entry{std::move(ticket), next_seq_++});
  std::push_heap(pool.heap.begin(), pool.heap.end(), StartsAfter<Entry>);
}

std::vector<Ticket> PoolQueue::TakeStartable() {
  std::vector<Ticket> started;
  while (max_parallel_ == 0 || running_ < max_parallel_) {
    // The best head among pools whose head fits. A head that does not fit is not passed over
    // within its pool, so a wide task is not starved by a stream of narrow ones.
    Pool* best = nullptr;
    for (auto& [name, pool] : pools_) {
      if (pool.heap.empty()) continue;
      const Entry& head = pool.heap.front();
      if (pool.used + head.ticket.slots > pool.size) continue;
      if (best == nullptr || StartsAfter(best->heap.front(), head)) best = &pool;
    }
    if (best == nullptr) break;
    std::pop_heap(best->heap.begin(), best->heap.end(), StartsAfter<Entry>);
    Ticket ticket = std::move(best->heap.back().ticket);
    best->heap.pop_back();
    best->used += ticket.slots;
    ++running_;
    started.push_back(std::move(ticket));
  }
  return started;
}

void PoolQueue::Release(const Ticket& ticket) {
  auto it = pools_.find(ticket.pool);
  KILN_CHECK(it != pools_.end());
  Pool& pool = it->second;
  KILN_CHECK(pool.used >= ticket.slots);
  KILN_CHECK(running_ > 0);
  pool.used -= ticket.slots;
  --running_;
}

bool PoolQueue::Occupy(const Ticket& ticket) {
  auto it = pools_.find(ticket.pool);
  if (it == pools_.end() || ticket.slots < 1) return false;
  it->second.used += ticket.slots;
  ++running_;
  return true;
}

std::vector<Ticket> PoolQueue::RemoveRun(RunId run) {
  std::vector<Entry> removed;
  for (auto& [name, pool] : pools_) {
    auto keep_end = std::stable_partition(pool.heap.begin(), pool.heap.end(),
                                          [run](const Entry& e) { return e.ticket.run != run; });
    if (keep_end == pool.heap.end()) continue;
    std::move(keep_end, pool.heap.end(), std::back_inserter(removed));
    pool.heap.erase(keep_end, pool.heap.end());
    std::make_heap(pool.heap.begin(), pool.heap.end(), StartsAfter<Entry>);
  }
  std::sort(removed.begin(), removed.end(),
            [](const Entry& a, const Entry& b) { return a.seq < b.seq; });
  std::vector<Ticket> out;
  out.reserve(removed.size());
  for (Entry& e : removed) out.push_back(std::move(e.ticket));
  return out;
}

bool PoolQueue::Remove(RunId run, TaskId task) {
  for (auto& [name, pool] : pools_) {
    auto it = std::find_if(pool.heap.begin(), pool.heap.end(), [&](const Entry& e) {
      return e.ticket.run == run && e.ticket.task == task;
    });
    if (it == pool.heap.end()) continue;
    pool.heap.erase(it);
    std::make_heap(pool.heap.begin(), pool.heap.end(), StartsAfter<Entry>);
    return true;
  }
  return false;
}

std::optional<std::string> PoolQueue::Resize(std::map<std::string, int> pool_sizes,
                                             int max_parallel) {
  KILN_CHECK(max_parallel >= 0);
  for (const auto& [name, pool] : pools_) {
    auto size = pool_sizes.find(name);
    if (size == pool_sizes.end()) {
      if (pool.heap.empty() && pool.used == 0) continue;
      const size_t waiting = pool.heap.size();
      return "pool '" + name + "' is left out, but it has " + std::to_string(waiting) +
             (waiting == 1 ? " waiting task and " : " waiting tasks and ") + Slots(pool.used) +
             " in use; keep it until they are done";
    }
    for (const Entry& e : pool.heap) {
      if (e.ticket.slots > size->second) {
        return "pool '" + name + "' of " + Slots(size->second) +
               " would be too small for a waiting task that needs " + Slots(e.ticket.slots);
      }
    }
  }
  for (const auto& [name, size] : pool_sizes) KILN_CHECK(size >= 0);
  for (auto it = pools_.begin(); it != pools_.end();) {
    it = pool_sizes.contains(it->first) ? std::next(it) : pools_.erase(it);
  }
  for (const auto& [name, size] : pool_sizes) pools_[name].size = size;
  sizes_ = std::move(pool_sizes);
  max_parallel_ = max_parallel;
  return std::nullopt;
}

int PoolQueue::waiting(const std::string& pool) const {
  auto it = pools_.find(pool);
  return it == pools_.end() ? 0 : static_cast<int>(it->second.heap.size());
}

int PoolQueue::in_use(const std::string& pool) const {
  auto it = pools_.find(pool);
  return it == pools_.end() ? 0 : it->second.used;
}

}  // namespace kiln::scheduler
