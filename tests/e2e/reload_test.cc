// Hot reload: pipeline files added, edited, broken and deleted while the daemon runs.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/sha256.h"
#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

namespace {

// Waits for the next event of `kind` about `pipeline` after event `after`; returns it.
json WaitForEvent(const Daemon& daemon, const std::string& pipeline, const std::string& kind,
                  int64_t after) {
  return ReadEvents(
             daemon, "pipeline=" + pipeline, [&](const json& e) { return e["kind"] == kind; },
             after)
      .back();
}

}  // namespace

TEST_CASE("pipeline files added, edited, broken and deleted take effect while the daemon runs") {
  TempDir dir;
  const std::string a = Unique("hr-a"), b = Unique("hr-b");
  const auto release = (dir / "release").string();
  const std::string v1 = "[pipeline]\nname = \"" + a + "\"\n[tasks.t]\ncommand = \"while [ ! -e " +
                         release + " ]; do sleep 0.02; done; echo first version\"\n";
  WriteFile(dir / "pipelines/a.toml", v1);
  Daemon daemon(dir, dir / "pipelines");
  auto op = daemon.Client(kOperatorToken);

  // A run of the first version is running when the file changes.
  const int64_t old_run = Trigger(op, a);
  int64_t mark = LastEventId();
  const std::string v2 = "[pipeline]\nname = \"" + a +
                         "\"\ndescription = \"second\"\n[tasks.t]\ncommand = \"echo second "
                         "version\"\n";
  WriteFile(dir / "pipelines/a.toml", v2);
  json loaded = WaitForEvent(daemon, a, "pipeline_loaded", mark);
  CHECK(loaded["actor"] == "reload");
  CHECK(loaded["detail"]["version"] == kiln::Sha256Hex(v2));
  CHECK(Body(op.Get(("/api/v1/pipelines/" + a).c_str()))["description"] == "second");
  // The running run finishes on its own version; a new run uses the new one.
  WriteFile(release, "");
  CHECK(WaitForRunEnd(daemon, old_run) == "success");
  const int64_t new_run = Trigger(op, a);
  CHECK(WaitForRunEnd(daemon, new_run) == "success");
  CHECK(Sql("select version_hash from runs where id = " + std::to_string(old_run)) ==
        kiln::Sha256Hex(v1));
  CHECK(Sql("select version_hash from runs where id = " + std::to_string(new_run)) ==
        kiln::Sha256Hex(v2));
  auto log = [&](int64_t run) {
    auto r = op.Get(("/api/v1/runs/" + std::to_string(run) + "/tasks/t/attempts/1/log").c_str());
    REQUIRE(r);
    return r->body;
  };
  CHECK(log(old_run) == "first version\n");
  CHECK(log(new_run) == "second version\n");

  // A new file with a schedule starts firing.
  mark = LastEventId();
  WriteFile(dir / "pipelines/sub/b.toml", "[pipeline]\nname = \"" + b +
                                              "\"\nschedule = \"every 1s\"\n[tasks.t]\n"
                                              "command = \"true\"\n");
  CHECK(WaitForEvent(daemon, b, "pipeline_loaded", mark)["detail"]["file"] ==
        (dir / "pipelines/sub/b.toml").string());
  WaitForEvent(daemon, b, "run_created", mark);

  // A broken edit keeps the last good version and shows the errors.
  mark = LastEventId();
  WriteFile(dir / "pipelines/a.toml", v2 + "[tasks.u]\nneeds = [\"nope\"]\ncommand = \"true\"\n");
  json failed = WaitForEvent(daemon, a, "pipeline_load_failed", mark);
  const std::string error = (dir / "pipelines/a.toml").string() +
                            ":7:10: tasks.u.needs: unknown task 'nope' (defined tasks: t, u)";
  CHECK(failed["detail"]["errors"] == json::array({error}));
  CHECK(failed["detail"]["version_in_use"] == kiln::Sha256Hex(v2));
  json shown = Body(op.Get(("/api/v1/pipelines/" + a).c_str()));
  CHECK(shown["load_error"] == error);
  CHECK(shown["version"] == kiln::Sha256Hex(v2));
  CHECK(WaitForRunEnd(daemon, Trigger(op, a)) == "success");

  // A deleted file's pipeline is gone.
  mark = LastEventId();
  std::filesystem::remove(dir / "pipelines/sub/b.toml");
  WaitForEvent(daemon, b, "pipeline_removed", mark);
  CHECK(op.Get(("/api/v1/pipelines/" + b).c_str())->status == 404);
  // Its runs are still shown and drawn, but not retried: a retry runs the version in use.
  json grid = Body(op.Get(("/api/v1/pipelines/" + b + "/grid").c_str()));
  CHECK(grid["tasks"] == json::array({"t"}));
  REQUIRE_FALSE(grid["runs"].empty());
  const json b_run = grid["runs"][0];
  auto graph = op.Get(
      ("/api/v1/pipelines/" + b + "/graph?version=" + b_run["version"].get<std::string>()).c_str());
  REQUIRE(graph);
  CHECK(graph->status == 200);
  CHECK(Body(graph)["nodes"][0]["id"] == "t");
  CHECK(op.Get(("/api/v1/pipelines/" + b + "/graph").c_str())->status == 404);
  CHECK(op.Get(("/api/v1/pipelines/" + Unique("none") + "/grid").c_str())->status == 404);
  WaitForRunEnd(daemon, b_run["id"].get<int64_t>());
  auto retried = op.Post(("/api/v1/runs/" + b_run["id"].dump() + "/retry").c_str(),
                         R"({"mode": "failed"})", "application/json");
  REQUIRE(retried);
  CHECK(retried->status == 409);
  CHECK(Body(retried)["error"]["message"] ==
        "run " + b_run["id"].dump() + " cannot be retried: pipeline '" + b +
            "' is not loaded (its file was deleted or renamed), and a retry runs the pipeline's "
            "current version");
  CHECK(daemon.Stop() == 0);
}

