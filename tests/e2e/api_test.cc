// The v1 API of a real `kiln serve` over loopback: runs, attempts, logs, events, retries, cancel,
// marks, pause, metrics and tokens, checked against what the database recorded.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

std::string TaskAttempts(const json& run) {
  std::string out;
  for (const auto& t : run["tasks"]) {
    out += (out.empty() ? "" : ",") + t["id"].get<std::string>() + ":" +
           t["state"].get<std::string>() + ":" + std::to_string(t["attempt"].get<int>());
  }
  return out;
}

json GetRun(httplib::Client& client, int64_t id) {
  return Body(client.Get(("/api/v1/runs/" + std::to_string(id)).c_str()));
}

// Waits until `file` exists; the tasks write it (the event awaited is outside kiln).
// Waits until a task has written `file` whole: the shell creates it before it writes the line.
void WaitForLine(const fs::path& file) {
  WaitFor([&] { return fs::exists(file) && ReadFile(file).ends_with("\n"); },
          "a line in " + file.filename().string());
}

}  // namespace

TEST_CASE("a run over the API: trigger, read it back, its attempts, logs, events and metrics") {
  TempDir dir;
  WriteFile(dir / "pipelines/hello.toml", R"([pipeline]
name = "hello"
description = "says hello"
tags = ["demo"]
[params]
who = "world"
[tasks.greet]
command = "printf 'hello %s\n' {{ params.who }}"
[tasks.after]
needs = ["greet"]
command = "echo done"
)");
  Daemon daemon(dir, dir / "pipelines");
  auto op = daemon.Client(kOperatorToken);
  auto created = op.Post("/api/v1/pipelines/hello/runs",
                         R"J({"params": {"who": "kiln $(id)"}, "note": "first"})J", kJson);
  json run = Body(created);
  REQUIRE(created->status == 201);
  int64_t id = run["id"];
  CHECK(created->get_header_value("Location") == "/api/v1/runs/" + std::to_string(id));
  CHECK(run["pipeline"] == "hello");
  CHECK(run["created_by"] == "operator");
  CHECK(run["note"] == "first");
  CHECK(run["params"] == json{{"who", "kiln $(id)"}});
  CHECK(run["tasks"].size() == 2);
  CHECK(WaitForRunEnd(daemon, id) == "success");

  auto viewer = daemon.Client(kViewerToken);
  run = GetRun(viewer, id);
  CHECK(run["state"] == "success");
  CHECK(TaskAttempts(run) == "greet:success:1,after:success:1");
  CHECK(run["tasks"][0]["exit_code"] == 0);

  json attempts =
      Body(viewer.Get(("/api/v1/runs/" + std::to_string(id) + "/tasks/greet/attempts").c_str()));
  REQUIRE(attempts["attempts"].size() == 1);
  CHECK(attempts["attempts"][0]["attempt"] == 1);
  CHECK(attempts["attempts"][0]["state"] == "success");
  CHECK(attempts["attempts"][0]["exit_code"] == 0);

  std::string log_path = "/api/v1/runs/" + std::to_string(id) + "/tasks/greet/attempts/1/log";
  auto log = viewer.Get(log_path.c_str());
  REQUIRE(log);
  CHECK(log->status == 200);
  CHECK(log->body == "hello kiln $(id)\n");  // the param reached the task byte for byte
  CHECK(log->get_header_value("X-Log-Finished") == "true");
  CHECK(log->get_header_value("X-Log-Size") == "17");
  auto tail = viewer.Get((log_path + "?offset=6").c_str());
  REQUIRE(tail);
  CHECK(tail->body == "kiln $(id)\n");
  CHECK(tail->get_header_value("X-Log-Offset") == "6");
  auto missing =
      viewer.Get(("/api/v1/runs/" + std::to_string(id) + "/tasks/greet/attempts/2/log").c_str());
  REQUIRE(missing);
  CHECK(missing->status == 404);

  // Every transition of the run, in order.
  auto events = ReadEvents(daemon, "run=" + std::to_string(id), [](const json& e) {
    return e["kind"] == "run_state" && e["to"] == "success";
  });
  std::vector<std::string> seen;
  int64_t last = 0;
  for (const auto& e : events) {
    CHECK(e["id"].get<int64_t>() > last);
    last = e["id"];
    CHECK(e["pipeline"] == "hello");
    seen.push_back(e["kind"].get<std::string>() + ":" +
                   (e["task"].is_null() ? "" : e["task"].get<std::string>()) + ":" +
                   (e["to"].is_null() ? "" : e["to"].get<std::string>()));
  }
  // A task that starts in the turn it became ready is never recorded as queued.
  CHECK(seen == std::vector<std::string>{"run_created::queued", "run_state::running",
                                         "task_state:greet:running", "task_state:greet:success",
                                         "task_state:after:running", "task_state:after:success",
                                         "run_state::success"});
  CHECK(events[0]["actor"] == "operator");
  // Resuming after an event gives exactly the ones after it.
  auto resumed = ReadEvents(
      daemon, "run=" + std::to_string(id),
      [](const json& e) { return e["kind"] == "run_state" && e["to"] == "success"; },
      events[3]["id"].get<int64_t>());
  CHECK(resumed.size() == events.size() - 4);
  CHECK(resumed.front()["id"] == events[4]["id"]);

  json runs = Body(viewer.Get("/api/v1/runs?pipeline=hello&state=success"));
  // Newest first (other tests may have left runs of a pipeline with this name).
  REQUIRE(runs["runs"].size() >= 1);
  CHECK(runs["runs"][0]["id"] == id);
  json first = Body(viewer.Get("/api/v1/runs?pipeline=hello&limit=1"));
  REQUIRE(first["runs"].size() == 1);
  CHECK(first["runs"][0]["id"] == id);
  if (runs["runs"].size() > 1) CHECK(first["next_cursor"] == std::to_string(id));

  json pipelines = Body(viewer.Get("/api/v1/pipelines"));
  REQUIRE(pipelines["pipelines"].size() == 1);
  CHECK(pipelines["pipelines"][0]["name"] == "hello");
  CHECK(pipelines["pipelines"][0]["description"] == "says hello");
  CHECK(pipelines["pipelines"][0]["last_run"] == json{{"id", id}, {"state", "success"}});
  CHECK(pipelines["pipelines"][0]["paused"] == false);

  auto metrics = viewer.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  CHECK(metrics->body.find("kiln_runs_finished_total{state=\"success\"} 1\n") != std::string::npos);
  CHECK(metrics->body.find("kiln_tasks_finished_total{state=\"success\"} 2\n") !=
        std::string::npos);
  CHECK(metrics->body.find("kiln_scheduling_lag_seconds_count 2\n") != std::string::npos);
  CHECK(metrics->body.find("kiln_pool_slots{pool=\"default\"} 16\n") != std::string::npos);
  auto ready = viewer.Get("/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 200);
}

TEST_CASE("the same idempotency key creates one run, also when requests race") {
  TempDir dir;
  WriteFile(dir / "pipelines/once.toml", R"([pipeline]
name = "once"
[params]
n = 1
[tasks.t]
command = "true"
)");
  Daemon daemon(dir, dir / "pipelines");
  // Unique per test run: the database outlives one run of the tests.
  const std::string key = "nightly-" + dir.path().filename().string();
  const std::string body_2 = R"({"params": {"n": 2}, "idempotency_key": ")" + key + "\"}";
  std::vector<int> statuses(8);
  std::vector<int64_t> ids(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto client = daemon.Client(kOperatorToken);
      auto res = client.Post("/api/v1/pipelines/once/runs", body_2, kJson);
      if (!res) return;
      statuses[i] = res->status;
      ids[i] = json::parse(res->body)["id"];
    });
  }
  for (auto& t : threads) t.join();
  CHECK(std::count(statuses.begin(), statuses.end(), 201) == 1);
  CHECK(std::count(statuses.begin(), statuses.end(), 200) == 7);
  CHECK(std::set<int64_t>(ids.begin(), ids.end()).size() == 1);
  CHECK(Sql("select count(*) from runs where idempotency_key = '" + key + "'") == "1");
  auto client = daemon.Client(kOperatorToken);
  auto other = client.Post("/api/v1/pipelines/once/runs",
                           R"({"params": {"n": 3}, "idempotency_key": ")" + key + "\"}", kJson);
  json body = Body(other);
  CHECK(other->status == 409);
  CHECK(body["error"]["message"] == "idempotency key '" + key + "' was already used for run " +
                                        std::to_string(ids[0]) + " with other params");
}

