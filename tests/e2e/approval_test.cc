// kind = "approval" through `kiln serve`: a task that waits for an operator without a slot or a
// process; approved over the API (its downstream runs), rejected over the CLI (its downstream
// does not), rejected when nobody decides in time, and still waiting, with the same deadline,
// after the daemon is killed and started again. `kiln run --approve` decides on the command line.
#include <signal.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/time.h"
#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

namespace {

// The build holds the only slot of the default pool while it runs; the approval holds none, so
// the second run's build starts while the first run's approval waits.
constexpr const char* kRelease = R"([pipeline]
name = "release"
max_active_runs = 4
[tasks.build]
command = "echo built"
[tasks.approve]
kind = "approval"
needs = ["build"]
timeout = "1h"
[tasks.ship]
needs = ["approve"]
command = "echo shipped"
)";

constexpr const char* kOneSlot = "[pools]\ndefault = 1\n";

// Waits, through the event stream, until the run's task `task` waits; returns that event.
json WaitUntilWaiting(const Daemon& daemon, int64_t run, const std::string& task) {
  auto events = ReadEvents(daemon, "run=" + std::to_string(run), [&](const json& e) {
    return e["kind"] == "task_state" && e["task"] == task && e["to"] == "waiting";
  });
  return events.back();
}

// The detail of the event that ended the task.
json EndDetail(int64_t run, const std::string& task) {
  return json::parse(Sql("select detail::text from events where kind = 'task_state' and run_id = " +
                         std::to_string(run) + " and task_id = '" + task +
                         "' and to_state in ('success', 'failed')"));
}

}  // namespace

