#include "dag/triggers.h"

#include <algorithm>
#include <functional>
#include <set>

namespace kiln::dag {

std::optional<std::vector<std::string>> FindTriggerCycle(
    const std::map<std::string, std::vector<std::string>>& trigger_on_success) {
  // Edges upstream -> downstream: "a -> b" means a's success starts b.
  std::map<std::string, std::vector<std::string>> starts;
  for (const auto& [downstream, upstreams] : trigger_on_success) {
    for (const std::string& up : upstreams) starts[up].push_back(downstream);
  }
  for (auto& [name, next] : starts) std::sort(next.begin(), next.end());
  enum Mark { kNew, kOnPath, kDone };
  std::map<std::string, Mark> mark;
  std::vector<std::string> path;
  std::optional<std::vector<std::string>> cycle;
  std::function<bool(const std::string&)> visit = [&](const std::string& name) {
    mark[name] = kOnPath;
    path.push_back(name);
    if (auto it = starts.find(name); it != starts.end()) {
      for (const std::string& next : it->second) {
        Mark m = mark.count(next) ? mark[next] : kNew;
        if (m == kOnPath) {
          auto from = std::find(path.begin(), path.end(), next);
          cycle = std::vector<std::string>(from, path.end());
          cycle->push_back(next);
          return true;
        }
        if (m == kNew && visit(next)) return true;
      }
    }
    path.pop_back();
    mark[name] = kDone;
    return false;
  };
  for (const auto& [name, next] : starts) {
    if (!mark.count(name) && visit(name)) return cycle;
  }
  return std::nullopt;
}

std::vector<Diagnostic> CheckTriggers(std::span<const PipelineSpec* const> specs,
                                      bool unknown_is_error) {
  std::vector<Diagnostic> out;
  std::map<std::string, const PipelineSpec*> by_name;
  for (const PipelineSpec* spec : specs) by_name.emplace(spec->name, spec);
  std::map<std::string, std::vector<std::string>> edges;
  auto item_loc = [](const PipelineSpec& spec, size_t i) {
    const std::string key = "pipeline.trigger_on_success[" + std::to_string(i) + "]";
    if (auto it = spec.locs.find(key); it != spec.locs.end()) return it->second;
    if (auto it = spec.locs.find("pipeline.trigger_on_success"); it != spec.locs.end()) {
      return it->second;
    }
    return SourceLoc{};
  };
  for (const PipelineSpec* spec : specs) {
    for (size_t i = 0; i < spec->trigger_on_success.size(); ++i) {
      const std::string& up = spec->trigger_on_success[i];
      if (by_name.count(up)) {
        edges[spec->name].push_back(up);
      } else if (unknown_is_error) {
        std::string names;
        for (const auto& [name, s] : by_name) names += (names.empty() ? "" : ", ") + name;
        out.push_back({spec->file.string(), item_loc(*spec, i), "pipeline.trigger_on_success",
                       "unknown pipeline '" + up + "' (pipelines: " + names + ")"});
      }
    }
  }
  if (auto cycle = FindTriggerCycle(edges)) {
    std::string text;
    for (const std::string& name : *cycle) text += (text.empty() ? "" : " -> ") + name;
    // Reported where the cycle closes: in the pipeline the first one starts, at its item naming
    // the first one.
    const PipelineSpec& closer = *by_name.at((*cycle)[1]);
    size_t item = 0;
    for (size_t i = 0; i < closer.trigger_on_success.size(); ++i) {
      if (closer.trigger_on_success[i] == (*cycle)[0]) item = i;
    }
    out.push_back({closer.file.string(), item_loc(closer, item), "pipeline.trigger_on_success",
                   "pipelines trigger each other in a cycle: " + text});
  }
  return out;
}

}  // namespace kiln::dag
