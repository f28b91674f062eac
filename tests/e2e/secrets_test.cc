// [secrets] through `kiln serve`: a secret from a file and one from the daemon's environment
// reach a task through env and argv; its log shows "***"; the database (all of it, dumped), the
// API and the run folder hold no trace of either value; an unreadable secret fails its task
// with a reason that names the secret, not a value; `kiln validate --config` knows the names.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

namespace {

constexpr const char* kFileValue = "db-Pa55word-7f3a9c";
constexpr const char* kEnvValue = "tok-Q8mZ2r-e2e";

std::string PipelineText(const std::string& name) {
  return "[pipeline]\nname = \"" + name + R"("
[tasks.use]
argv = ["/bin/sh", "-c", "echo \"pw=$PW\"; printf 'token=%s\n' \"$1\"; printf '%s' \"$PW\" | rev | rev", "sh", "{{ secrets.api_token }}"]
env = { PW = "{{ secrets.db_password }}" }
[tasks.broken]
argv = ["/bin/echo", "{{ secrets.gone }}"]
)";
}

std::string Everything(httplib::Client& client, int64_t run, const std::string& name) {
  const std::string id = std::to_string(run);
  std::string all;
  for (const std::string& path :
       {"/api/v1/runs/" + id, "/api/v1/runs/" + id + "/attempts", "/api/v1/pipelines/" + name,
        "/api/v1/runs/" + id + "/tasks/use/attempts",
        "/api/v1/runs/" + id + "/tasks/broken/attempts", std::string("/api/v1/pipelines")}) {
    auto r = client.Get(path);
    REQUIRE(r);
    CHECK(r->status == 200);
    all += r->body;
  }
  return all;
}

std::string FolderText(const std::filesystem::path& dir) {
  std::string all;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) all += ReadFile(entry.path());
  }
  return all;
}

}  // namespace

TEST_CASE("a secret reaches its task but no log, row, answer or file") {
  TempDir dir;
  const std::string name = Unique("secrets");
  WriteFile(dir / "secrets/db_password", std::string(kFileValue) + "\n");
  WriteFile(dir / "pipelines/p.toml", PipelineText(name));
  DaemonOptions options(dir / "pipelines");
  options.extra_config = "[secrets]\ndb_password = { file = \"" +
                         (dir / "secrets/db_password").string() +
                         "\" }\napi_token = { env = \"KILN_E2E_API_TOKEN\" }\n"
                         "gone = { file = \"" +
                         (dir / "secrets/gone").string() + "\" }\n";
  options.env["KILN_E2E_API_TOKEN"] = kEnvValue;
  Daemon daemon(dir, options);
  auto client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, name);
  REQUIRE(WaitForRunEnd(daemon, run) == "failed");

  // The task had both values (it printed them, the second through rev | rev) ...
  auto log = client.Get("/api/v1/runs/" + std::to_string(run) + "/tasks/use/attempts/1/log");
  REQUIRE(log);
  CHECK(log->status == 200);
  CHECK(log->body == "pw=***\ntoken=***\n***");
  // ... and the one that could not be read failed its task, naming it.
  const json broken = Body(
      client.Get("/api/v1/runs/" + std::to_string(run) + "/tasks/broken/attempts"))["attempts"][0];
  CHECK(broken["state"] == "failed");
  CHECK(broken["reason"] == "could not start: secret 'gone': file '" +
                                (dir / "secrets/gone").string() +
                                "': cannot read file: No such file or directory");

  // No trace anywhere kiln writes or answers.
  std::string api = Everything(client, run, name);
  for (const json& event : ReadEvents(daemon, "run=" + std::to_string(run), [](const json& e) {
         return e["kind"] == "run_state" && e["to"] == "failed";
       })) {
    api += event.dump();
  }
  const auto dump = Exec({"/usr/bin/pg_dump", "--data-only", DatabaseUrl()});
  REQUIRE(dump.code == 0);
  CHECK(dump.out.find(name) != std::string::npos);  // the dump does hold this test's rows
  const std::string files =
      FolderText(daemon.data_dir() / "runs") + FolderText(daemon.data_dir() / "logs");
  for (const char* value : {kFileValue, kEnvValue}) {
    INFO(value);
    CHECK(api.find(value) == std::string::npos);
    CHECK(dump.out.find(value) == std::string::npos);
    CHECK(files.find(value) == std::string::npos);
  }
}

TEST_CASE("kiln validate --config reports secrets kiln.toml does not declare") {
  TempDir dir;
  WriteFile(dir / "p.toml", PipelineText("secrets-validate"));
  WriteFile(dir / "kiln.toml", "[secrets]\ndb_password = { file = \"pw\" }\n");
  auto out =
      Kiln({"validate", "--config", (dir / "kiln.toml").string(), (dir / "p.toml").string()});
  CHECK(out.code == 1);
  const std::string file = (dir / "p.toml").string();
  CHECK(out.err == file +
                       ":4:112: tasks.use.argv: unknown secret 'api_token' (declared in kiln.toml "
                       "[secrets]: db_password)\n" +
                       file +
                       ":7:22: tasks.broken.argv: unknown secret 'gone' (declared in kiln.toml "
                       "[secrets]: db_password)\n2 errors in 1 file\n");
  WriteFile(dir / "kiln.toml",
            "[secrets]\ndb_password = { file = \"pw\" }\napi_token = { env = \"T\" }\n"
            "gone = { env = \"G\" }\n");
  out = Kiln({"validate", "--config", (dir / "kiln.toml").string(), (dir / "p.toml").string()});
  CHECK(out.err == "");
  CHECK(out.code == 0);
}