TEST_CASE("an approval waits without a slot and is approved over the API or rejected by the CLI") {
  TempDir dir;
  WriteFile(dir / "pipelines/release.toml", kRelease);
  DaemonOptions o(dir / "pipelines");
  o.extra_config = kOneSlot;
  Daemon daemon(dir, o);
  auto viewer = daemon.Client(kViewerToken);
  auto operator_ = daemon.Client(kOperatorToken);

  const int64_t first = Trigger(operator_, "release");
  const json waiting = WaitUntilWaiting(daemon, first, "approve");
  CHECK(waiting["detail"]["waiting_for"] == "approval");
  CHECK(waiting["detail"]["reason"].get<std::string>().starts_with(
      "waiting for approval; rejected if nobody decides by "));
  // It holds no slot: a second run's build takes the pool's only slot and ends.
  const int64_t second = Trigger(operator_, "release");
  WaitUntilWaiting(daemon, second, "approve");
  CHECK(States(first) == "build:success approve:waiting ship:pending");
  CHECK(Sql("select count(*) from attempts where task_id = 'approve'") == "0");

  // The run shows it waiting with its deadline; the inbox lists both, longest waiting first.
  json run = Body(viewer.Get("/api/v1/runs/" + std::to_string(first)));
  CHECK(run["tasks"][1]["state"] == "waiting");
  CHECK(run["tasks"][1]["waiting_for"] == "approval");
  CHECK(run["tasks"][1]["deadline"].is_string());
  CHECK(run["tasks"][1]["retry_at"].is_null());
  const json inbox = Body(viewer.Get("/api/v1/approvals"));
  REQUIRE(inbox["approvals"].size() == 2);
  CHECK(inbox["approvals"][0]["run"] == first);
  CHECK(inbox["approvals"][0]["pipeline"] == "release");
  CHECK(inbox["approvals"][0]["task"] == "approve");
  CHECK(inbox["approvals"][0]["deadline"] == run["tasks"][1]["deadline"]);
  CHECK(inbox["approvals"][1]["run"] == second);

  // A viewer may not decide; an operator may not approve a task that does not wait.
  auto denied =
      viewer.Post("/api/v1/runs/" + std::to_string(first) + "/tasks/approve/approve", "{}", kJson);
  REQUIRE(denied);
  CHECK(denied->status == 403);
  auto not_waiting =
      operator_.Post("/api/v1/runs/" + std::to_string(first) + "/tasks/ship/approve", "{}", kJson);
  REQUIRE(not_waiting);
  CHECK(not_waiting->status == 409);
  CHECK(Body(not_waiting)["error"]["message"] ==
        "task 'ship' of run " + std::to_string(first) +
            " is not waiting for approval (it is pending); nothing to approve");
  auto bad_note = operator_.Post("/api/v1/runs/" + std::to_string(first) + "/tasks/approve/approve",
                                 R"({"note": 7})", kJson);
  REQUIRE(bad_note);
  CHECK(bad_note->status == 400);

  // Approved with a note: the task succeeds, ship runs, the event names who and why.
  auto approved = operator_.Post("/api/v1/runs/" + std::to_string(first) + "/tasks/approve/approve",
                                 R"({"note": "metrics look right"})", kJson);
  REQUIRE(approved);
  CHECK(approved->status == 200);
  CHECK(WaitForRunEnd(daemon, first) == "success");
  CHECK(States(first) == "build:success approve:success ship:success");
  CHECK(EndDetail(first, "approve") == json{{"reason", "approved by operator: metrics look right"},
                                            {"decision", "approved"},
                                            {"by", "operator"},
                                            {"note", "metrics look right"}});
  // Who decided and why, read back: the event's time, and nothing for a run without a decision.
  const json decisions = Body(viewer.Get("/api/v1/runs/" + std::to_string(first) + "/decisions"));
  REQUIRE(decisions["decisions"].size() == 1);
  const json& decided = decisions["decisions"][0];
  CHECK(decided["task"] == "approve");
  CHECK(decided["decision"] == "approved");
  CHECK(decided["by"] == "operator");
  CHECK(decided["note"] == "metrics look right");
  auto decided_at = kiln::ParseRfc3339(decided["at"].get<std::string>());
  REQUIRE(decided_at.ok());
  CHECK(std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(decided_at->time_since_epoch())
                .count()) ==
        Sql("select (extract(epoch from at) * 1000)::int8 from events where run_id = " +
            std::to_string(first) + " and task_id = 'approve' and detail ? 'decision'"));
  CHECK(Body(viewer.Get("/api/v1/runs/" + std::to_string(second) + "/decisions")) ==
        json{{"decisions", json::array()}});
  auto unknown = viewer.Get("/api/v1/runs/999999/decisions");
  REQUIRE(unknown);
  CHECK(unknown->status == 404);
  auto twice = operator_.Post("/api/v1/runs/" + std::to_string(first) + "/tasks/approve/reject",
                              "{}", kJson);
  REQUIRE(twice);
  CHECK(twice->status == 409);

  // The CLI lists what waits, then rejects the second: it fails, ship does not run.
  const std::map<std::string, std::string> env = {
      {"KILN_SERVER", "http://127.0.0.1:" + std::to_string(daemon.port())},
      {"KILN_TOKEN", kOperatorToken}};
  auto list = Kiln({"approvals"}, {}, env);
  CHECK(list.code == 0);
  CHECK(list.out.starts_with(
      "RUN      PIPELINE                 TASK                     WAITING SINCE              "
      "DEADLINE\n" +
      std::to_string(second) + std::string(8 - std::to_string(second).size(), ' ') +
      " release                  approve                  "));
  auto rejected =
      Kiln({"reject", std::to_string(second), "approve", "--note", "not this week"}, {}, env);
  CHECK(rejected.code == 0);
  CHECK(rejected.out == "run " + std::to_string(second) + ": task approve rejected\n");
  CHECK(WaitForRunEnd(daemon, second) == "failed");
  CHECK(States(second) == "build:success approve:failed ship:upstream_failed");
  CHECK(EndDetail(second, "approve")["reason"] == "rejected by operator: not this week");
  // kiln show says who decided, when and why; its JSON has the same list.
  const std::string at = Body(
      operator_.Get("/api/v1/runs/" + std::to_string(second) + "/decisions"))["decisions"][0]["at"];
  auto shown = Kiln({"show", std::to_string(second)}, {}, env);
  CHECK(shown.code == 0);
  CHECK(shown.out.ends_with("decisions:\n  approve                rejected by operator at " + at +
                            ": not this week\n"));
  auto shown_json = Kiln({"show", std::to_string(second), "--output", "json"}, {}, env);
  CHECK(json::parse(shown_json.out)["decisions"][0]["note"] == "not this week");
  auto again = Kiln({"approve", std::to_string(second), "approve"}, {}, env);
  CHECK(again.code == 1);
  CHECK(again.err.find("is not waiting for approval (it is failed)") != std::string::npos);
  CHECK(Kiln({"approvals"}, {}, env).out == "nothing waits for approval\n");
}

TEST_CASE("an approval nobody decides in time is rejected") {
  TempDir dir;
  std::string pipeline = kRelease;
  pipeline.replace(pipeline.find("timeout = \"1h\""), 14, "timeout = \"1s\"");
  WriteFile(dir / "pipelines/release.toml", pipeline);
  Daemon daemon(dir, dir / "pipelines");
  auto client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, "release");
  CHECK(WaitForRunEnd(daemon, run) == "failed");
  CHECK(States(run) == "build:success approve:failed ship:upstream_failed");
  CHECK(EndDetail(run, "approve") ==
        json{{"reason", "rejected: nobody decided within its timeout of 1s"},
             {"decision", "rejected"},
             {"by", "timeout"},
             {"note", ""}});
  const json decisions = Body(client.Get("/api/v1/runs/" + std::to_string(run) + "/decisions"));
  REQUIRE(decisions["decisions"].size() == 1);
  CHECK(decisions["decisions"][0]["decision"] == "rejected");
  CHECK(decisions["decisions"][0]["by"] == "timeout");
}

