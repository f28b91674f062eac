#include "cli/config_util.h"

#include <cstdlib>
#include <iostream>

namespace kiln::cli {

config::DaemonConfigResult ReadConfig(const std::string& config_path) {
  config::DaemonConfigResult read;
  read.config = config::DefaultDaemonConfig();
  if (!config_path.empty()) read = config::LoadDaemonConfig(config_path);
  if (const char* url = std::getenv("KILN_DATABASE_URL"); url && *url) {
    read.config.database_url = url;
  }
  return read;
}

std::optional<config::DaemonConfig> LoadConfig(const std::string& config_path) {
  auto read = ReadConfig(config_path);
  if (!read.diagnostics.empty()) {
    PrintDiagnostics(read.diagnostics);
    return std::nullopt;
  }
  return std::move(read.config);
}

void PrintDiagnostics(const std::vector<dag::Diagnostic>& diagnostics) {
  for (const auto& d : diagnostics) std::cerr << d.ToString() << '\n';
}

}  // namespace kiln::cli
