#include "run_json.h"

namespace kiln::e2e {

Ran RunJson(const TempDir& dir, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"run", "p.toml", "--output", "json"};
  args.insert(args.end(), extra.begin(), extra.end());
  Ran ran{Kiln(args, dir.path()), nlohmann::json()};
  if (!ran.output.out.empty()) ran.run = nlohmann::json::parse(ran.output.out);
  return ran;
}

std::string TaskStates(const nlohmann::json& run) {
  std::string out;
  for (const auto& t : run["tasks"]) {
    out +=
        (out.empty() ? "" : " ") + t["id"].get<std::string>() + ":" + t["state"].get<std::string>();
  }
  return out;
}

}  // namespace kiln::e2e