TEST_CASE("an approval still waits, with its deadline, after the daemon is killed") {
  TempDir dir;
  WriteFile(dir / "pipelines/release.toml", kRelease);
  int64_t run = 0;
  std::string deadline;
  {
    DaemonOptions o(dir / "pipelines");
    o.on_stop = "leave";
    Daemon first(dir, o);
    auto client = first.Client(kOperatorToken);
    run = Trigger(client, "release");
    WaitUntilWaiting(first, run, "approve");
    deadline = Sql("select retry_at from task_instances where task_id = 'approve' and run_id = " +
                   std::to_string(run));
    first.Signal(SIGKILL);
    CHECK(first.Wait() == 128 + SIGKILL);
  }
  DaemonOptions o(dir / "pipelines");
  o.on_stop = "leave";
  Daemon second(dir, o);
  auto client = second.Client(kOperatorToken);
  // Resumed as it was: not lost, not re-run, the same deadline; then approved.
  WaitFor([&] { return Body(client.Get("/api/v1/approvals"))["approvals"].size() == 1; },
          "the approval to be listed");
  CHECK(States(run) == "build:success approve:waiting ship:pending");
  CHECK(Sql("select retry_at from task_instances where task_id = 'approve' and run_id = " +
            std::to_string(run)) == deadline);
  auto approved =
      client.Post("/api/v1/runs/" + std::to_string(run) + "/tasks/approve/approve", "{}", kJson);
  REQUIRE(approved);
  CHECK(approved->status == 200);
  CHECK(WaitForRunEnd(second, run) == "success");
  CHECK(Sql("select count(*) from attempts where run_id = " + std::to_string(run)) == "2");
}

TEST_CASE("kiln run approves the approval tasks named with --approve and rejects the others") {
  TempDir dir;
  WriteFile(dir / "release.toml", kRelease);
  auto approved = Kiln({"run", (dir / "release.toml").string(), "--approve", "approve",
                        "--data-dir", (dir / "data").string()});
  CHECK(approved.code == 0);
  CHECK(approved.err.find("approve success") != std::string::npos);
  auto rejected =
      Kiln({"run", (dir / "release.toml").string(), "--data-dir", (dir / "data").string()});
  CHECK(rejected.code == 1);
  CHECK(rejected.err.find("approve failed: rejected: kiln run has no operator to ask; pass "
                          "--approve approve to approve it") != std::string::npos);
  auto wrong = Kiln({"run", (dir / "release.toml").string(), "--approve", "ship", "--data-dir",
                     (dir / "data").string()});
  CHECK(wrong.code == 1);
  CHECK(wrong.err ==
        "kiln: --approve ship: pipeline release has a task 'ship' but it is not kind = "
        "\"approval\"; its approval tasks: approve\n");
}

TEST_CASE("kiln validate refuses the keys of a process on an approval task") {
  TempDir dir;
  WriteFile(dir / "p.toml", R"([pipeline]
name = "p"
[defaults]
retries = 2
[tasks.approve]
kind = "approval"
timeout = "2d"
pool = "gpu"
env = { A = "1" }
message = "look"
)");
  auto r = Kiln({"validate", "p.toml"}, dir.path());
  CHECK(r.code == 1);
  CHECK(r.err ==
        "p.toml:8:8: tasks.approve.pool: 'pool' has no meaning for kind 'approval': it runs no "
        "process and holds no pool slot; remove it\n"
        "p.toml:9:7: tasks.approve.env: 'env' has no meaning for kind 'approval': it runs no "
        "process and holds no pool slot; remove it\n"
        "p.toml:10:1: tasks.approve.message: unknown key 'message' (accepted: allow_failure, "
        "kind, needs, timeout, trigger_rule)\n"
        "3 errors in 1 file\n");
  // cache = true: one error, not also the ones about a cacheable task's outputs.
  WriteFile(dir / "p.toml",
            "[pipeline]\nname = \"p\"\n[tasks.approve]\nkind = \"approval\"\n"
            "cache = true\n");
  r = Kiln({"validate", "p.toml"}, dir.path());
  CHECK(r.code == 1);
  CHECK(r.err ==
        "p.toml:5:9: tasks.approve.cache: cache = true is for shell tasks; a task of kind "
        "'approval' decides on every run (its report is not cached)\n"
        "1 error in 1 file\n");
}
