// Hostile input against a real daemon and the real binary: files that crashed the parser, tasks
// that try to leave their box.
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <nlohmann/json.hpp>

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
