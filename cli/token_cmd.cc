// `kiln token new`: prints a fresh API token and the kiln.toml lines that declare it.
#include <iostream>

#include "cli/commands.h"
#include "common/sha256.h"
#include "config/daemon_config.h"
#include "daemon/tokens.h"

namespace kiln::cli {

int TokenNew(const std::string& name, const std::string& role) {
  // The same rules as kiln.toml, so that the printed lines always load.
  std::string hash(64, '0');
  std::string text = "[[auth.tokens]]\nname = \"" + name + "\"\nrole = \"" + role +
                     "\"\nsha256 = \"" + hash + "\"\n";
  auto check = config::ParseDaemonConfig(text, "token");
  if (!check.diagnostics.empty()) {
    for (const auto& d : check.diagnostics) std::cerr << "kiln: " << d.message << '\n';
    return 2;
  }
  auto token = daemon::NewToken();
  if (!token.ok()) {
    std::cerr << "kiln: " << token.message() << '\n';
    return 1;
  }
  std::cout << *token << "\n\n"
            << "# Add to kiln.toml (only the hash is stored; keep the token above secret):\n"
            << "[[auth.tokens]]\nname = \"" << name << "\"\nrole = \"" << role << "\"\nsha256 = \""
            << Sha256Hex(*token) << "\"\n";
  return 0;
}

}  // namespace kiln::cli
