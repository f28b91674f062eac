// `kiln run`, `kiln validate` and `kiln graph` on purpose-made pipelines.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "harness.h"
#include "run_json.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

Ran RunPipeline(const TempDir& dir, const std::string& toml, std::vector<std::string> extra = {}) {
  WriteFile(dir / "p.toml", toml);
  std::vector<std::string> args = {"--data-dir", (dir / "data").string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return RunJson(dir, args);
}

json TaskOf(const json& run, const std::string& id) {
  for (const auto& t : run["tasks"]) {
    if (t["id"] == id) return t;
  }
  FAIL("no task " << id);
  return {};
}

std::string RunId(const json& run) { return run["id"].dump(); }

// How many runs the database holds ("no schema" before kiln first migrated it).
std::string RunCount() {
  if (Sql("select count(*) from information_schema.tables where table_name = 'runs'") == "0") {
    return "no schema";
  }
  return Sql("select count(*) from runs");
}

}  // namespace

TEST_CASE("a timed-out task leaves no process of its group alive") {
  TempDir dir;
  WriteFile(dir / "kiln.toml", "[executor]\nkill_grace = \"300ms\"\n");
  // Again with twice the timeout while it came before the task had written the child's pid (a
  // machine too busy for that proves nothing).
  std::string timeout;
  Ran ran;
  fs::path run_dir;
  for (int ms = 500; ms <= 16000; ms *= 2) {
    timeout = std::to_string(ms) + "ms";
    ran = RunPipeline(dir, R"([pipeline]
name = "timeout"
[tasks.slow]
command = "echo $$ > {{ run.dir }}/pid; (trap '' TERM; sleep 60) & echo $! > {{ run.dir }}/child; wait"
timeout = ")" + timeout + R"("
)",
                      {"--config", (dir / "kiln.toml").string()});
    run_dir = dir / ("data/runs/timeout/" + RunId(ran.run));
    const std::string child = ReadFile(run_dir / "child");
    if (!child.empty() && child.back() == '\n') break;
  }
  INFO(ran.output.err);
  CHECK(ran.output.code == 1);
  CHECK(TaskOf(ran.run, "slow")["state"] == "failed");
  int pid = std::stoi(ReadFile(run_dir / "pid"));
  int child = std::stoi(ReadFile(run_dir / "child"));
  CHECK_FALSE(ProcessAlive(pid));
  CHECK_FALSE(ProcessAlive(child));
  CHECK(Sql("select reason from attempts where run_id = " + RunId(ran.run)) ==
        "timed out after " + timeout);
}

TEST_CASE("100 MiB of output is capped without blocking the task") {
  TempDir dir;
  WriteFile(dir / "kiln.toml", "[executor]\nlog_cap = \"1MiB\"\n");
  auto ran = RunPipeline(dir, R"([pipeline]
name = "loud"
[tasks.loud]
command = "head -c 104857600 /dev/zero; echo done >&2"
)",
                         {"--config", (dir / "kiln.toml").string()});
  INFO(ran.output.err);
  CHECK(ran.output.code == 0);
  fs::path log = dir / ("data/logs/loud/" + RunId(ran.run) + "/loud.1.log");
  std::string text = ReadFile(log);
  CHECK(text.size() < (1u << 20) + 200);
  CHECK(text.substr(0, 1u << 20) == std::string(1u << 20, '\0'));
  CHECK(text.substr(1u << 20) ==
        "\n[kiln: log truncated at 1048576 bytes; further output discarded]\n");
}

TEST_CASE("retries wait growing delays between attempts") {
  TempDir dir;
  auto ran = RunPipeline(dir, R"([pipeline]
name = "flaky"
[tasks.flaky]
command = "n=$(cat \"$KILN_RUN_DIR/n\" 2>/dev/null || echo 0); echo $((n+1)) > {{ run.dir }}/n; [ $n -ge 2 ]"
retries = 3
retry_delay = "200ms"
retry_backoff = 2.0
)");
  INFO(ran.output.err);
  CHECK(ran.output.code == 0);
  CHECK(TaskOf(ran.run, "flaky")["attempts"] == 3);
  std::string id = RunId(ran.run);
  CHECK(Sql("select attempt || ':' || state from attempts where run_id = " + id +
            " order by attempt") == "1:failed\n2:failed\n3:success");
  // Each attempt starts no earlier than its retry delay after the previous one ended.
  CHECK(Sql("select bool_and(a2.started_at - a1.ended_at >= interval '1 millisecond' * 200 * "
            "power(2, a1.attempt - 1)) from attempts a1 join attempts a2 on a2.run_id = "
            "a1.run_id and a2.attempt = a1.attempt + 1 where a1.run_id = " +
            id) == "t");
  CHECK(Sql("select string_agg(detail->>'reason', ',' order by id) from events where run_id = " +
            id + " and to_state = 'up_for_retry'") ==
        "exit code 1; retrying in 200ms,exit code 1; retrying in 400ms");
}

