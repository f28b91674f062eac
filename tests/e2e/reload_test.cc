// Hot reload: pipeline files added, edited, broken and deleted while the daemon runs.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

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

TEST_CASE("a pipeline file written while the daemon starts, before the folder is watched, loads") {
  TempDir dir;
  const std::string p = Unique("start-edit");
  WriteFile(dir / "pipelines/p.toml", Pipeline(p, "description = \"first\"\n"));
  { Daemon first(dir, dir / "pipelines"); }  // the schema, for the lock below

  // The next start reads the folder, then waits for a table a session holds; the file is
  // written meanwhile, and the session ends.
  const std::string locker = "kiln-test-locker-" + p;
  const std::string end_lock =
      "select pg_terminate_backend(pid) from pg_stat_activity where application_name = '" + locker +
      "'";
  std::atomic<bool> announced{false};
  bool written_before_announced = false;
  std::exception_ptr failed;
  std::thread lock([&] {
    Exec({"/usr/bin/psql", DatabaseUrl() + "&application_name=" + locker, "-c",
          "begin; lock table runs in access exclusive mode; select pg_sleep(600);"});
  });
  std::thread edit([&] {
    try {
      WaitFor(
          [&] {
            return Sql("select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid "
                       "where not l.granted and l.locktype = 'relation' and l.relation = "
                       "'runs'::regclass and a.application_name <> '" +
                       locker + "'") != "0";
          },
          "the daemon's start waiting for the locked table");
      WriteFile(dir / "pipelines/p.toml", Pipeline(p, "description = \"second\"\n"));
      written_before_announced = !announced;
    } catch (...) {
      failed = std::current_exception();
    }
    Sql(end_lock);
  });
  // Whatever fails below, the session ends and the threads are joined before the test unwinds.
  struct Joiner {
    std::function<void()> stop;
    std::thread& a;
    std::thread& b;
    ~Joiner() {
      try {
        stop();
      } catch (...) {
      }
      if (a.joinable()) a.join();
      if (b.joinable()) b.join();
    }
  } joiner{[&] { Sql(end_lock); }, edit, lock};
  WaitFor(
      [&] {
        return Sql("select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid "
                   "where l.granted and l.mode = 'AccessExclusiveLock' and a.application_name = '" +
                   locker + "'") != "0";
      },
      "the table locked");
  Daemon daemon(dir, dir / "pipelines");
  announced = true;
  edit.join();
  lock.join();
  if (failed) std::rethrow_exception(failed);
  // Written before the daemon printed its address, so before it watched the folder.
  CHECK(written_before_announced);
  auto op = daemon.Client(kOperatorToken);
  WaitFor(
      [&] { return Body(op.Get(("/api/v1/pipelines/" + p).c_str()))["description"] == "second"; },
      "the version written during the start loaded");
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

namespace {

// The test daemons' kiln.toml (tests/e2e/daemon.cc) with `tokens` as its [[auth.tokens]] (name,
// role, secret) and `more` before them.
std::string KilnToml(const std::string& more,
                     const std::vector<std::tuple<std::string, std::string, std::string>>& tokens) {
  std::string text = "[daemon]\non_stop = \"cancel\"\nlease = \"30s\"\n" + more;
  for (const auto& [name, role, secret] : tokens) {
    text += "\n[[auth.tokens]]\nname = \"" + name + "\"\nrole = \"" + role + "\"\nsha256 = \"" +
            kiln::Sha256Hex(secret) + "\"\n";
  }
  return text;
}

// The value of a metric without labels in /metrics.
std::string Metric(httplib::Client& client, const std::string& name) {
  auto r = client.Get("/metrics");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  const std::string line = "\n" + name + " ";
  const size_t at = r->body.find(line);
  REQUIRE(at != std::string::npos);
  const size_t from = at + line.size();
  return r->body.substr(from, r->body.find('\n', from) - from);
}

int Status(httplib::Client& client, const std::string& path) {
  auto r = client.Get(path.c_str());
  REQUIRE(r);
  return r->status;
}

}  // namespace

TEST_CASE(
    "kiln.toml reloaded while the daemon runs: tokens and pools at once, the rest named, "
    "a broken file changes nothing") {
  TempDir dir;
  const std::string p = Unique("cfg-reload");
  const auto release = (dir / "release").string();
  const std::string wait = "while [ ! -e " + release + " ]; do sleep 0.02; done";
  WriteFile(dir / "pipelines/p.toml",
            "[pipeline]\nname = \"" + p + "\"\n[tasks.a]\npool = \"narrow\"\ncommand = \"" + wait +
                "\"\n[tasks.b]\npool = \"narrow\"\ncommand = \"" + wait + "\"\n");
  DaemonOptions options(dir / "pipelines");
  options.extra_config = "[pools]\nnarrow = 1\n";
  Daemon daemon(dir, options);
  auto op = daemon.Client(kOperatorToken);
  auto viewer = daemon.Client(kViewerToken);
  const std::string fresh_token = "kiln_test_fresh_0123456789";
  auto fresh = daemon.Client(fresh_token);
  CHECK(Status(fresh, "/api/v1/pipelines") == 401);

  // The start's read counts as the first load.
  const int64_t started = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  CHECK(Metric(op, "kiln_config_last_reload_successful") == "1");
  const int64_t loaded =
      std::stoll(Metric(op, "kiln_config_last_reload_success_timestamp_seconds"));
  CHECK(loaded > started - 60);
  CHECK(loaded <= started);

  // One slot: one task runs, the other waits for it.
  const int64_t run = Trigger(op, p);
  WaitFor(
      [&] { return States(run) == "a:running b:queued" || States(run) == "a:queued b:running"; },
      "one task running and one queued");

  // Two slots, the viewer's token gone, a new one; and a key read only at start.
  const std::vector<std::tuple<std::string, std::string, std::string>> next_tokens = {
      {"operator", "operator", kOperatorToken},
      {"admin", "admin", kAdminToken},
      {"fresh", "viewer", fresh_token}};
  WriteFile(dir / "kiln.toml",
            KilnToml("[pools]\nnarrow = 2\n[executor]\nkill_grace = \"3s\"\n", next_tokens));
  auto asked = op.Post("/api/v1/reload", "{}", kJson);
  REQUIRE(asked);
  CHECK(asked->status == 202);
  CHECK(Body(asked) == json{{"reload", "asked of every daemon on the database"},
                            {"config",
                             {{"file", (dir / "kiln.toml").string()},
                              {"applied", {"auth.tokens", "pools"}},
                              {"restart_needed", {"executor.kill_grace"}},
                              {"refused", json::array()}}}});
  // In effect when the answer came: the waiting task has started, the tokens have changed.
  WaitFor([&] { return States(run) == "a:running b:running"; }, "both tasks running");
  CHECK(Status(viewer, "/api/v1/pipelines") == 401);
  CHECK(Status(fresh, "/api/v1/pipelines") == 200);
  auto forbidden = fresh.Post("/api/v1/reload", "{}", kJson);
  CHECK(forbidden->status == 403);

  // A pool left out while its tasks run is refused; the rest of the file applies.
  WriteFile(dir / "kiln.toml",
            KilnToml("[executor]\nkill_grace = \"3s\"\n[daemon.x]\n", next_tokens));
  auto broken = op.Post("/api/v1/reload", "{}", kJson);
  REQUIRE(broken);
  CHECK(broken->status == 409);
  CHECK(Body(broken)["error"]["message"] ==
        (dir / "kiln.toml").string() +
            " has errors, so nothing was reloaded and the running configuration stays: " +
            (dir / "kiln.toml").string() +
            ":6:9: daemon.x: unknown key 'x' (accepted: lease, on_stop)");
  CHECK(Status(fresh, "/api/v1/pipelines") == 200);
  CHECK(Metric(op, "kiln_config_last_reload_successful") == "0");
  const std::string good_at = Metric(op, "kiln_config_last_reload_success_timestamp_seconds");
  CHECK(std::stoll(good_at) >= loaded);
  WriteFile(
      dir / "kiln.toml",
      KilnToml("[executor]\nkill_grace = \"3s\"\n[retention]\nruns = \"10d\"\n", next_tokens));
  auto partly = op.Post("/api/v1/reload", "{}", kJson);
  REQUIRE(partly);
  CHECK(partly->status == 202);
  const std::string in_use =
      "pool 'narrow' is left out, but it has 0 waiting tasks and 2 slots in use; keep it until "
      "they are done";
  CHECK(Body(partly)["config"] == json{{"file", (dir / "kiln.toml").string()},
                                       {"applied", {"retention"}},
                                       {"restart_needed", {"executor.kill_grace"}},
                                       {"refused", {{{"key", "pools"}, {"why", in_use}}}}});
  // The same through `kiln reload`: the retention is in effect already.
  const std::string server = "http://127.0.0.1:" + std::to_string(daemon.port());
  auto told = Kiln({"reload", "--server", server, "--token", kOperatorToken});
  CHECK(told.code == 0);
  CHECK(told.out == "reload asked of every daemon on the database\nkiln.toml reloaded here (" +
                        (dir / "kiln.toml").string() +
                        "): nothing applied\n"
                        "  changed, but read only at start (restart kiln to apply): "
                        "executor.kill_grace\n"
                        "  not applied: pools: " +
                        in_use + "\n");
  WriteFile(release, "");
  // (The event stream's reader uses the viewer's token, removed above.)
  WaitFor(
      [&] { return Sql("select state from runs where id = " + std::to_string(run)) == "success"; },
      "the run's success");

  // A key refused: not a reload applied whole.
  CHECK(Metric(op, "kiln_config_last_reload_successful") == "0");
  CHECK(Metric(op, "kiln_config_last_reload_success_timestamp_seconds") == good_at);

  // SIGHUP: the viewer's token back, from this daemon's own file.
  WriteFile(dir / "kiln.toml", KilnToml("", {{"operator", "operator", kOperatorToken},
                                             {"viewer", "viewer", kViewerToken}}));
  daemon.Signal(SIGHUP);
  WaitFor([&] { return Status(viewer, "/api/v1/pipelines") == 200; },
          "the viewer's token accepted after SIGHUP");
  CHECK(Status(fresh, "/api/v1/pipelines") == 401);
  CHECK(Metric(op, "kiln_config_last_reload_successful") == "1");
  // `kiln reload` says what the daemon asked did.
  WriteFile(dir / "kiln.toml",
            KilnToml("[pools]\nnarrow = 3\n", {{"operator", "operator", kOperatorToken},
                                               {"viewer", "viewer", kViewerToken}}));
  auto cli = Kiln({"reload", "--server", server, "--token", kOperatorToken});
  CHECK(cli.code == 0);
  CHECK(cli.out == "reload asked of every daemon on the database\nkiln.toml reloaded here (" +
                       (dir / "kiln.toml").string() + "): pools applied\n");

  // Every token removed: the admin token of a first start was never made here, so the tokens
  // in effect stay (a new one is shown only at a start).
  WriteFile(dir / "kiln.toml", KilnToml("[pools]\nnarrow = 3\n", {}));
  auto none = op.Post("/api/v1/reload", "{}", kJson);
  REQUIRE(none);
  CHECK(Body(none)["config"]["refused"] ==
        json{{{"key", "auth.tokens"},
              {"why",
               "without [[auth.tokens]] kiln uses the admin token made at its first start, "
               "and none is kept in " +
                   (daemon.data_dir() / "admin-token.sha256").string() +
                   ": restart kiln to have one made and printed"}}});
  CHECK(Status(viewer, "/api/v1/pipelines") == 200);
}

TEST_CASE("retention turned on and on_stop changed by a reload take effect without a restart") {
  TempDir dir;
  const std::string p = Unique("cfg-reload-keep");
  const auto release = (dir / "release").string();
  WriteFile(dir / "pipelines/p.toml",
            Pipeline(p, "", "while [ ! -e " + release + " ]; do sleep 0.02; done"));
  DaemonOptions options(dir / "pipelines");
  options.extra_config = "[retention]\nruns = \"0s\"\nevents = \"0s\"\n";  // keeps everything
  Daemon daemon(dir, options);
  auto op = daemon.Client(kOperatorToken);
  const std::string tokens =
      ReadFile(dir / "kiln.toml").substr(ReadFile(dir / "kiln.toml").find("\n[[auth.tokens]]"));
  WriteFile(release, "");
  const int64_t old_run = Trigger(op, p);
  CHECK(WaitForRunEnd(daemon, old_run) == "success");
  std::filesystem::remove(release);

  // Runs ended over a second ago go, at once and then every second; and a stop leaves tasks.
  WriteFile(dir / "kiln.toml",
            "[daemon]\non_stop = \"leave\"\nlease = \"30s\"\n[retention]\n"
            "runs = \"1s\"\nmin_runs = 0\nevents = \"0s\"\ninterval = \"1s\"\n" +
                tokens);
  auto asked = op.Post("/api/v1/reload", "{}", kJson);
  REQUIRE(asked);
  CHECK(Body(asked)["config"]["applied"] == json{"retention", "daemon.on_stop"});
  const std::string id = std::to_string(old_run);
  WaitFor([&] { return Sql("select count(*) from runs where id = " + id) == "0"; },
          "the ended run deleted by the sweep");

  // SIGTERM with on_stop = "leave": the running task goes on, its run is not cancelled.
  const int64_t running = Trigger(op, p);
  WaitFor([&] { return States(running) == "t:running"; }, "the task running");
  CHECK(daemon.Stop() == 0);
  CHECK(Sql("select state from runs where id = " + std::to_string(running)) == "running");
  CHECK_FALSE(ProcessesMentioning(release).empty());
  // The next start on the folder (its kiln.toml written afresh) adopts the task and ends the run.
  Daemon next(dir, options);
  WriteFile(release, "");
  CHECK(WaitForRunEnd(next, running) == "success");
}

TEST_CASE(
    "pool sizes the workers could not be told of hold here, and the next reload writes them") {
  TempDir dir;
  const std::string p = Unique("cfg-reload-pools");
  WriteFile(dir / "pipelines/p.toml", Pipeline(p, "", "true"));
  DaemonOptions options(dir / "pipelines");
  const std::string executor = "[executor]\nmode = \"both\"\nworker_pools = [\"gpu\"]\n";
  options.extra_config = executor + "[pools]\nnarrow = 1\ngpu = 1\n";
  Daemon daemon(dir, options);
  auto op = daemon.Client(kOperatorToken);
  const std::string slots = "select string_agg(name || '=' || slots, ' ' order by name) from pools";
  CHECK(Sql(slots) == "default=16 gpu=1 narrow=1");
  const std::string tokens =
      ReadFile(dir / "kiln.toml").substr(ReadFile(dir / "kiln.toml").find("\n[[auth.tokens]]"));

  // The database refuses the write: the sizes hold for this daemon's own starts.
  Sql("create function refuse_pools() returns trigger language plpgsql as $$ begin raise "
      "exception 'pools are read-only for this test'; end $$; create trigger refuse_pools before "
      "insert or update on pools for each row execute function refuse_pools()");
  WriteFile(dir / "kiln.toml", KilnToml(executor + "[pools]\nnarrow = 2\ngpu = 3\n", {}) + tokens);
  auto asked = op.Post("/api/v1/reload", "{}", kJson);
  REQUIRE(asked);
  CHECK(asked->status == 202);
  const json config = Body(asked)["config"];
  CHECK(config["applied"] == json::array());
  CHECK(config["restart_needed"] == json::array());
  REQUIRE(config["refused"].size() == 1);
  CHECK(config["refused"][0]["key"] == "pools");
  const std::string why = config["refused"][0]["why"];
  CHECK(why.rfind("the new sizes hold for this daemon's own starts, but writing them for the "
                  "workers failed (the next reload writes them again): ",
                  0) == 0);
  CHECK(why.find("pools are read-only for this test") != std::string::npos);
  CHECK(Metric(op, "kiln_pool_slots{pool=\"narrow\"}") == "2");
  CHECK(Metric(op, "kiln_pool_slots{pool=\"gpu\"}") == "3");
  CHECK(Metric(op, "kiln_config_last_reload_successful") == "0");
  CHECK(Sql(slots) == "default=16 gpu=1 narrow=1");

  // The same file again once the database takes it: written, and said so.
  Sql("drop trigger refuse_pools on pools");
  asked = op.Post("/api/v1/reload", "{}", kJson);
  REQUIRE(asked);
  CHECK(Body(asked)["config"]["applied"] == json{"pools"});
  CHECK(Body(asked)["config"]["refused"] == json::array());
  CHECK(Sql(slots) == "default=16 gpu=3 narrow=2");
  CHECK(Metric(op, "kiln_config_last_reload_successful") == "1");
  // Nothing left to write: a reload of the same file applies nothing.
  asked = op.Post("/api/v1/reload", "{}", kJson);
  REQUIRE(asked);
  CHECK(Body(asked)["config"]["applied"] == json::array());
  const int64_t run = Trigger(op, p);
  CHECK(WaitForRunEnd(daemon, run) == "success");
}