TEST_CASE("a file broken while the daemon was stopped runs its last good version after a restart") {
  TempDir dir;
  const std::string a = Unique("lg-a"), b = Unique("lg-b"), c = Unique("lg-c");
  auto good = [](const std::string& name, const std::string& word) {
    return "[pipeline]\nname = \"" + name + "\"\n[tasks.t]\ncommand = \"echo " + word + "\"\n";
  };
  const std::string a1 = good(a, "a-one"), a2 = good(a, "a-two"), b1 = good(b, "b-one");
  WriteFile(dir / "pipelines/a.toml", a1);
  WriteFile(dir / "pipelines/b.toml", b1);
  WriteFile(dir / "pipelines/c.toml", "[pipeline]\nname = \"" + c + "\"\n[tasks.t]\n");
  {
    Daemon first(dir, dir / "pipelines");
    // The last version loaded is the one kept, not the first or the last run.
    auto op = first.Client(kOperatorToken);
    CHECK(WaitForRunEnd(first, Trigger(op, a)) == "success");
    const int64_t mark = LastEventId();
    WriteFile(dir / "pipelines/a.toml", a2);
    WaitForEvent(first, a, "pipeline_loaded", mark);
    CHECK(first.Stop() == 0);
  }
  // Broken while no daemon watched: a with a wrong field, b past reading its name.
  WriteFile(dir / "pipelines/a.toml", a2 + "retries = \"x\"\n");
  WriteFile(dir / "pipelines/b.toml", "[pipeline\n" + b1);
  Daemon second(dir, dir / "pipelines");
  auto op = second.Client(kOperatorToken);
  json shown = Body(op.Get(("/api/v1/pipelines/" + a).c_str()));
  CHECK(shown["version"] == kiln::Sha256Hex(a2));
  CHECK(shown["load_error"] == (dir / "pipelines/a.toml").string() +
                                   ":5:11: tasks.t.retries: expected an integer, got a string");
  const int64_t run_a = Trigger(op, a);
  CHECK(WaitForRunEnd(second, run_a) == "success");
  auto r = op.Get(("/api/v1/runs/" + std::to_string(run_a) + "/tasks/t/attempts/1/log").c_str());
  REQUIRE(r);
  CHECK(r->body == "a-two\n");
  // Found by its file: listed under its pipeline's name again.
  json b_shown = Body(op.Get(("/api/v1/pipelines/" + b).c_str()));
  CHECK(b_shown["version"] == kiln::Sha256Hex(b1));
  CHECK(b_shown["load_error"].get<std::string>().find("b.toml:1:") != std::string::npos);
  CHECK(WaitForRunEnd(second, Trigger(op, b)) == "success");
  // A file that never loaded has nothing to fall back on.
  auto never = op.Post(("/api/v1/pipelines/" + c + "/runs").c_str(), "{}", "application/json");
  REQUIRE(never);
  CHECK(never->status == 409);
  // Mended, it loads as usual.
  const int64_t mark = LastEventId();
  WriteFile(dir / "pipelines/a.toml", a1);
  CHECK(WaitForEvent(second, a, "pipeline_loaded", mark)["detail"]["version"] ==
        kiln::Sha256Hex(a1));
  CHECK(Body(op.Get(("/api/v1/pipelines/" + a).c_str()))["load_error"].is_null());
  CHECK(second.Stop() == 0);
}