TEST_CASE("a skip exit code ends the task skipped and skips its downstream") {
  TempDir dir;
  auto ran = RunPipeline(dir, R"([pipeline]
name = "skipper"
[tasks.gate]
command = "exit 99"
skip_exit_codes = [99]
[tasks.promote]
needs = ["gate"]
command = "true"
)");
  CHECK(ran.output.code == 0);
  CHECK(ran.run["state"] == "success");
  CHECK(TaskOf(ran.run, "gate")["state"] == "skipped");
  CHECK(TaskOf(ran.run, "gate")["exit_code"] == 99);
  CHECK(TaskOf(ran.run, "promote")["state"] == "skipped");
  CHECK(TaskOf(ran.run, "promote")["attempts"] == 0);
}

TEST_CASE("a one_failed alert runs when an upstream fails") {
  TempDir dir;
  auto ran = RunPipeline(dir, R"([pipeline]
name = "alerting"
[tasks.train]
command = "exit 3"
[tasks.ok]
command = "true"
[tasks.alert]
needs = ["train", "ok"]
trigger_rule = "one_failed"
command = "echo alert > {{ run.dir }}/alerted"
allow_failure = true
)");
  CHECK(ran.output.code == 1);
  CHECK(ran.run["state"] == "failed");
  CHECK(TaskOf(ran.run, "train")["exit_code"] == 3);
  CHECK(TaskOf(ran.run, "alert")["state"] == "success");
  CHECK(ReadFile(dir / ("data/runs/alerting/" + RunId(ran.run) + "/alerted")) == "alert\n");
}

TEST_CASE("hostile params reach the task byte for byte and never run as shell") {
  TempDir dir;
  std::string hostile = "$(touch pwned) `touch pwned` '; touch pwned; echo '\n\"x\"";
  auto ran = RunPipeline(dir, R"([pipeline]
name = "hostile"
[params]
value = "plain"
[tasks.shell]
command = "printf %s {{ params.value }} > {{ run.dir }}/shell"
[tasks.argv]
argv = ["/bin/sh", "-c", "printf %s \"$1\" > \"$2\"", "sh", "{{ params.value }}", "{{ run.dir }}/argv"]
)",
                         {"-p", "value=" + hostile});
  INFO(ran.output.err);
  CHECK(ran.output.code == 0);
  fs::path run_dir = dir / ("data/runs/hostile/" + RunId(ran.run));
  CHECK(ReadFile(run_dir / "shell") == hostile);
  CHECK(ReadFile(run_dir / "argv") == hostile);
  CHECK_FALSE(fs::exists(dir / "pwned"));
  CHECK_FALSE(fs::exists(run_dir / "pwned"));
}

TEST_CASE("a program that cannot start fails its task with the reason in its log") {
  TempDir dir;
  auto ran = RunPipeline(dir, R"([pipeline]
name = "missing"
[tasks.nobin]
argv = ["/nonexistent/program"]
[tasks.nodir]
command = "true"
workdir = "no/such/folder"
)");
  CHECK(ran.output.code == 1);
  std::string id = RunId(ran.run);
  CHECK(TaskOf(ran.run, "nobin")["state"] == "failed");
  CHECK(TaskOf(ran.run, "nodir")["state"] == "failed");
  CHECK(ReadFile(dir / ("data/logs/missing/" + id + "/nobin.1.log"))
            .find("cannot start '/nonexistent/program': No such file or directory") !=
        std::string::npos);
  CHECK(ReadFile(dir / ("data/logs/missing/" + id + "/nodir.1.log")).find("no/such/folder") !=
        std::string::npos);
}

TEST_CASE("kiln run stops driving a run the database says is no longer its own") {
  TempDir dir;
  const std::string name = "taken-" + std::to_string(::getpid());
  // The first task hands the run to another owner, as a daemon does when kiln run's lease
  // lapses: its own end is then refused.
  auto ran = RunPipeline(
      dir, "[pipeline]\nname = \"" + name + "\"\n[tasks.a]\nargv = [\"psql\", \"" + DatabaseUrl() +
               "\", \"-qAtc\", \"UPDATE runs SET lease_owner = 'elsewhere' WHERE "
               "pipeline = '" +
               name + "'\"]\n[tasks.b]\ncommand = \"sleep 30 # " + name + "\"\nneeds = [\"a\"]\n");
  CHECK(ran.output.code == 1);
  CHECK(ran.output.err.find("is no longer this process's to drive") != std::string::npos);
  // Nothing of the end or what followed it was written; no task process is left.
  CHECK(Sql("SELECT t.task_id || ' ' || t.state FROM task_instances t JOIN runs r ON r.id = "
            "t.run_id WHERE r.pipeline = '" +
            name + "' ORDER BY t.position") == "a running\nb pending");
  CHECK(ProcessesMentioning("sleep 30 # " + name).empty());
}

