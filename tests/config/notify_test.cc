// [[notify]] and sla in pipeline files and kiln.toml.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "config/daemon_config.h"
#include "config/pipeline_loader.h"

using kiln::config::ParsePipeline;

namespace {

using Strings = std::vector<std::string>;

Strings NotifyErrors(std::string_view text, const kiln::dag::SecretNames* secrets = nullptr) {
  Strings out;
  auto result = ParsePipeline(text, "p.toml", kiln::dag::ShellOnly(), secrets);
  for (const auto& d : result.diagnostics) out.push_back(d.ToString());
  CHECK(static_cast<bool>(result.pipeline) == out.empty());
  return out;
}

constexpr std::string_view kHead =
    "[pipeline]\nname = \"p\"\nsla = \"2h\"\n[tasks.a]\ncommand = \"true\"\n";

}  // namespace

TEST_CASE("notify tables and the sla are read with their events and format") {
  auto r = ParsePipeline(std::string(kHead) + R"([[notify]]
on = ["failed", "sla_missed"]
webhook = "https://hooks.example.com/T000/{{ secrets.slack_path }}"
format = "slack"
[[notify]]
on = ["success"]
webhook = "http://gateway/{{ pipeline.name }}/{{ run.id }}"
)",
                         "p.toml");
  REQUIRE(r.pipeline);
  const auto& spec = r.pipeline->spec;
  CHECK(spec.sla == std::chrono::hours(2));
  REQUIRE(spec.notify.size() == 2);
  CHECK(spec.notify[0].on == Strings{"failed", "sla_missed"});
  CHECK(spec.notify[0].format == "slack");
  CHECK(spec.notify[1].format == "json");
  CHECK(spec.notify[1].webhook == "http://gateway/{{ pipeline.name }}/{{ run.id }}");
}

TEST_CASE("notify tables and the sla are checked") {
  const kiln::dag::SecretNames declared = {"slack_path"};
  CHECK(NotifyErrors(std::string(kHead) + R"([[notify]]
on = ["failed", "paged", "failed"]
webhook = "ftp://x"
format = "xml"
[[notify]]
webhook = "https://x/{{ params.region }}/{{ task.id }}/{{ params.region }}"
[[notify]]
on = ["retry"]
webhook = "https://x/{{ secrets.other }}"
)",
                     &declared) ==
        Strings{"p.toml:7:6: notify[0].on: unknown event 'paged' (accepted: success, failed, "
                "cancelled, sla_missed, retry)",
                "p.toml:7:6: notify[0].on: 'failed' is listed twice",
                "p.toml:8:11: notify[0].webhook: 'ftp://x' is not an http:// or https:// URL",
                "p.toml:9:10: notify[0].format: unknown format 'xml' (accepted: json, slack)",
                "p.toml:10:1: notify[1]: missing on; a [[notify]] needs on = [\"failed\", ...] "
                "and webhook = \"https://...\"",
                "p.toml:11:11: notify[1].webhook: unknown template name 'params.region' (a "
                "webhook may use secrets.NAME, pipeline.name and run.id)",
                "p.toml:11:11: notify[1].webhook: unknown template name 'task.id' (a "
                "webhook may use secrets.NAME, pipeline.name and run.id)",
                "p.toml:14:11: notify[2].webhook: unknown secret 'other' (declared in kiln.toml "
                "[secrets]: slack_path)"});
  CHECK(NotifyErrors("[pipeline]\nname = \"p\"\nsla = \"0s\"\n[tasks.a]\ncommand = \"true\"\n") ==
        Strings{"p.toml:3:7: pipeline.sla: must be above 0, e.g. \"2h\""});
}

TEST_CASE("kiln.toml's notify tables apply to every pipeline and name its secrets") {
  auto ok = kiln::config::ParseDaemonConfig(
      "public_url = \"https://kiln.example.com/\"\n[secrets]\nhook = { env = \"HOOK\" }\n"
      "[[notify]]\non = [\"failed\"]\nwebhook = \"https://hooks/{{ secrets.hook }}\"\n",
      "kiln.toml");
  REQUIRE(ok.diagnostics.empty());
  CHECK(ok.config.public_url == "https://kiln.example.com/");
  REQUIRE(ok.config.notify.size() == 1);
  CHECK(ok.config.notify[0].on == Strings{"failed"});
  auto bad = kiln::config::ParseDaemonConfig(
      "[[notify]]\non = [\"failed\"]\nwebhook = \"https://hooks/{{ secrets.nope }}\"\n",
      "kiln.toml");
  REQUIRE(bad.diagnostics.size() == 1);
  CHECK(bad.diagnostics[0].ToString() ==
        "kiln.toml:3:11: notify[0].webhook: unknown secret 'nope'; declare it under [secrets]");
}