TEST_CASE("cancel stops every process of the run and ends it cancelled") {
  TempDir dir;
  WriteFile(dir / "pipelines/slow.toml", R"([pipeline]
name = "slow"
[tasks.a]
command = "sleep 300 & echo $! > {{ run.dir }}/a.child; echo $$ > {{ run.dir }}/a.pid; wait"
[tasks.b]
command = "echo $$ > {{ run.dir }}/b.pid; exec sleep 300"
[tasks.c]
needs = ["a", "b"]
command = "true"
)");
  Daemon daemon(dir, dir / "pipelines");
  auto op = daemon.Client(kOperatorToken);
  int64_t id = Trigger(op, "slow", "{}");
  fs::path run_dir = daemon.data_dir() / "runs/slow" / std::to_string(id);
  WaitForLine(run_dir / "a.pid");
  WaitForLine(run_dir / "b.pid");
  WaitForLine(run_dir / "a.child");
  std::vector<int> pids;
  for (auto name : {"a.pid", "a.child", "b.pid"})
    pids.push_back(std::stoi(ReadFile(run_dir / name)));

  auto viewer = daemon.Client(kViewerToken);
  auto refused = viewer.Post(("/api/v1/runs/" + std::to_string(id) + "/cancel").c_str(), "", kJson);
  REQUIRE(refused);
  CHECK(refused->status == 403);
  auto cancelled = op.Post(("/api/v1/runs/" + std::to_string(id) + "/cancel").c_str(), "", kJson);
  REQUIRE(cancelled);
  CHECK(cancelled->status == 202);
  CHECK(WaitForRunEnd(daemon, id) == "cancelled");
  for (int pid : pids) CHECK_FALSE(ProcessAlive(pid));
  CHECK(TaskAttempts(GetRun(op, id)) == "a:cancelled:1,b:cancelled:1,c:cancelled:0");
  CHECK(Sql("select actor from events where kind = 'cancel_requested' and run_id = " +
            std::to_string(id)) == "operator");
  auto again = op.Post(("/api/v1/runs/" + std::to_string(id) + "/cancel").c_str(), "", kJson);
  json body = Body(again);
  CHECK(again->status == 409);
  CHECK(body["error"]["message"] == "run " + std::to_string(id) + " has already ended (cancelled)");
}

