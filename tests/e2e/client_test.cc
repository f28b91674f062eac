// The client commands of `kiln` (trigger, runs, show, logs, cancel, retry, pause, unpause) against
// a live daemon.
#include <catch2/catch.hpp>
#include <future>
#include <nlohmann/json.hpp>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

// Whether a process whose command line holds `args` (NUL-separated) has a connection open to
// `port` on loopback.
bool ConnectedTo(const std::string& args, int port) {
  auto pids = ProcessesMentioning(args);
  if (pids.empty()) return false;
  Output ss =
      Exec({"/usr/bin/ss", "-tnpH", "state", "established", "dport = :" + std::to_string(port)});
  return ss.out.find("pid=" + std::to_string(pids.front()) + ",") != std::string::npos;
}

std::map<std::string, std::string> ClientEnv(const Daemon& daemon, const std::string& token) {
  return {{"KILN_SERVER", "http://127.0.0.1:" + std::to_string(daemon.port())},
          {"KILN_TOKEN", token}};
}

}  // namespace

TEST_CASE(
    "the ML example through the CLI: trigger with a param and wait, logs, retry from a task") {
  TempDir dir;
  Daemon daemon(dir, SourceDir() / "examples/ml-lifecycle");
  auto env = ClientEnv(daemon, kOperatorToken);
  auto out = Kiln({"trigger", "ml-lifecycle", "-p", "c=0.5", "--wait"}, {}, env);
  INFO(out.err);
  REQUIRE(out.code == 0);
  CHECK(out.out.starts_with("run "));
  CHECK(out.out.find(" of ml-lifecycle: success\n") != std::string::npos);
  CHECK(out.out.find("\ngate                     success                 1      0") !=
        std::string::npos);
  CHECK(out.err.find("train started") != std::string::npos);
  std::string id = out.out.substr(4, out.out.find(' ', 4) - 4);
  CHECK(Sql("select p->>'value' from runs, jsonb_array_elements(params) p where id = " + id +
            " and p->>'name' = 'c'") == "0.5");

  auto logs = Kiln({"logs", id, "evaluate"}, {}, env);
  CHECK(logs.code == 0);
  CHECK_FALSE(logs.out.empty());
  CHECK(logs.out == ReadFile(daemon.data_dir() / ("logs/ml-lifecycle/" + id + "/evaluate.1.log")));

  auto retry = Kiln({"retry", id, "--from", "evaluate", "--wait", "--output", "json"}, {}, env);
  INFO(retry.err);
  REQUIRE(retry.code == 0);
  json run = json::parse(retry.out);
  CHECK(run["state"] == "success");
  std::map<std::string, int> attempts;
  for (const auto& t : run["tasks"]) attempts[t["id"]] = t["attempt"];
  CHECK(attempts == std::map<std::string, int>{{"prepare", 1},
                                               {"check_data", 1},
                                               {"train", 1},
                                               {"evaluate", 2},
                                               {"gate", 2},
                                               {"alert", 0}});
  auto second = Kiln({"logs", id, "evaluate", "--attempt", "2"}, {}, env);
  CHECK(second.code == 0);
  CHECK(second.out ==
        ReadFile(daemon.data_dir() / ("logs/ml-lifecycle/" + id + "/evaluate.2.log")));
}

