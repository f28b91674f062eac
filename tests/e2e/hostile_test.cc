// Hostile input against a real daemon and the real binary: files that crashed the parser, tasks
// that try to leave their box.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "common/users.h"
#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

namespace {

std::string Dotted(int parts) {
  std::string out = "a";
  for (int i = 1; i < parts; ++i) out += ".a";
  return out;
}

const std::string kDeepKeyError =
    "invalid TOML: a dotted key or table name of more than 32 parts (kiln reads at most 32)";

}  // namespace

TEST_CASE("files that overflowed the parser's stack are load errors: the daemon stays up") {
  TempDir dir;
  const std::string good = Unique("hostile-good");
  WriteFile(dir / "pipelines/good.toml", Pipeline(good, ""));
  WriteFile(dir / "pipelines/keys.toml", Dotted(100000) + " = 1\n");
  WriteFile(dir / "pipelines/header.toml", "[" + Dotted(50000) + "]\n");
  REQUIRE(mkfifo((dir / "pipelines/fifo.toml").c_str(), 0600) == 0);

  // kiln validate reports both, with file:line:col, and exits 1 (the FIFO is not a file).
  auto v = Kiln({"validate", "pipelines"}, dir.path());
  CHECK(v.code == 1);
  CHECK(v.err.find("pipelines/keys.toml:1:1: " + kDeepKeyError) != std::string::npos);
  CHECK(v.err.find("pipelines/header.toml:1:2: " + kDeepKeyError) != std::string::npos);
  CHECK(v.err.find("2 errors in 3 files") != std::string::npos);

  Daemon daemon(dir, dir / "pipelines");
  CHECK(daemon.first_line().starts_with("kiln: 1 pipelines loaded, 2 with errors; serving on"));
  auto op = daemon.Client(kOperatorToken);
  // Listed under their file names, having none that could be read.
  json keys = Body(op.Get("/api/v1/pipelines/keys.toml"));
  CHECK(keys["load_error"] == (dir / "pipelines/keys.toml").string() + ":1:1: " + kDeepKeyError);

  // The same written while it runs: reported, and the daemon goes on serving.
  const int64_t mark = LastEventId();
  WriteFile(dir / "pipelines/later.toml", "x = " + std::string(50000, '[') + "\n");
  ReadEvents(
      daemon, "pipeline=later.toml",
      [](const json& e) { return e["kind"] == "pipeline_load_failed"; }, mark);
  CHECK(Body(op.Get("/api/v1/pipelines/later.toml"))["load_error"] ==
        (dir / "pipelines/later.toml").string() +
            ":1:37: invalid TOML: arrays, inline tables and table names nested more than 32 deep "
            "(kiln reads at most 32)");
  const int64_t run = Trigger(op, good);
  CHECK(WaitForRunEnd(daemon, run) == "success");
}

TEST_CASE("a task's process that left its group is killed on cancel and on timeout") {
  TempDir dir;
  const std::string cancelled = Unique("escape-cancel");
  const std::string timed = Unique("escape-timeout");
  // `setsid` gives the background sleep a session and process group of its own; $! is its pid.
  auto escaping = [&](const std::string& name, const std::string& file, const std::string& keys) {
    return "[pipeline]\nname = \"" + name + "\"\n[tasks.t]\n" + keys +
           "command = \"setsid sleep 300 & echo $! > " + (dir / file).string() + "; sleep 300\"\n";
  };
  WriteFile(dir / "pipelines/c.toml", escaping(cancelled, "escaped-c", ""));
  WriteFile(dir / "pipelines/t.toml", escaping(timed, "escaped-t", "timeout = \"2s\"\n"));
  Daemon daemon(dir, dir / "pipelines");
  auto op = daemon.Client(kOperatorToken);
  auto escapee = [&](const std::string& file) {
    WaitFor([&] { return !ReadFile(dir / file).empty(); }, "the task to start its escapee");
    return static_cast<pid_t>(std::stol(ReadFile(dir / file)));
  };
  auto gone = [](pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; };

  int64_t run = Trigger(op, cancelled);
  pid_t first = escapee("escaped-c");
  CHECK_FALSE(gone(first));
  CHECK(op.Post(("/api/v1/runs/" + std::to_string(run) + "/cancel").c_str(), "", kJson)->status ==
        202);
  CHECK(WaitForRunEnd(daemon, run) == "cancelled");
  WaitFor([&] { return gone(first); }, "the escapee of the cancelled task to be gone");

  run = Trigger(op, timed);
  pid_t second = escapee("escaped-t");
  CHECK(WaitForRunEnd(daemon, run) == "failed");
  WaitFor([&] { return gone(second); }, "the escapee of the timed-out task to be gone");
}

