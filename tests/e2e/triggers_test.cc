// Pipeline-completion triggers through a real daemon, from the API and the CLI, and trigger
// cycles refused by kiln validate.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

TEST_CASE("a successful run starts the pipelines that trigger on it, once, with its id") {
  TempDir dir;
  const std::string up = Unique("up"), down = Unique("down"), other = Unique("other");
  WriteFile(dir / "pipelines/up.toml",
            Pipeline(up, "[params]\nfail = 0", "exit {{ params.fail }}"));
  WriteFile(dir / "pipelines/down.toml",
            Pipeline(down, "trigger_on_success = [\"" + up + "\"]",
                     "echo triggered by {{ run.triggered_by }} $KILN_TRIGGERED_BY"));
  WriteFile(dir / "pipelines/other.toml",
            Pipeline(other, "trigger_on_success = [\"" + down + "\"]", "true"));
  Daemon daemon(dir, dir / "pipelines");
  auto op = daemon.Client(kOperatorToken);
  const std::map<std::string, std::string> env = {
      {"KILN_SERVER", "http://127.0.0.1:" + std::to_string(daemon.port())},
      {"KILN_TOKEN", kOperatorToken}};

  // From the CLI: the upstream run succeeds, its downstream starts, and that one's downstream.
  auto out = Kiln({"trigger", up, "--wait", "--output", "json"}, {}, env);
  INFO(out.err);
  REQUIRE(out.code == 0);
  const int64_t up_run = json::parse(out.out)["id"];
  auto created = ReadEvents(daemon, "pipeline=" + other,
                            [](const json& e) { return e["kind"] == "run_created"; });
  const int64_t other_run = created.back()["run"];
  CHECK(WaitForRunEnd(daemon, other_run) == "success");
  const std::string down_run = Sql("select id from runs where pipeline = '" + down +
                                   "' and triggered_by = " + std::to_string(up_run));
  REQUIRE_FALSE(down_run.empty());
  CHECK(Sql("select triggered_by from runs where id = " + std::to_string(other_run)) == down_run);
  json shown = Body(op.Get(("/api/v1/runs/" + down_run).c_str()));
  CHECK(shown["trigger"] == "pipeline");
  CHECK(shown["triggered_by"] == up_run);
  CHECK(shown["created_by"] == "trigger_on_success");
  CHECK(shown["note"] == "started by run " + std::to_string(up_run) + " of '" + up + "'");
  auto log = op.Get(("/api/v1/runs/" + down_run + "/tasks/t/attempts/1/log").c_str());
  REQUIRE(log);
  CHECK(log->body ==
        "triggered by " + std::to_string(up_run) + " " + std::to_string(up_run) + "\n");
  auto show = Kiln({"show", down_run}, {}, env);
  CHECK(show.out.find("trigger pipeline by trigger_on_success") != std::string::npos);
  CHECK(show.out.find("started by the success of run " + std::to_string(up_run)) !=
        std::string::npos);

  // From the API: a failed upstream run starts nothing; a retry that succeeds starts the
  // downstream once.
  json failed = Body(op.Post(("/api/v1/pipelines/" + up + "/runs").c_str(),
                             R"({"params": {"fail": 3}})", "application/json"));
  const int64_t failed_run = failed["id"];
  CHECK(WaitForRunEnd(daemon, failed_run) == "failed");
  CHECK(Sql("select count(*) from runs where triggered_by = " + std::to_string(failed_run)) == "0");
  CHECK(Sql("select count(*) from runs where pipeline = '" + down + "'") == "1");
}

TEST_CASE("kiln validate refuses pipelines that trigger each other in a cycle") {
  TempDir dir;
  WriteFile(dir / "a.toml", Pipeline("cyc-a", "trigger_on_success = [\"cyc-b\"]", "true"));
  WriteFile(dir / "b.toml",
            Pipeline("cyc-b", "trigger_on_success = [\"cyc-a\", \"nope\"]", "true"));
  auto out = Kiln({"validate", dir.path().string()});
  CHECK(out.code == 1);
  const std::string a = (dir / "a.toml").string(), b = (dir / "b.toml").string();
  CHECK(out.err == b +
                       ":3:32: pipeline.trigger_on_success: unknown pipeline 'nope' (pipelines: "
                       "cyc-a, cyc-b)\n" +
                       b +
                       ":3:23: pipeline.trigger_on_success: pipelines trigger each other in "
                       "a cycle: cyc-a -> cyc-b -> cyc-a\n2 errors in 2 files\n");
  // One file alone cannot know the others: only the folder is checked for unknown names.
  CHECK(Kiln({"validate", a}).code == 0);
}

TEST_CASE("kiln validate of a folder refuses a drift trigger naming no pipeline of it") {
  TempDir dir;
  const std::string monitor =
      "[pipeline]\nname = \"watch\"\n[tasks.drift]\nkind = \"drift\"\nreference = \"r.csv\"\n"
      "current = \"c.csv\"\non_drift = \"trigger\"\ntrigger = \"retrain\"\n";
  WriteFile(dir / "watch.toml", monitor);
  auto out = Kiln({"validate", dir.path().string()});
  CHECK(out.code == 1);
  CHECK(out.err == (dir / "watch.toml").string() +
                       ":8:11: tasks.drift.trigger: unknown pipeline 'retrain' (pipelines: "
                       "watch)\n1 error in 1 file\n");
  // With the pipeline it names in the folder, it passes; the file alone cannot know.
  WriteFile(dir / "retrain.toml", Pipeline("retrain", "", "true"));
  CHECK(Kiln({"validate", dir.path().string()}).code == 0);
  CHECK(Kiln({"validate", (dir / "watch.toml").string()}).code == 0);
}
