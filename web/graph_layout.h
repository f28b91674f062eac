// A pipeline's DAG laid out for drawing, by Graphviz's dot (its C library, in-process): boxes
// for tasks, left to right along the dependencies, and edges as Bézier paths. Coordinates are in
// points with the origin at the top left. Layouts are cached by the pipeline's content hash, so
// each version is laid out once (a 2,000-task pipeline takes about 1 s). Thread-safe: Graphviz
// itself is not, so layouts are made one at a time.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "dag/graph.h"

namespace kiln::web {

struct GraphLayout {
  struct Node {
    std::string id;
    double x = 0, y = 0;  // top left
    double width = 0, height = 0;
  };
  struct Edge {
    std::string from, to;
    std::string path;  // SVG path data: "M x,y C x,y x,y x,y ..."
  };
  std::string version;  // the pipeline's content hash
  double width = 0, height = 0;
  std::vector<Node> nodes;  // in pipeline order
  std::vector<Edge> edges;
};

// The layout of `pipeline`, from the cache or made now.
Result<std::shared_ptr<const GraphLayout>> LayoutOf(const dag::Pipeline& pipeline);

}  // namespace kiln::web
