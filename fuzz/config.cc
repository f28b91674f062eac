// kiln.toml: the limits check, toml++ and every section's reader.
#include "config/daemon_config.h"
#include "fuzz/check.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, size_t size) {
  auto result = kiln::config::ParseDaemonConfig(kiln::fuzz::Text(data, size), "kiln.toml");
  for (const auto& d : result.diagnostics) {
    kiln::fuzz::Check(!d.message.empty(), "every diagnostic says something");
  }
  return 0;
}
