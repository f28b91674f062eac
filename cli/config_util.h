// What the subcommands share: reading kiln.toml and printing diagnostics.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/daemon_config.h"
#include "dag/spec.h"

namespace kiln::cli {

// Reads --config (or the defaults) and applies KILN_DATABASE_URL; the diagnostics are returned.
config::DaemonConfigResult ReadConfig(const std::string& config_path);
// The same, with the errors printed.
std::optional<config::DaemonConfig> LoadConfig(const std::string& config_path);

// Prints diagnostics to stderr, one per line.
void PrintDiagnostics(const std::vector<dag::Diagnostic>& diagnostics);

}  // namespace kiln::cli