TEST_CASE("a malformed pipeline is reported with file:line:col and nothing is written") {
  TempDir dir;
  std::string before = RunCount();
  WriteFile(dir / "bad.toml",
            "[pipeline]\nname = \"bad\"\n[tasks.a]\ncommand = \"true\"\nneeds = [\"b\"]\n");
  auto r = Kiln({"run", "bad.toml", "--data-dir", (dir / "data").string()}, dir.path());
  CHECK(r.code == 1);
  CHECK(r.err.starts_with("bad.toml:5:"));
  CHECK(r.out.empty());
  auto v = Kiln({"validate", "bad.toml"}, dir.path());
  CHECK(v.code == 1);
  CHECK(v.err.starts_with("bad.toml:5:"));
  CHECK(RunCount() == before);
}

TEST_CASE("an undeclared or ill-typed -p is refused before anything is written") {
  TempDir dir;
  std::string before = RunCount();
  WriteFile(dir / "p.toml",
            "[pipeline]\nname = \"typed\"\n[params]\nepochs = 3\n[tasks.a]\ncommand = \"true\"\n");
  auto r = Kiln({"run", "p.toml", "-p", "epoch=4"}, dir.path());
  CHECK(r.code == 1);
  CHECK(r.err == "p.toml:3:1: params: undeclared param 'epoch' (declared: epochs) (from -p)\n");
  r = Kiln({"run", "p.toml", "-p", "epochs=many"}, dir.path());
  CHECK(r.code == 1);
  CHECK(r.err ==
        "p.toml:4:10: params.epochs: param 'epochs' expects an integer, got 'many' (from -p)\n");
  CHECK(RunCount() == before);
}

TEST_CASE("an unreachable database is one line naming the URL without its password") {
  TempDir dir;
  WriteFile(dir / "p.toml", "[pipeline]\nname = \"p\"\n[tasks.a]\ncommand = \"true\"\n");
  auto r = Kiln({"run", "p.toml"}, dir.path(),
                {{"KILN_DATABASE_URL", "postgresql://kiln:s3cret@127.0.0.1:1/kiln"}});
  CHECK(r.code == 1);
  CHECK(r.err.find("s3cret") == std::string::npos);
  CHECK(r.err.starts_with("kiln: "));
  CHECK(r.err.find("postgresql://kiln:***@127.0.0.1:1/kiln") != std::string::npos);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
}

TEST_CASE("without a database URL kiln runs on its own embedded PostgreSQL") {
  TempDir dir;
  WriteFile(dir / "p.toml", "[pipeline]\nname = \"embedded\"\n[tasks.a]\ncommand = \"true\"\n");
  auto r = Kiln({"run", "p.toml", "--output", "json", "--data-dir", (dir / "data").string()},
                dir.path(), {{"KILN_DATABASE_URL", ""}});
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK(json::parse(r.out)["state"] == "success");
  // The cluster was stopped on exit.
  CHECK_FALSE(fs::exists(dir / "data/postgres/postmaster.pid"));
}

TEST_CASE("graph prints dot and mermaid") {
  TempDir dir;
  WriteFile(dir / "p.toml",
            "[pipeline]\nname = \"g\"\n[tasks.a]\ncommand = \"true\"\n[tasks.b]\nneeds = "
            "[\"a\"]\ncommand = \"true\"\n");
  auto dot = Kiln({"graph", "p.toml", "--format", "dot"}, dir.path());
  CHECK(dot.code == 0);
  CHECK(dot.out.find("\"a\" -> \"b\"") != std::string::npos);
  auto mermaid = Kiln({"graph", "p.toml", "--format", "mermaid"}, dir.path());
  CHECK(mermaid.code == 0);
  CHECK(mermaid.out.starts_with("flowchart"));
}

TEST_CASE("kiln run -j limits parallel tasks without refusing a wide task") {
  TempDir dir;
  auto ran = RunPipeline(dir, R"([pipeline]
name = "wide"
[tasks.wide]
command = "true"
slots = 3
[tasks.gpu]
command = "true"
pool = "gpu"
slots = 40
)",
                         {"-j", "2"});
  INFO(ran.output.err);
  CHECK(ran.output.code == 0);
  CHECK(TaskOf(ran.run, "wide")["state"] == "success");
  CHECK(TaskOf(ran.run, "gpu")["state"] == "success");
}

