// ToDot and ToMermaid: text renderings of a pipeline's graph for `kiln graph`. They read the spec
// only (no Dag), so they also work on a spec that has not been validated: needs that name no task
// are left out.
#include <algorithm>
#include <map>

#include "dag/graph.h"

namespace kiln::dag {

namespace {

// A DOT double-quoted string.
std::string DotQuote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

// A Mermaid label inside ["..."]: quotes and '#' are written as entity codes.
std::string MermaidLabel(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') {
      out += "#quot;";
    } else if (c == '#') {
      out += "#35;";
    } else {
      out += c == '\n' ? ' ' : c;
    }
  }
  return out + "\"";
}

// Each edge (upstream index, downstream index): downstream tasks in file order, each with its
// needs in the order written; unknown and repeated needs skipped.
std::vector<std::pair<size_t, size_t>> Edges(const PipelineSpec& spec) {
  std::map<std::string_view, size_t> index;
  for (size_t i = 0; i < spec.tasks.size(); ++i) index.emplace(spec.tasks[i].id, i);
  std::vector<std::pair<size_t, size_t>> edges;
  for (size_t i = 0; i < spec.tasks.size(); ++i) {
    std::vector<size_t> seen;
    for (const std::string& need : spec.tasks[i].needs) {
      auto it = index.find(need);
      if (it == index.end()) continue;
      if (std::find(seen.begin(), seen.end(), it->second) != seen.end()) continue;
      seen.push_back(it->second);
      edges.emplace_back(it->second, i);
    }
  }
  return edges;
}

}  // namespace

std::string ToDot(const PipelineSpec& spec) {
  std::string out = "digraph " + DotQuote(spec.name) + " {\n";
  out += "  rankdir=LR;\n";
  out += "  node [shape=box];\n";
  for (const TaskSpec& task : spec.tasks) out += "  " + DotQuote(task.id) + ";\n";
  for (const auto& [up, down] : Edges(spec)) {
    out += "  " + DotQuote(spec.tasks[up].id) + " -> " + DotQuote(spec.tasks[down].id) + ";\n";
  }
  out += "}\n";
  return out;
}

// Mermaid node ids are generated (t0, t1, ...) because task ids such as "end" or ones starting
// with "o" or "x" after an edge would be read as Mermaid syntax; the task id is the label.
std::string ToMermaid(const PipelineSpec& spec) {
  std::string out = "flowchart TD\n";
  for (size_t i = 0; i < spec.tasks.size(); ++i) {
    out += "  t" + std::to_string(i) + "[" + MermaidLabel(spec.tasks[i].id) + "]\n";
  }
  for (const auto& [up, down] : Edges(spec)) {
    out += "  t" + std::to_string(up) + " --> t" + std::to_string(down) + "\n";
  }
  return out;
}

}  // namespace kiln::dag
