// The task graph of one pipeline. Built once from a validated spec; immutable afterwards and safe
// to share between threads. Boost.Graph is used inside dag/ only (the critical path); the graph
// itself is plain adjacency lists, which the scheduler's hot path reads directly.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/ids.h"
#include "dag/schedule.h"
#include "dag/spec.h"

namespace kiln::dag {

class Dag {
 public:
  // Requires a spec that passed Validate() with no diagnostics (KILN_CHECKs otherwise).
  explicit Dag(const PipelineSpec& spec);

  size_t size() const { return upstream_.size(); }
  std::span<const TaskId> upstream(TaskId id) const { return upstream_[Index(id)]; }
  std::span<const TaskId> downstream(TaskId id) const { return downstream_[Index(id)]; }
  // Every task, each after all its upstreams.
  const std::vector<TaskId>& topological_order() const { return topo_; }
  // Tasks with no upstream.
  const std::vector<TaskId>& roots() const { return roots_; }
  std::optional<TaskId> Find(std::string_view task_id) const;
  // Every task reachable downstream of `from`, `from` included, in topological order.
  std::vector<TaskId> DownstreamClosure(TaskId from) const;

 private:
  std::vector<std::vector<TaskId>> upstream_;
  std::vector<std::vector<TaskId>> downstream_;
  std::vector<TaskId> topo_;
  std::vector<TaskId> roots_;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  std::unordered_map<std::string, TaskId, Hash, std::equal_to<>> index_;
};

// A pipeline ready to run: its spec and graph, shared read-only.
struct Pipeline {
  PipelineSpec spec;
  Dag dag;
  std::optional<Schedule> schedule;  // set when spec.schedule is (and valid)
  const TaskSpec& task(TaskId id) const { return spec.tasks[Index(id)]; }
};
using PipelinePtr = std::shared_ptr<const Pipeline>;

// The tasks that decided how long a run took: the path from a root to a task through the DAG
// whose tasks' `cost` (one per task, in pipeline order; e.g. milliseconds run) adds up to the
// most. Ties go to the task first in the file, then to the upstream first in `needs`.
// Boost.Graph (dag/critical_path.cc).
std::vector<TaskId> CriticalPath(const Dag& dag, std::span<const int64_t> cost);

// Graph output for `kiln graph`.
std::string ToDot(const PipelineSpec& spec);
std::string ToMermaid(const PipelineSpec& spec);

}  // namespace kiln::dag
