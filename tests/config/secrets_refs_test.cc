// {{ secrets.NAME }} in pipeline files: where it may appear and which names are known.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "config/pipeline_loader.h"

using kiln::config::ParsePipeline;

namespace {

using Strings = std::vector<std::string>;

Strings SecretErrors(std::string_view text, const kiln::dag::SecretNames* secrets) {
  Strings out;
  auto result = ParsePipeline(text, "p.toml", kiln::dag::ShellOnly(), secrets);
  for (const auto& d : result.diagnostics) out.push_back(d.ToString());
  CHECK(static_cast<bool>(result.pipeline) == out.empty());
  return out;
}

constexpr std::string_view kUses = R"([pipeline]
name = "p"
[tasks.load]
argv = ["psql", "--password={{ secrets.db_password }}"]
env = { TOKEN = "Bearer {{ secrets.api_token }}", PLAIN = "x" }
)";

}  // namespace

TEST_CASE("secrets declared in kiln.toml may be used in env values and argv") {
  const kiln::dag::SecretNames declared = {"api_token", "db_password"};
  CHECK(SecretErrors(kUses, &declared).empty());
  // A stored version read back is not checked against today's names.
  CHECK(SecretErrors(kUses, nullptr).empty());
}

TEST_CASE("an unknown secret name is a validation error naming the declared ones") {
  const kiln::dag::SecretNames declared = {"db_password"};
  CHECK(SecretErrors(kUses, &declared) ==
        Strings{"p.toml:5:17: tasks.load.env.TOKEN: unknown secret 'api_token' (declared in "
                "kiln.toml [secrets]: db_password)"});
  const kiln::dag::SecretNames none;
  CHECK(SecretErrors(kUses, &none) ==
        Strings{"p.toml:4:17: tasks.load.argv: unknown secret 'db_password' (declared in "
                "kiln.toml [secrets]: none)",
                "p.toml:5:17: tasks.load.env.TOKEN: unknown secret 'api_token' (declared in "
                "kiln.toml [secrets]: none)"});
}

TEST_CASE("secrets are refused in commands, paths and other keys") {
  const kiln::dag::SecretNames declared = {"pw"};
  CHECK(SecretErrors(R"([pipeline]
name = "p"
[tasks.a]
command = "echo {{ secrets.pw }}"
outputs = ["{{ secrets.pw }}.csv"]
)",
                     &declared) ==
        Strings{"p.toml:4:11: tasks.a.command: {{ secrets.pw }} is not allowed here: secrets may "
                "appear in env values, argv and notify webhooks only; pass it in env (e.g. "
                "env.TOKEN = \"{{ secrets.pw }}\") and read $TOKEN",
                "p.toml:5:12: tasks.a.outputs: {{ secrets.pw }} is not allowed here: secrets "
                "may appear in env values, argv and notify webhooks only; pass it in env (e.g. "
                "env.TOKEN = \"{{ secrets.pw }}\") and read $TOKEN"});
}
