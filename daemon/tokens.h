// API tokens on the daemon's side: making new ones, the admin token made at
// first start when kiln.toml declares none, and the rule that only loopback may go without.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "config/daemon_config.h"

namespace kiln::daemon {

// A fresh token: "kiln_" followed by 43 base64url characters (256 random bits from the kernel).
Result<std::string> NewToken();

// The tokens the daemon accepts. With tokens in the config, those. Without, the admin token kept
// (as its hash only) in <data_dir>/admin-token.sha256, made on first use: then `fresh` receives
// the token text, for the sign-in URL, the only time it is ever shown, and the file is written
// by SaveFreshToken once the daemon serves (a start that fails before leaves no token behind
// that nobody was shown).
struct DaemonTokens {
  std::vector<config::AuthToken> tokens;
  std::optional<std::string> fresh;
  std::filesystem::path hash_file;  // set when the generated admin token is in use
};
Result<DaemonTokens> LoadDaemonTokens(const config::DaemonConfig& config);
// Writes a fresh token's hash to its file (mode 0600); nothing for a token kept from before.
Status SaveFreshToken(const DaemonTokens& tokens);

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);

}  // namespace kiln::daemon
