#include "cli/config_util.h"

#include <cstdlib>
#include <iostream>

namespace kiln::cli {

std::optional<config::DaemonConfig> LoadConfig(const std::string& config_path) {
  config::DaemonConfig cfg = config::DefaultDaemonConfig();
  if (!config_path.empty()) {
    auto loaded = config::LoadDaemonConfig(config_path);
    if (!loaded.diagnostics.empty()) {
      PrintDiagnostics(loaded.diagnostics);
      return std::nullopt;
    }
    cfg = std::move(loaded.config);
  }
  if (const char* url = std::getenv("KILN_DATABASE_URL"); url && *url) cfg.database_url = url;
  return cfg;
}

void PrintDiagnostics(const std::vector<dag::Diagnostic>& diagnostics) {
  for (const auto& d : diagnostics) std::cerr << d.ToString() << '\n';
}

}  // namespace kiln::cli