TEST_CASE("client commands: runs, show, cancel, pause, unpause, errors as one line") {
  TempDir dir;
  WriteFile(dir / "pipelines/greeter.toml", R"([pipeline]
name = "greeter"
[params]
who = "world"
[tasks.greet]
command = "echo hello {{ params.who }}"
)");
  Daemon daemon(dir, dir / "pipelines");
  auto env = ClientEnv(daemon, kOperatorToken);
  auto out = Kiln({"trigger", "greeter", "-p", "who=a b", "--wait"}, {}, env);
  REQUIRE(out.code == 0);
  std::string id = out.out.substr(4, out.out.find(' ', 4) - 4);

  auto runs = Kiln({"runs", "greeter", "--output", "json"}, {}, env);
  REQUIRE(runs.code == 0);
  json page = json::parse(runs.out);
  REQUIRE(page["runs"].size() >= 1);
  CHECK(page["runs"][0]["id"].dump() == id);  // newest first
  auto table = Kiln({"runs"}, {}, env);
  CHECK(table.out.starts_with("ID       PIPELINE                 STATE"));
  CHECK(table.out.find("\n" + id + std::string(8 - id.size() + 1, ' ') + "greeter") !=
        std::string::npos);

  auto show = Kiln({"show", id}, {}, env);
  CHECK(show.code == 0);
  CHECK(show.out.starts_with("run " + id + " of greeter: success\ntrigger manual by operator"));
  CHECK(Kiln({"logs", id, "greet"}, {}, env).out == "hello a b\n");

  auto cancel = Kiln({"cancel", id}, {}, env);
  CHECK(cancel.code == 1);
  CHECK(cancel.err == "kiln: run " + id + " has already ended (success)\n");
  auto missing = Kiln({"show", "999999"}, {}, env);
  CHECK(missing.code == 1);
  CHECK(missing.err == "kiln: run 999999 not found\n");
  auto bad_id = Kiln({"show", "../etc"}, {}, env);
  CHECK(bad_id.code == 1);
  CHECK(bad_id.err == "kiln: run id '../etc' must be a positive integer\n");
  auto bad_param = Kiln({"trigger", "greeter", "-p", "nope=1"}, {}, env);
  CHECK(bad_param.code == 1);
  CHECK(bad_param.err == "kiln: undeclared param 'nope' (declared: who)\n");

  CHECK(Kiln({"pause", "greeter"}, {}, env).out == "pipeline greeter: paused\n");
  auto queued = Kiln({"trigger", "greeter"}, {}, env);
  CHECK(queued.out.ends_with(
      " of greeter: queued (the pipeline is paused: the run waits until kiln unpause greeter)\n"));
  CHECK(Kiln({"unpause", "greeter"}, {}, env).out == "pipeline greeter: unpaused\n");

  auto viewer = Kiln({"cancel", id}, {}, ClientEnv(daemon, kViewerToken));
  CHECK(viewer.code == 1);
  CHECK(viewer.err.starts_with("kiln: "));
  auto anonymous = Kiln({"runs"}, {}, ClientEnv(daemon, ""));
  CHECK(anonymous.code == 1);
  CHECK(anonymous.err.ends_with(" (set KILN_TOKEN or pass --token)\n"));
  auto nowhere = Kiln({"runs", "--server", "http://127.0.0.1:1"}, {}, env);
  CHECK(nowhere.code == 1);
  CHECK(nowhere.err.starts_with("kiln: cannot reach http://127.0.0.1:1: "));
}