TEST_CASE("retry re-runs failed tasks and their downstream, or a task and its downstream") {
  TempDir dir;
  WriteFile(dir / "pipelines/flaky.toml", R"([pipeline]
name = "flaky"
[tasks.ok]
command = "true"
[tasks.flaky]
command = "test -e {{ run.dir }}/../../../fixed"
[tasks.after]
needs = ["flaky", "ok"]
command = "true"
)");
  Daemon daemon(dir, dir / "pipelines");
  auto op = daemon.Client(kOperatorToken);
  int64_t id = Trigger(op, "flaky", "{}");
  CHECK(WaitForRunEnd(daemon, id) == "failed");
  CHECK(TaskAttempts(GetRun(op, id)) == "ok:success:1,flaky:failed:1,after:upstream_failed:0");

  std::string retry = "/api/v1/runs/" + std::to_string(id) + "/retry";
  WriteFile(daemon.data_dir() / "fixed", "");
  int64_t before = LastEventId();
  auto res = op.Post(retry.c_str(), R"({"mode": "failed"})", kJson);
  json body = Body(res);
  CHECK(res->status == 200);
  CHECK(body["tasks"] == json{"flaky", "after"});
  CHECK(WaitForRunEnd(daemon, id, before) == "success");
  CHECK(TaskAttempts(GetRun(op, id)) == "ok:success:1,flaky:success:2,after:success:1");

  auto nothing = op.Post(retry.c_str(), R"({"mode": "failed"})", kJson);
  body = Body(nothing);
  CHECK(nothing->status == 409);
  CHECK(body["error"]["message"] ==
        "run " + std::to_string(id) +
            " has nothing to retry: no task failed, was cancelled or was skipped because of a "
            "failure");

  before = LastEventId();
  res = op.Post(retry.c_str(), R"({"from": "ok"})", kJson);
  body = Body(res);
  CHECK(res->status == 200);
  CHECK(body["tasks"] == json{"ok", "after"});
  CHECK(WaitForRunEnd(daemon, id, before) == "success");
  CHECK(TaskAttempts(GetRun(op, id)) == "ok:success:2,flaky:success:2,after:success:2");
  CHECK(Sql("select count(*) from events where kind = 'run_retried' and actor = 'operator' and "
            "run_id = " +
            std::to_string(id)) == "2");

  auto unknown = op.Post(retry.c_str(), R"({"from": "nope"})", kJson);
  body = Body(unknown);
  CHECK(unknown->status == 404);
  CHECK(body["error"]["message"] == "run " + std::to_string(id) + " has no task 'nope'");
}

