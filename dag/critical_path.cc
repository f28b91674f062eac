// The critical path of a run: Boost.Graph's shortest paths on a DAG, with the comparison turned
// around so that they are the longest paths (every task's cost on its incoming edges).
#include <algorithm>
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/dag_shortest_paths.hpp>
#include <functional>
#include <limits>

#include "dag/graph.h"

namespace kiln::dag {

std::vector<TaskId> CriticalPath(const Dag& dag, std::span<const int64_t> cost) {
  const size_t n = dag.size();
  KILN_CHECK(cost.size() == n);
  if (n == 0) return {};
  using Graph =
      boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS, boost::no_property,
                            boost::property<boost::edge_weight_t, int64_t>>;
  // Vertex n stands before every root, so that one search finds every path.
  Graph g(n + 1);
  for (TaskId root : dag.roots()) boost::add_edge(n, Index(root), cost[Index(root)], g);
  for (size_t i = 0; i < n; ++i) {
    for (TaskId down : dag.downstream(static_cast<TaskId>(i))) {
      boost::add_edge(i, Index(down), cost[Index(down)], g);
    }
  }
  std::vector<int64_t> length(n + 1);
  boost::dag_shortest_paths(g, n,
                            boost::distance_map(length.data())
                                .distance_compare(std::greater<int64_t>())
                                .distance_inf(std::numeric_limits<int64_t>::min())
                                .distance_zero(int64_t{0}));
  size_t end = 0;
  for (size_t i = 1; i < n; ++i) {
    if (length[i] > length[end]) end = i;
  }
  // Back from the end through the upstream that the length came from: the first of its needs
  // among equals (the search's own predecessors depend on its visiting order).
  std::vector<TaskId> path = {static_cast<TaskId>(end)};
  for (size_t v = end;;) {
    const int64_t before = length[v] - cost[v];
    auto up = dag.upstream(static_cast<TaskId>(v));
    auto from =
        std::find_if(up.begin(), up.end(), [&](TaskId u) { return length[Index(u)] == before; });
    if (from == up.end()) break;
    v = Index(*from);
    path.push_back(*from);
  }
  std::reverse(path.begin(), path.end());
  return path;
}

}  // namespace kiln::dag
