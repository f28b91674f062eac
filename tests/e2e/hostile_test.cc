// Hostile input against a real daemon and the real binary: files that crashed the parser.
#include <sys/stat.h>

#include <catch2/catch.hpp>
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