TEST_CASE("validate reports two files claiming the same pipeline name") {
  TempDir dir;
  WriteFile(dir / "a/p.toml", "[pipeline]\nname = \"same\"\n[tasks.a]\ncommand = \"true\"\n");
  WriteFile(dir / "b/p.toml", "[pipeline]\nname = \"same\"\n[tasks.b]\ncommand = \"true\"\n");
  auto r = Kiln({"validate", "."}, dir.path());
  CHECK(r.code == 1);
  CHECK(r.err.find("/p.toml:2:8: pipeline.name: 'same' is also the name of") != std::string::npos);
  CHECK(r.err.find("1 error in 2 files") != std::string::npos);
  // One file reached twice, through its folder and by name: one file, no clash with itself.
  auto twice = Kiln({"validate", "a", "a/p.toml", "./a/p.toml"}, dir.path());
  CHECK(twice.code == 0);
  CHECK(twice.out == "ok: 1 pipeline\n");
}

TEST_CASE("usage errors name what is wrong and exit 2") {
  auto unknown = Kiln({"bogus"});
  CHECK(unknown.code == 2);
  CHECK(unknown.err.starts_with("kiln: unknown command 'bogus' (commands: validate, graph, run, "));
  auto nested = Kiln({"schedule", "nxt"});
  CHECK(nested.code == 2);
  CHECK(nested.err == "kiln: unknown command 'nxt' of 'schedule' (commands: next)\n");
  auto zero = Kiln({"run", "p.toml", "-j", "0"});
  CHECK(zero.code == 2);
  CHECK(zero.err.starts_with("--parallel: must be a whole number from 1 to 2147483647, not '0'\n"));
  // A log has no JSON form: the option is not offered.
  auto json = Kiln({"logs", "1", "a", "--output", "json"});
  CHECK(json.code == 2);
  CHECK(json.err.starts_with("The following arguments were not expected: json --output\n"));
  CHECK(Kiln({"--version"}).code == 0);
}

TEST_CASE("kiln run killed with SIGKILL: its guard stops its tasks' processes") {
  TempDir dir;
  const std::string name = Unique("killed");
  const std::string d = dir.path().string();
  WriteFile(dir / "p.toml",
            "[pipeline]\nname = \"" + name +
                "\"\n[tasks.a]\ncommand = \"setsid sleep 600 & e=$!; sleep 600 & echo $$ $! $e > " +
                d + "/pids; wait\"\n");
  // Its stderr into a file: the guard writes there after kiln run is gone.
  Output out;
  std::thread running([&] {
    out = Exec({"/bin/sh", "-c",
                "exec " + KilnBinary() + " run " + d + "/p.toml --data-dir " + d + "/data 2> " + d +
                    "/stderr"},
               {}, {{"KILN_DATABASE_URL", DatabaseUrl()}});
  });
  WaitFor([&] { return ReadFile(dir / "pids").ends_with("\n"); }, "the task to start");
  std::istringstream pids(ReadFile(dir / "pids"));
  int task = 0, background = 0, escaped = 0;
  pids >> task >> background >> escaped;
  // kiln run and its guard (a fork of it, named kiln-guard) share a command line.
  int run = 0, guard = 0;
  for (int pid : ProcessesMentioning(d + "/p.toml")) {
    (ReadFile("/proc/" + std::to_string(pid) + "/comm") == "kiln-guard\n" ? guard : run) = pid;
  }
  REQUIRE(run > 0);
  REQUIRE(guard > 0);
  CHECK(getpgid(guard) == guard);  // a group of its own: a signal to kiln run's misses it
  kill(run, SIGKILL);
  running.join();
  CHECK(out.code == 128 + SIGKILL);
  WaitFor([&] { return !ProcessAlive(task) && !ProcessAlive(background) && !ProcessAlive(guard); },
          "the task's processes and the guard to end");
  // A process that left the task's group is found in its cgroup, where kiln has cgroups (root,
  // cgroup v1), as Cgroups::Open decides.
  if (access("/sys/fs/cgroup/pids/tasks", W_OK) == 0) {
    WaitFor([&] { return !ProcessAlive(escaped); }, "the process that left the group to end");
  } else {
    CHECK(ProcessAlive(escaped));
    kill(escaped, SIGKILL);
  }
  INFO(ReadFile(dir / "stderr"));
  // (How many it found in its cgroups, as root, depends on who else cleans them up meanwhile.)
  CHECK_THAT(ReadFile(dir / "stderr"),
             Catch::Contains("kiln guard: kiln run (pid " + std::to_string(run) +
                             ") is gone; stopped the processes of its 1 running task(s) ("));
}