TEST_CASE("kiln logs -f waits for the task to start and follows its retries until it ends") {
  TempDir dir;
  const std::string go = (dir / "go").string(), count = (dir / "count").string();
  WriteFile(dir / "pipelines/follow.toml", R"([pipeline]
name = "follow"
[tasks.hold]
command = "while [ ! -e )" + go + R"( ]; do sleep 0.05; done"
[tasks.flaky]
needs = ["hold"]
retries = 1
retry_delay = "200ms"
command = "n=$(cat )" + count + R"( 2>/dev/null || echo 0); n=$((n+1)); echo $n > )" +
                                               count +
                                               R"(; echo try $n; [ $n -ge 2 ]"
[tasks.after_failure]
needs = ["flaky"]
trigger_rule = "all_failed"
command = "echo never"
)");
  Daemon daemon(dir, dir / "pipelines");
  auto trigger = Kiln({"trigger", "follow"}, {}, ClientEnv(daemon, kOperatorToken));
  REQUIRE(trigger.code == 0);
  const std::string id = trigger.out.substr(4, trigger.out.find(' ', 4) - 4);
  auto env = ClientEnv(daemon, kViewerToken);
  // Followed before the task starts: the command waits for it rather than failing.
  auto follow = std::async(std::launch::async, [&] {
    return Kiln({"logs", id, "flaky", "-f"}, {}, env);
  });
  const std::string args = std::string("logs") + '\0' + id + '\0' + "flaky" + '\0' + "-f";
  // It has asked (hold cannot end before go): it waits for the start, it does not find one.
  WaitFor([&] { return ConnectedTo(args, daemon.port()); }, "kiln logs -f to ask the daemon");
  WriteFile(dir / "go", "");
  Output out = follow.get();
  INFO(out.err);
  CHECK(out.code == 0);
  // Both attempts, each log whole, in order; what happened between them on stderr.
  CHECK(out.out == "try 1\ntry 2\n");
  CHECK(out.err ==
        "kiln: attempt 1 of flaky ended failed (exit code 1)\n"
        "kiln: following attempt 2 of flaky\n");
  CHECK(Sql("select state from runs where id = " + id) == "success");
  // A task that ended without an attempt has no log to follow: one line, exit 1.
  auto none = Kiln({"logs", id, "after_failure", "-f"}, {}, env);
  CHECK(none.code == 1);
  CHECK(none.err == "kiln: task 'after_failure' of run " + id +
                        " ended skipped without an attempt: it has no log\n");
  auto plain = Kiln({"logs", id, "after_failure"}, {}, env);
  CHECK(plain.code == 1);
  CHECK(plain.err == "kiln: task 'after_failure' of run " + id +
                         " ended skipped without an attempt: it has no log\n");
  // One attempt asked for: its log, followed until it ended, and nothing more.
  auto first = Kiln({"logs", id, "flaky", "--attempt", "1", "-f"}, {}, env);
  CHECK(first.code == 0);
  CHECK(first.out == "try 1\n");
  CHECK(first.err.empty());
}

TEST_CASE("kiln trigger --wait and kiln logs -f carry on across a restart of the daemon") {
  TempDir dir;
  const std::string go = (dir / "go").string();
  WriteFile(dir / "pipelines/slow.toml", R"([pipeline]
name = "slow"
[tasks.work]
command = "echo before; while [ ! -e )" + go +
                                             R"( ]; do sleep 0.05; done; echo after"
)");
  DaemonOptions o(dir / "pipelines");
  o.on_stop = "leave";  // the task goes on under its supervisor while no daemon runs
  auto first = std::make_unique<Daemon>(dir, o);
  const int port = first->port();
  auto env = ClientEnv(*first, kOperatorToken);
  auto waiting = std::async(std::launch::async, [&] {
    return Kiln({"trigger", "slow", "--wait"}, {}, env);
  });
  WaitFor([&] { return Sql("select count(*) from runs where pipeline = 'slow'") == "1"; },
          "the run");
  const std::string id = Sql("select id from runs where pipeline = 'slow'");
  auto following = std::async(std::launch::async, [&] {
    return Kiln({"logs", id, "work", "-f"}, {}, env);
  });
  WaitFor([&] { return States(std::stoll(id)) == "work:running"; }, "the task to run");
  // Both are in the middle of a request when the daemon goes.
  const std::string nul(1, '\0');
  WaitFor([&] { return ConnectedTo("trigger" + nul + "slow" + nul + "--wait", port); },
          "kiln trigger --wait to follow the run");
  WaitFor([&] { return ConnectedTo("logs" + nul + id + nul + "work" + nul + "-f", port); },
          "kiln logs -f to follow the log");
  CHECK(first->Stop() == 0);
  first.reset();
  // The same address again: both commands find the daemon there and read on.
  o.listen = "127.0.0.1:" + std::to_string(port);
  Daemon second(dir, o);
  WriteFile(dir / "go", "");
  Output waited = waiting.get();
  INFO(waited.err);
  CHECK(waited.code == 0);
  CHECK(waited.out.starts_with("run " + id + " of slow: success\n"));
  CHECK(waited.err.starts_with("kiln: run " + id + " of slow\n"));
  CHECK(waited.err.find("; trying again (run " + id + " goes on without this command)\n") !=
        std::string::npos);
  Output followed = following.get();
  INFO(followed.err);
  CHECK(followed.code == 0);
  CHECK(followed.out == "before\nafter\n");
  CHECK(followed.err.find("; trying again (the task goes on without this command)\n") !=
        std::string::npos);
}

