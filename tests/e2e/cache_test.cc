// cache = true through `kiln serve`, its tasks each running as a user of their run's own: a
// second identical run reuses the first one's outputs without running the task and says so; an
// invalidation over the CLI or other inputs run it again.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

namespace {

constexpr const char* kFeatures = R"([pipeline]
name = "features"
max_active_runs = 4
[tasks.build]
command = "echo computing; cp data/in.csv {{ run.dir }}/features.csv; echo built >> {{ run.dir }}/features.csv"
inputs = ["data/in.csv"]
outputs = ["{{ run.dir }}/features.csv"]
cache = true
[tasks.use]
needs = ["build"]
command = "cat {{ run.dir }}/features.csv"
)";

json Attempt(httplib::Client& client, int64_t run, const std::string& task) {
  const json attempts =
      Body(client.Get("/api/v1/runs/" + std::to_string(run) + "/tasks/" + task + "/attempts"));
  REQUIRE(attempts["attempts"].size() == 1);
  return attempts["attempts"][0];
}

std::string Log(const Daemon& daemon, int64_t run, const std::string& task) {
  return ReadFile(daemon.data_dir() /
                  ("logs/features/" + std::to_string(run) + "/" + task + ".1.log"));
}

int64_t RunOnce(Daemon& daemon) {
  auto client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, "features");
  REQUIRE(WaitForRunEnd(daemon, run) == "success");
  return run;
}

}  // namespace

TEST_CASE("a second identical run reuses the cached outputs until they are invalidated") {
  TempDir dir;
  WriteFile(dir / "pipelines/data/in.csv", "a,b\n1,2\n");
  WriteFile(dir / "pipelines/features.toml", kFeatures);
  Daemon daemon(dir, dir / "pipelines");
  auto viewer = daemon.Client(kViewerToken);

  // The first run computes, and its output is kept by content.
  const int64_t first = RunOnce(daemon);
  CHECK(Log(daemon, first, "build") ==
        "kiln cache: miss (no earlier success of this task with the same command, environment "
        "and params); running the task\ncomputing\n");
  CHECK(Attempt(viewer, first, "build")["reason"] == "exit code 0");
  const std::string content = "a,b\n1,2\nbuilt\n";
  CHECK(Log(daemon, first, "use") == content);

  // The second reuses it: the command does not run, the output is in place, the attempt names
  // the run it came from.
  const int64_t second = RunOnce(daemon);
  CHECK(Log(daemon, second, "build") == "kiln cache: hit: the outputs of run " +
                                            std::to_string(first) +
                                            " (task build, attempt 1) are in place; the task is "
                                            "not run\n");
  const json hit = Attempt(viewer, second, "build");
  CHECK(hit["state"] == "success");
  CHECK(hit["reason"] ==
        "cache hit: the outputs of run " + std::to_string(first) + " (task build, attempt 1)");
  CHECK(hit["results"]["cache"]["hit"] == json{{"run", first}, {"task", "build"}, {"attempt", 1}});
  CHECK(
      hit["results"]["outputs"][0]["path"] ==
      (daemon.data_dir() / ("runs/features/" + std::to_string(second) + "/features.csv")).string());
  CHECK(Log(daemon, second, "use") == content);

  // Only an operator invalidates; then the task runs again.
  auto denied = viewer.Post("/api/v1/pipelines/features/cache/invalidate", "{}", kJson);
  REQUIRE(denied);
  CHECK(denied->status == 403);
  const std::map<std::string, std::string> env = {
      {"KILN_SERVER", "http://127.0.0.1:" + std::to_string(daemon.port())},
      {"KILN_TOKEN", kOperatorToken}};
  auto invalidated = Kiln({"cache", "invalidate", "features", "--task", "build"}, {}, env);
  CHECK(invalidated.code == 0);
  CHECK(invalidated.out == "features task build: 2 cached results forgotten\n");
  auto unknown = Kiln({"cache", "invalidate", "nosuch"}, {}, env);
  CHECK(unknown.code == 1);
  CHECK(unknown.err.find("pipeline 'nosuch' not found") != std::string::npos);
  // A typo in the task is said, not "0 forgotten".
  auto typo = Kiln({"cache", "invalidate", "features", "--task", "biuld"}, {}, env);
  CHECK(typo.code == 1);
  CHECK(typo.err == "kiln: pipeline 'features' has no task 'biuld' (its tasks: build, use)\n");
  const int64_t third = RunOnce(daemon);
  CHECK(Log(daemon, third, "build").ends_with("running the task\ncomputing\n"));
  CHECK(Sql("select count(*) from events where kind = 'cache_invalidated' and pipeline = "
            "'features' and actor = 'operator' and detail->>'attempts' = '2'") == "1");

  // Other inputs: the task runs again.
  WriteFile(dir / "pipelines/data/in.csv", "a,b\n1,3\n");
  const int64_t fourth = RunOnce(daemon);
  CHECK(Log(daemon, fourth, "build") ==
        "kiln cache: miss (no earlier success read these inputs); running the task\n"
        "computing\n");
  CHECK(Log(daemon, fourth, "use") == "a,b\n1,3\nbuilt\n");
}

TEST_CASE("kiln validate refuses a cache that a hit could not honour") {
  TempDir dir;
  WriteFile(dir / "p.toml", R"([pipeline]
name = "p"
[tasks.score]
command = "true"
outputs = ["{{ run.dir }}/model.bin"]
metrics = "{{ run.dir }}/metrics.json"
cache = true
[tasks.check]
kind = "check"
data = "data.csv"
rows = { min = 1 }
outputs = ["data.csv"]
cache = true
)");
  auto r = Kiln({"validate", "p.toml"}, dir.path());
  CHECK(r.code == 1);
  CHECK(r.err ==
        "p.toml:7:9: tasks.score.cache: cache = true with metrics: list the metrics file "
        "'{{ run.dir }}/metrics.json' in outputs too, so that a cache hit puts it back\n"
        "p.toml:13:9: tasks.check.cache: cache = true is for shell tasks; a task of kind 'check' "
        "decides on every run (its report is not cached)\n"
        "2 errors in 1 file\n");
}