TEST_CASE("an admin marks a task by hand, the run's state follows") {
  TempDir dir;
  WriteFile(dir / "pipelines/fails.toml", R"([pipeline]
name = "fails"
[tasks.bad]
command = "exit 3"
)");
  Daemon daemon(dir, dir / "pipelines");
  auto op = daemon.Client(kOperatorToken);
  int64_t id = Trigger(op, "fails", "{}");
  CHECK(WaitForRunEnd(daemon, id) == "failed");
  std::string mark = "/api/v1/runs/" + std::to_string(id) + "/tasks/bad/mark";
  auto refused = op.Post(mark.c_str(), R"({"state": "success"})", kJson);
  REQUIRE(refused);
  CHECK(refused->status == 403);
  auto admin = daemon.Client(kAdminToken);
  auto marked =
      admin.Post(mark.c_str(), R"({"state": "success", "reason": "checked by hand"})", kJson);
  json run = Body(marked);
  CHECK(marked->status == 200);
  CHECK(run["state"] == "success");
  CHECK(TaskAttempts(run) == "bad:success:1");
  CHECK(Sql("select actor || ':' || (detail->>'reason') from events where kind = 'task_marked' "
            "and run_id = " +
            std::to_string(id)) == "admin:checked by hand");
}

TEST_CASE("a paused pipeline's runs wait until it is unpaused") {
  TempDir dir;
  WriteFile(dir / "pipelines/held.toml", R"([pipeline]
name = "held"
[tasks.t]
command = "true"
)");
  WriteFile(dir / "pipelines/filed.toml", R"([pipeline]
name = "filed"
paused = true
[tasks.t]
command = "true"
)");
  Daemon daemon(dir, dir / "pipelines");
  auto op = daemon.Client(kOperatorToken);
  // Paused by its file: pausing changes nothing (no event), unpausing is a change (an event).
  const int64_t start = LastEventId();
  CHECK(Body(op.Post("/api/v1/pipelines/filed/pause", "", kJson))["paused"] == true);
  CHECK(Body(op.Post("/api/v1/pipelines/filed/unpause", "", kJson))["paused"] == false);
  CHECK(Body(op.Post("/api/v1/pipelines/filed/unpause", "", kJson))["paused"] == false);
  CHECK(Sql("select string_agg(kind, ',' order by id) from events where pipeline = 'filed' and "
            "run_id is null and kind like 'pipeline_%paused' and id > " +
            std::to_string(start)) == "pipeline_unpaused");
  const int64_t before = LastEventId();
  json paused = Body(op.Post("/api/v1/pipelines/held/pause", "", kJson));
  CHECK(paused["paused"] == true);
  // Again: still paused, and no second event.
  CHECK(Body(op.Post("/api/v1/pipelines/held/pause", "", kJson))["paused"] == true);
  int64_t first = Trigger(op, "held", "{}");
  int64_t second = Trigger(op, "held", "{}");
  CHECK(GetRun(op, first)["state"] == "queued");
  // A waiting run can be cancelled although no scheduler drives it.
  auto cancelled =
      op.Post(("/api/v1/runs/" + std::to_string(second) + "/cancel").c_str(), "", kJson);
  REQUIRE(cancelled);
  CHECK(cancelled->status == 202);
  CHECK(TaskAttempts(GetRun(op, second)) == "t:cancelled:0");
  json unpaused = Body(op.Post("/api/v1/pipelines/held/unpause", "", kJson));
  CHECK(unpaused["paused"] == false);
  CHECK(WaitForRunEnd(daemon, first) == "success");
  CHECK(GetRun(op, second)["state"] == "cancelled");
  CHECK(Sql("select string_agg(kind || ':' || actor, ',' order by id) from events where "
            "pipeline = 'held' and run_id is null and id > " +
            std::to_string(before)) == "pipeline_paused:operator,pipeline_unpaused:operator");
}

