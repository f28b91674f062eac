#include "config/config_changes.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using kiln::config::DaemonConfig;
using kiln::config::DiffDaemonConfig;
using kiln::config::ParseDaemonConfig;

namespace {

using Strings = std::vector<std::string>;

DaemonConfig Read(const std::string& text) {
  auto read = ParseDaemonConfig(text, "/etc/kiln/kiln.toml");
  REQUIRE(read.diagnostics.empty());
  return read.config;
}

const std::string kToken = "[[auth.tokens]]\nname = \"ci\"\nrole = \"operator\"\nsha256 = \"" +
                           std::string(64, 'a') + "\"\n";

}  // namespace

TEST_CASE("the same file, or the same values moved around, changes nothing") {
  const std::string text =
      "[pools]\ngpu = 2\n[[notify]]\non = [\"failed\"]\nwebhook = "
      "\"https://hooks.example/x\"\n" +
      kToken;
  CHECK(DiffDaemonConfig(Read(text), Read(text)).empty());
  // Comments and blank lines move every table's position: not a change.
  CHECK(DiffDaemonConfig(Read(text), Read("# hello\n\n" + text)).empty());
}

TEST_CASE("keys applied at once and keys read only at start are told apart, in a fixed order") {
  const DaemonConfig running = Read("[executor]\nmax_parallel_tasks = 4\n" + kToken);
  const DaemonConfig next = Read(
      "public_url = \"https://kiln.example/\"\n"
      "[server]\nlisten = \"127.0.0.1:9001\"\n"
      "[executor]\nmax_parallel_tasks = 8\nkill_grace = \"3s\"\nmode = \"both\"\n"
      "worker_pools = [\"gpu\"]\n"
      "[pools]\ngpu = 1\n"
      "[daemon]\non_stop = \"cancel\"\nlease = \"10s\"\n"
      "[retention]\nruns = \"7d\"\n"
      "[secrets]\nHOOK = { env = \"HOOK\" }\n"
      "[[notify]]\non = [\"failed\"]\nwebhook = \"https://hooks.example/{{ secrets.HOOK }}\"\n");
  auto changes = DiffDaemonConfig(running, next);
  // The webhook names a secret the running daemon does not have: it waits for the restart too.
  CHECK(changes.applied ==
        Strings{"auth.tokens", "pools", "public_url", "retention", "daemon.on_stop"});
  CHECK(changes.restart_needed == Strings{"server.listen", "executor.kill_grace", "executor.mode",
                                          "executor.worker_pools", "daemon.lease", "secrets",
                                          "notify"});
}

TEST_CASE("a webhook naming a secret the running daemon has is applied") {
  const std::string secrets = "[secrets]\nHOOK = { env = \"HOOK\" }\n";
  const DaemonConfig running = Read(secrets);
  auto changes =
      DiffDaemonConfig(running, Read(secrets + "[[notify]]\non = [\"failed\"]\nwebhook = "
                                               "\"https://hooks.example/{{ secrets.HOOK }}\"\n"));
  CHECK(changes.applied == Strings{"notify"});
  CHECK(changes.restart_needed.empty());
}