TEST_CASE("kiln trigger says when its run waits for a paused pipeline or is not new") {
  TempDir dir;
  WriteFile(dir / "pipelines/p.toml", "[pipeline]\nname = \"p\"\n[tasks.a]\ncommand = \"true\"\n");
  Daemon daemon(dir, dir / "pipelines");
  auto env = ClientEnv(daemon, kOperatorToken);
  REQUIRE(Kiln({"pause", "p"}, {}, env).code == 0);
  auto queued = Kiln({"trigger", "p"}, {}, env);
  CHECK(queued.code == 0);
  const std::string id = queued.out.substr(4, queued.out.find(' ', 4) - 4);
  CHECK(queued.out == "run " + id +
                          " of p: queued (the pipeline is paused: the run waits until kiln "
                          "unpause p)\n");
  REQUIRE(Kiln({"unpause", "p"}, {}, env).code == 0);
  auto keyed = Kiln({"trigger", "p", "--key", "k1", "--wait"}, {}, env);
  CHECK(keyed.code == 0);
  const std::string keyed_id = keyed.out.substr(4, keyed.out.find(' ', 4) - 4);
  auto again = Kiln({"trigger", "p", "--key", "k1"}, {}, env);
  CHECK(again.out.starts_with("run " + keyed_id +
                              " of p: success (an existing run: the key 'k1' "
                              "started it at "));
}

TEST_CASE("kiln pipelines lists what is loaded, and kiln mark sets a task's state by hand") {
  TempDir dir;
  WriteFile(dir / "pipelines/p.toml",
            "[pipeline]\nname = \"p\"\nschedule = \"@daily\"\n[tasks.a]\ncommand = \"exit 3\"\n"
            "[tasks.b]\nneeds = [\"a\"]\ncommand = \"true\"\n");
  Daemon daemon(dir, dir / "pipelines");
  auto admin = ClientEnv(daemon, kAdminToken);
  auto run = Kiln({"trigger", "p", "--wait"}, {}, admin);
  CHECK(run.code == 1);
  const std::string id = run.out.substr(4, run.out.find(' ', 4) - 4);
  auto listed = Kiln({"pipelines"}, {}, admin);
  CHECK(listed.code == 0);
  CHECK(
      listed.out.starts_with("PIPELINE                     PAUSED  SCHEDULE           NEXT FIRE "));
  CHECK(listed.out.find("\np                            no      @daily             ") !=
        std::string::npos);
  CHECK(listed.out.find(" failed    -\n") != std::string::npos);
  // A broken file: listed with its first error, and the command says so by its exit code.
  WriteFile(dir / "pipelines/q.toml",
            "[pipeline]\nname = \"q\"\n[tasks.a]\nneeds = [\"z\"]\ncommand = \"true\"\n");
  REQUIRE(Kiln({"reload"}, {}, admin).code == 0);
  WaitFor([&] { return Kiln({"pipelines"}, {}, admin).code == 1; }, "q to be listed broken");
  auto broken = Kiln({"pipelines"}, {}, admin);
  CHECK(broken.out.find("q.toml:4:10: tasks.a.needs: unknown task 'z'") != std::string::npos);

  // Marked by hand in the ended run: its state and the run's follow.
  auto viewer = Kiln({"mark", id, "a", "success"}, {}, ClientEnv(daemon, kViewerToken));
  CHECK(viewer.code == 1);
  CHECK(viewer.err.find("this needs admin") != std::string::npos);
  auto marked = Kiln({"mark", id, "a", "success", "--reason", "fixed by hand"}, {}, admin);
  INFO(marked.err);
  CHECK(marked.code == 0);
  CHECK(marked.out.starts_with("run " + id + ": task a marked success; the run is "));
  CHECK(States(std::stoll(id)).starts_with("a:success "));
  auto bad = Kiln({"mark", id, "a", "skipped"}, {}, admin);
  CHECK(bad.code == 2);
}