TEST_CASE("following a running task's log streams it until the attempt ends") {
  TempDir dir;
  WriteFile(dir / "pipelines/chatty.toml", R"([pipeline]
name = "chatty"
[tasks.talk]
command = "echo one; while [ ! -e {{ run.dir }}/go ]; do sleep 0.05; done; echo two; echo three"
)");
  Daemon daemon(dir, dir / "pipelines");
  auto op = daemon.Client(kOperatorToken);
  int64_t id = Trigger(op, "chatty", "{}");
  fs::path run_dir = daemon.data_dir() / "runs/chatty" / std::to_string(id);
  // The attempt exists once its start is recorded.
  ReadEvents(daemon, "run=" + std::to_string(id),
             [](const json& e) { return e["kind"] == "task_state" && e["to"] == "running"; });
  std::string got;
  bool released = false;
  auto viewer = daemon.Client(kViewerToken);
  auto res = viewer.Get(
      ("/api/v1/runs/" + std::to_string(id) + "/tasks/talk/attempts/1/log?follow=true").c_str(),
      [&](const char* data, size_t size) {
        got.append(data, size);
        // The first line arrived while the task still runs: let it finish.
        if (!released && got == "one\n") {
          WriteFile(run_dir / "go", "");
          released = true;
        }
        return true;
      });
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(released);
  CHECK(got == "one\ntwo\nthree\n");
  CHECK(WaitForRunEnd(daemon, id) == "success");
}

TEST_CASE("a broken pipeline file is listed with its errors and cannot be triggered") {
  TempDir dir;
  WriteFile(dir / "pipelines/broken.toml",
            "[pipeline]\nname = \"broken\"\n[tasks.a]\nneeds = [\"zz\"]\ncommand = \"true\"\n");
  // Two files of one name, neither readable: two entries, each under its path in the folder.
  WriteFile(dir / "pipelines/a/pipeline.toml", "[pipeline\n");
  WriteFile(dir / "pipelines/b/pipeline.toml", "x =\n");
  Daemon daemon(dir, dir / "pipelines");
  CHECK(daemon.first_line().find("0 pipelines loaded, 3 with errors") != std::string::npos);
  std::set<std::string> names;
  const json listed = Body(daemon.Client(kViewerToken).Get("/api/v1/pipelines"));
  for (const json& p : listed["pipelines"]) names.insert(p["name"].get<std::string>());
  CHECK(names == std::set<std::string>{"a.pipeline.toml", "b.pipeline.toml", "broken"});
  CHECK(Body(daemon.Client(kViewerToken).Get("/api/v1/pipelines/b.pipeline.toml"))["load_error"]
            .get<std::string>()
            .find("b/pipeline.toml:1:4: invalid TOML") != std::string::npos);
  auto op = daemon.Client(kOperatorToken);
  json info = Body(op.Get("/api/v1/pipelines/broken"));
  REQUIRE(info["load_error"].is_string());
  CHECK(info["load_error"].get<std::string>().find("broken.toml:4:10: tasks.a.needs") !=
        std::string::npos);
  auto res = op.Post("/api/v1/pipelines/broken/runs", "{}", kJson);
  json body = Body(res);
  CHECK(res->status == 409);
  CHECK(body["error"]["message"].get<std::string>().starts_with(
      "pipeline 'broken' cannot run: its file has errors: "));
}