TEST_CASE(
    "a task runs as its run's own user and reaches neither the database, kiln's files "
    "nor another run") {
  if (::geteuid() != 0) return;  // only a daemon run as root switches tasks to another user
  TempDir dir;
  const std::string holder = Unique("box-holder");
  const std::string prober = Unique("box-probe");
  const std::string data = (dir / "data").string();
  // The holder's task waits, its pid where the prober finds it; the prober prints what it got.
  WriteFile(dir / "pipelines/holder.toml",
            "[pipeline]\nname = \"" + holder + "\"\n[tasks.hold]\ncommand = \"echo $$ > " +
                (dir / "holder.pid").string() + "; touch $KILN_RUN_DIR/mine; while [ ! -e " +
                (dir / "release").string() + " ]; do sleep 0.05; done\"\n");
  const std::string probe =
      "echo ids: $(id -u) $(id -g) / $(id -G)\n"
      "echo user: $USER\n"
      "for role in kiln postgres; do\n"
      "  if psql -X -h " +
      data +
      "/postgres -U $role -d kiln -c 'SELECT 1' >/dev/null 2>err; then\n"
      "    echo $role: connected\n"
      "  else\n"
      "    grep -q 'Permission denied' err && echo $role: refused\n"
      "  fi\n"
      "done\n"
      "ls " +
      data +
      "/postgres >/dev/null 2>&1 && echo cluster: listed || echo cluster: refused\n"
      "cat " +
      data +
      "/postgres.log >/dev/null 2>&1 && echo server log: read || "
      "echo server log: refused\n"
      "ls " +
      data +
      "/logs >/dev/null 2>&1 && echo logs: listed || echo logs: refused\n"
      "touch " +
      data +
      "/logs/planted 2>/dev/null && echo logs: written || echo logs: not written\n"
      "ls " +
      data +
      "/runs >/dev/null 2>&1 && echo runs: listed || echo runs: refused\n"
      "ls " +
      data +
      "/supervisor >/dev/null 2>&1 && echo supervisor: listed || "
      "echo supervisor: refused\n"
      "kill -0 1 2>/dev/null && echo init: signalled || echo init: refused\n"
      "kill -0 $(cat " +
      (dir / "holder.pid").string() +
      ") 2>/dev/null && "
      "echo other run\\'s task: signalled || echo other run\\'s task: refused\n"
      "ls \"$KILN_PARAM_OTHER\" >/dev/null 2>&1 && echo other run folder: listed || "
      "echo other run folder: refused\n"
      "touch \"$KILN_PARAM_OTHER/planted\" 2>/dev/null && echo other run folder: written || "
      "echo other run folder: not written\n"
      "[ \"$HOME\" = \"$KILN_RUN_DIR\" ] && echo home: the run folder\n"
      "touch \"$KILN_RUN_DIR/out\" && echo run folder: written\n";
  WriteFile(dir / "probe.sh", probe);
  WriteFile(dir / "pipelines/probe.toml",
            "[pipeline]\nname = \"" + prober + "\"\n[params]\nother = \"\"\n[tasks.probe]\n" +
                "argv = [\"/bin/sh\", \"" + (dir / "probe.sh").string() +
                "\"]\nworkdir = \"..\"\n");
  DaemonOptions options(dir / "pipelines");
  options.embedded = true;
  Daemon daemon(dir, options);
  auto op = daemon.Client(kOperatorToken);

  const int64_t held = Trigger(op, holder);
  WaitFor([&] { return ReadFile(dir / "holder.pid").ends_with("\n"); }, "the holder to start");
  const std::string held_dir = data + "/runs/" + holder + "/" + std::to_string(held);
  const int64_t run = Trigger(op, prober, json{{"params", {{"other", held_dir}}}}.dump());
  CHECK(WaitForRunEnd(daemon, run) == "success");
  auto task_group = kiln::LookupIdentity("kiln-task");
  REQUIRE(task_group.ok());
  const std::string uid = std::to_string(1879048192 + run % 16777216);
  CHECK(ReadFile(dir / "data/logs" / prober / std::to_string(run) / "probe.1.log") ==
        "ids: " + uid + " " + uid + " / " + uid + " " + std::to_string(task_group->gid) +
            "\nuser: kiln-task\nkiln: refused\npostgres: refused\ncluster: refused\n"
            "server log: refused\nlogs: refused\nlogs: not written\nruns: refused\n"
            "supervisor: refused\ninit: refused\nother run's task: refused\n"
            "other run folder: refused\nother run folder: not written\nhome: the run folder\n"
            "run folder: written\n");
  const std::string run_dir = data + "/runs/" + prober + "/" + std::to_string(run);
  struct stat st {};
  REQUIRE(::stat((run_dir + "/out").c_str(), &st) == 0);
  CHECK(std::to_string(st.st_uid) == uid);
  // Its run has ended: the folder is closed to every task, until a retry opens it again.
  REQUIRE(::stat(run_dir.c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  CHECK((st.st_mode & 07777) == 0700);
  REQUIRE(::stat(held_dir.c_str(), &st) == 0);
  CHECK(std::to_string(st.st_uid) == std::to_string(1879048192 + held % 16777216));
  CHECK((st.st_mode & 07777) == 0700);
  CHECK_FALSE(std::filesystem::exists(held_dir + "/planted"));
  CHECK_FALSE(std::filesystem::exists(dir / "data/logs/planted"));
  WriteFile(dir / "release", "");
  CHECK(WaitForRunEnd(daemon, held) == "success");

  // A working directory the task's user may not enter: a start failure that names the user.
  const std::string closed = Unique("box-closed");
  std::filesystem::create_directory(dir / "closed");
  ::chmod((dir / "closed").c_str(), 0700);
  WriteFile(dir / "pipelines/closed.toml", "[pipeline]\nname = \"" + closed +
                                               "\"\n[tasks.t]\ncommand = \"true\"\n"
                                               "workdir = \"../closed\"\n");
  WaitFor([&] { return op.Get(("/api/v1/pipelines/" + closed).c_str())->status == 200; },
          "the new pipeline to load");
  const int64_t refused = Trigger(op, closed);
  CHECK(WaitForRunEnd(daemon, refused) == "failed");
  CHECK(ReadFile(dir / "data/logs" / closed / std::to_string(refused) / "t.1.log") ==
        "[kiln: working directory '" + (dir / "pipelines/../closed").string() +
            "' is not accessible: Permission denied (as user 'kiln-task')]\n");
}

TEST_CASE("kiln run on a daemon's data folder leaves the daemon's embedded database running") {
  // The docs' way to check a gate against the daemon's champion: `kiln run` with its config.
  TempDir dir;
  const std::string name = Unique("beside");
  WriteFile(dir / "pipelines/p.toml",
            "[pipeline]\nname = \"" + name + "\"\n[tasks.t]\ncommand = \"echo beside\"\n");
  DaemonOptions options(dir / "pipelines");
  options.embedded = true;
  Daemon daemon(dir, options);
  auto op = daemon.Client(kOperatorToken);
  auto ran = Kiln({"run", "--config", (dir / "kiln.toml").string(), "--data-dir",
                   (dir / "data").string(), (dir / "pipelines/p.toml").string()},
                  {}, {{"KILN_DATABASE_URL", ""}});
  INFO(ran.err);
  CHECK(ran.code == 0);
  CHECK(ran.err.find("left by an earlier kiln") == std::string::npos);
  // The daemon still reads and writes its database, and sees the foreground run.
  auto runs = op.Get(("/api/v1/runs?pipeline=" + name).c_str());
  REQUIRE(runs);
  CHECK(runs->status == 200);
  CHECK(Body(runs)["runs"].size() == 1);
  CHECK(WaitForRunEnd(daemon, Trigger(op, name)) == "success");
  CHECK(daemon.Stop() == 0);
}

TEST_CASE("a daemon on the embedded database that stops with nothing left stops its cluster") {
  // on_stop = "leave": the daemon and its idle supervisor go at once; one of them, the last to
  // use the cluster, stops it.
  TempDir dir;
  WriteFile(dir / "pipelines/p.toml",
            "[pipeline]\nname = \"" + Unique("idle") + "\"\n[tasks.t]\ncommand = \"true\"\n");
  DaemonOptions options(dir / "pipelines");
  options.embedded = true;
  options.on_stop = "leave";
  {
    Daemon daemon(dir, options);
    CHECK(std::filesystem::exists(dir / "data/postgres/postmaster.pid"));
    CHECK(daemon.Stop() == 0);
  }
  WaitFor([&] { return !std::filesystem::exists(dir / "data/postgres/postmaster.pid"); },
          "the embedded cluster to stop");
}
