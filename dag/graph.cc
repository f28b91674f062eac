#include "dag/graph.h"

#include <algorithm>
#include <functional>
#include <queue>

#include "common/status.h"

namespace kiln::dag {

Dag::Dag(const PipelineSpec& spec) {
  const size_t n = spec.tasks.size();
  KILN_CHECK(n <= UINT32_MAX);
  upstream_.resize(n);
  downstream_.resize(n);

  // Hash index for Find; also how needs are resolved below.
  index_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    bool inserted = index_.emplace(spec.tasks[i].id, static_cast<TaskId>(i)).second;
    KILN_CHECK(inserted);  // unique ids
  }

  // Iterating tasks in file order makes every downstream list come out in file order, and every
  // upstream list follows the order of its `needs`.
  for (size_t i = 0; i < n; ++i) {
    const TaskId self = static_cast<TaskId>(i);
    for (const std::string& need : spec.tasks[i].needs) {
      std::optional<TaskId> up = Find(need);
      KILN_CHECK(up.has_value());  // unknown task in needs
      KILN_CHECK(*up != self);     // self-dependency
      KILN_CHECK(std::find(upstream_[i].begin(), upstream_[i].end(), *up) ==
                 upstream_[i].end());  // the same task twice in needs
      upstream_[i].push_back(*up);
      downstream_[Index(*up)].push_back(self);
    }
    if (spec.tasks[i].needs.empty()) roots_.push_back(self);
  }

  // Kahn's algorithm that always takes the smallest available index: deterministic, and a file
  // that already lists every task after its needs keeps its file order.
  std::vector<size_t> remaining(n);
  std::priority_queue<uint32_t, std::vector<uint32_t>, std::greater<>> available;
  for (size_t i = 0; i < n; ++i) {
    remaining[i] = upstream_[i].size();
    if (remaining[i] == 0) available.push(static_cast<uint32_t>(i));
  }
  topo_.reserve(n);
  while (!available.empty()) {
    const uint32_t i = available.top();
    available.pop();
    topo_.push_back(static_cast<TaskId>(i));
    for (TaskId down : downstream_[i]) {
      if (--remaining[Index(down)] == 0) available.push(Index(down));
    }
  }
  KILN_CHECK(topo_.size() == n);  // a cycle leaves tasks behind
}

std::optional<TaskId> Dag::Find(std::string_view task_id) const {
  auto it = index_.find(task_id);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

std::vector<TaskId> Dag::DownstreamClosure(TaskId from) const {
  KILN_CHECK(Index(from) < size());
  std::vector<bool> reached(size(), false);
  std::vector<TaskId> stack = {from};
  reached[Index(from)] = true;
  size_t count = 1;
  while (!stack.empty()) {
    TaskId id = stack.back();
    stack.pop_back();
    for (TaskId down : downstream_[Index(id)]) {
      if (reached[Index(down)]) continue;
      reached[Index(down)] = true;
      ++count;
      stack.push_back(down);
    }
  }
  std::vector<TaskId> out;
  out.reserve(count);
  for (TaskId id : topo_) {
    if (reached[Index(id)]) out.push_back(id);
  }
  return out;
}

}  // namespace kiln::dag