TEST_CASE(
    "without configured tokens the daemon makes an admin token once and prints a sign-in URL") {
  TempDir dir;
  WriteFile(dir / "pipelines/p.toml", "[pipeline]\nname = \"p\"\n[tasks.t]\ncommand = \"true\"\n");
  // A first start that fails (a mistyped folder) shows no token and keeps none.
  WriteFile(dir / "kiln.toml", "");
  auto failed = Kiln({"serve", "--config", (dir / "kiln.toml").string(), "--pipelines",
                      (dir / "pipelinez").string(), "--data-dir", (dir / "data").string()});
  CHECK(failed.code == 1);
  CHECK(failed.out.find("token") == std::string::npos);
  CHECK_FALSE(fs::exists(dir / "data/admin-token.sha256"));
  std::string token;
  {
    DaemonOptions options(dir / "pipelines");
    options.tokens = false;
    Daemon daemon(dir, options);
    std::string line = daemon.ReadLine();
    std::string prefix =
        "kiln: sign in: http://127.0.0.1:" + std::to_string(daemon.port()) + "/?token=";
    REQUIRE(line.starts_with(prefix));
    token = line.substr(prefix.size());
    CHECK(token.size() == 48);
    CHECK(ReadFile(daemon.data_dir() / "admin-token.sha256").size() == 65);
    CHECK((fs::status(daemon.data_dir() / "admin-token.sha256").permissions() &
           fs::perms::group_all) == fs::perms::none);
    auto anonymous = daemon.Client("");
    auto res = anonymous.Get("/api/v1/pipelines");
    REQUIRE(res);
    CHECK(res->status == 401);
    CHECK(anonymous.Get("/healthz")->status == 200);
    CHECK(daemon.Client(token).Get("/api/v1/pipelines")->status == 200);
    CHECK(daemon.Client("kiln_wrong").Get("/api/v1/pipelines")->status == 401);
  }
  DaemonOptions options(dir / "pipelines");
  options.tokens = false;
  Daemon again(dir, options);
  CHECK(again.ReadLine().starts_with("kiln: sign in with the admin token printed at first start"));
  CHECK(again.Client(token).Get("/api/v1/pipelines")->status == 200);
}

TEST_CASE("the daemon refuses to listen beyond loopback without tokens") {
  TempDir dir;
  fs::create_directories(dir / "pipelines");
  WriteFile(dir / "kiln.toml", "");
  auto out =
      Kiln({"serve", "--config", (dir / "kiln.toml").string(), "--listen", "0.0.0.0:0",
            "--pipelines", (dir / "pipelines").string(), "--data-dir", (dir / "data").string()});
  CHECK(out.code == 1);
  CHECK(out.err ==
        "kiln: refusing to listen on 0.0.0.0:0 without API tokens: anyone who can reach it could "
        "run commands. Declare [[auth.tokens]] in kiln.toml (kiln token new prints them) or listen "
        "on 127.0.0.1\n");
}

TEST_CASE("kiln token new prints a token and the config lines that accept it") {
  auto out = Kiln({"token", "new", "--name", "ci", "--role", "operator"});
  REQUIRE(out.code == 0);
  std::string token = out.out.substr(0, out.out.find('\n'));
  CHECK(token.starts_with("kiln_"));
  CHECK(token.size() == 48);
  CHECK(out.out.find("[[auth.tokens]]\nname = \"ci\"\nrole = \"operator\"\nsha256 = \"") !=
        std::string::npos);
  TempDir dir;
  WriteFile(dir / "pipelines/p.toml", "[pipeline]\nname = \"p\"\n[tasks.t]\ncommand = \"true\"\n");
  std::string lines = out.out.substr(out.out.find("[[auth.tokens]]"));
  DaemonOptions options(dir / "pipelines");
  options.tokens = false;
  options.extra_config = lines;
  Daemon daemon(dir, options);
  CHECK(daemon.Client(token).Get("/api/v1/pipelines")->status == 200);
  CHECK(daemon.Client(token)
            .Post("/api/v1/runs/1/tasks/t/mark", R"({"state":"success"})", kJson)
            ->status == 403);
  auto bad = Kiln({"token", "new", "--name", "a b", "--role", "viewer"});
  CHECK(bad.code == 2);
  CHECK(bad.err == "kiln: token name 'a b' must be 1-64 of A-Z a-z 0-9 _ . @ -\n");
}
