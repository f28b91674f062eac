#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/sha256.h"
#include "config/pipeline_loader.h"

namespace fs = std::filesystem;
using kiln::config::LoadPipelineDir;
using kiln::config::LoadPipelineFile;
using kiln::config::ParsePipeline;

namespace {

// A fresh folder, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string path = (fs::temp_directory_path() / "kiln-config-XXXXXX").string();
    REQUIRE(mkdtemp(path.data()) != nullptr);
    path_ = path;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path Write(const std::string& name, std::string_view text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
    return path_ / name;
  }

 private:
  fs::path path_;
};

std::string Pipeline(const std::string& name) {
  return "[pipeline]\nname = \"" + name + "\"\n[tasks.a]\ncommand = \"true\"\n";
}

}  // namespace

TEST_CASE("a file is loaded with its absolute path and the hash of its bytes") {
  TempDir dir;
  const std::string text = Pipeline("one");
  const fs::path file = dir.Write("one.toml", text);
  auto result = LoadPipelineFile(file);
  REQUIRE(result.pipeline);
  CHECK(result.pipeline->spec.file == file);
  CHECK(result.pipeline->spec.content_hash == kiln::Sha256Hex(text));
}

TEST_CASE("diagnostics name the file as given, the spec holds it absolute") {
  auto result = ParsePipeline("[pipeline]\nname = \"p\"\n", "pipelines/../p.toml");
  REQUIRE(result.diagnostics.size() == 1);
  CHECK(result.diagnostics[0].file == "pipelines/../p.toml");
  auto ok = ParsePipeline(Pipeline("p"), "pipelines/../p.toml");
  REQUIRE(ok.pipeline);
  CHECK(ok.pipeline->spec.file == fs::current_path() / "p.toml");
}

TEST_CASE("an unreadable file is one diagnostic") {
  TempDir dir;
  auto missing = LoadPipelineFile(dir.path() / "missing.toml");
  CHECK_FALSE(missing.pipeline);
  REQUIRE(missing.diagnostics.size() == 1);
  CHECK(missing.diagnostics[0].ToString() ==
        (dir.path() / "missing.toml").string() + ": cannot read file: No such file or directory");
  auto folder = LoadPipelineFile(dir.path());
  REQUIRE(folder.diagnostics.size() == 1);
  CHECK(folder.diagnostics[0].message == "cannot read file: it is a folder");
}

TEST_CASE("a folder's *.toml files are loaded in name order") {
  TempDir dir;
  dir.Write("b.toml", Pipeline("b"));
  dir.Write("a.toml", Pipeline("a"));
  dir.Write("c.toml", "[pipeline]\n");
  dir.Write("notes.md", "not a pipeline");
  dir.Write(".hidden.toml", "not loaded");
  fs::create_directory(dir.path() / "sub.toml");
  auto results = LoadPipelineDir(dir.path());
  REQUIRE(results.size() == 3);
  REQUIRE(results[0].pipeline);
  CHECK(results[0].pipeline->spec.name == "a");
  REQUIRE(results[1].pipeline);
  CHECK(results[1].pipeline->spec.name == "b");
  CHECK_FALSE(results[2].pipeline);
  CHECK(results[2].diagnostics.at(0).file == (dir.path() / "c.toml").string());

  auto none = LoadPipelineDir(dir.path() / "missing");
  REQUIRE(none.size() == 1);
  CHECK(none[0].diagnostics.at(0).message.starts_with("cannot read folder: "));
}

TEST_CASE("[defaults] apply unless the task sets the key, a task's env replaces the default env") {
  auto result = ParsePipeline(R"toml(
[pipeline]
name = "d"
[defaults]
command = "default.sh"
retries = 3
pool = "cpu"
env = { A = "defaults", B = "defaults" }
[tasks.inherits]
[tasks.own]
argv = ["own"]
retries = 0
pool = "gpu"
env = { B = "task", C = "task" }
)toml",
                              "d.toml");
  for (const auto& d : result.diagnostics) INFO(d.ToString());
  REQUIRE(result.pipeline);
  const auto& inherits = result.pipeline->spec.tasks.at(0);
  CHECK(inherits.id == "inherits");
  CHECK(inherits.command == "default.sh");
  CHECK(inherits.retry.retries == 3);
  CHECK(inherits.pool == "cpu");
  REQUIRE(inherits.env.size() == 2);
  CHECK(inherits.env[1].value == "defaults");
  const auto& own = result.pipeline->spec.tasks.at(1);
  CHECK_FALSE(own.command.has_value());
  CHECK(own.argv == std::vector<std::string>{"own"});
  CHECK(own.retry.retries == 0);
  CHECK(own.pool == "gpu");
  REQUIRE(own.env.size() == 2);
  CHECK(own.env[0].name == "B");
  CHECK(own.env[0].value == "task");
  CHECK(own.env[1].name == "C");
}

TEST_CASE("every key of a task is read") {
  auto result = ParsePipeline(R"toml(
[pipeline]
name = "all.keys"
paused = true
max_active_runs = 3
catchup = "all"
overlap = "cancel_running"
[tasks.t]
kind = "shell"
command = "run"
trigger_rule = "none_failed_min_one_success"
retries = 4
retry_delay = "1m30s"
retry_backoff = 3
max_retry_delay = "2h"
timeout = "250ms"
slots = 2
workdir = "sub/dir"
skip_exit_codes = [3, 4]
allow_failure = true
priority = -5
)toml",
                              "all.toml");
  for (const auto& d : result.diagnostics) INFO(d.ToString());
  REQUIRE(result.pipeline);
  const auto& spec = result.pipeline->spec;
  CHECK(spec.paused);
  CHECK(spec.max_active_runs == 3);
  CHECK(spec.catchup == "all");
  CHECK(spec.overlap == "cancel_running");
  CHECK(spec.timezone == "UTC");
  const auto& t = spec.tasks.at(0);
  using namespace std::chrono_literals;
  CHECK(t.trigger_rule == kiln::dag::TriggerRule::kNoneFailedMinOneSuccess);
  CHECK(t.retry.retries == 4);
  CHECK(t.retry.retry_delay == 90s);
  CHECK(t.retry.retry_backoff == 3.0);
  CHECK(t.retry.max_retry_delay == 2h);
  CHECK(t.timeout == 250ms);
  CHECK(t.slots == 2);
  CHECK(t.workdir == "sub/dir");
  CHECK(t.skip_exit_codes == std::vector<int>{3, 4});
  CHECK(t.allow_failure);
  CHECK(t.priority == -5);
}

TEST_CASE("tasks and params keep file order however they are written") {
  auto result = ParsePipeline(R"toml(
pipeline = { name = "order" }
params = { zeta = 1, alpha = "a", mid = true }
tasks.zz.command = "z"
[tasks.aa]
command = "a"
[tasks.mm]
command = "m"
)toml",
                              "order.toml");
  for (const auto& d : result.diagnostics) INFO(d.ToString());
  REQUIRE(result.pipeline);
  const auto& spec = result.pipeline->spec;
  REQUIRE(spec.tasks.size() == 3);
  CHECK(spec.tasks[0].id == "zz");
  CHECK(spec.tasks[1].id == "aa");
  CHECK(spec.tasks[2].id == "mm");
  REQUIRE(spec.params.size() == 3);
  CHECK(spec.params[0].name == "zeta");
  CHECK(spec.params[1].name == "alpha");
  CHECK(spec.params[2].name == "mid");
}

TEST_CASE("a bad value in [defaults] is one diagnostic, not one per task") {
  auto result = ParsePipeline(R"toml([pipeline]
name = "d"
[defaults]
slots = 0
env = { OUT = "{{ run.dri }}" }
[tasks.a]
command = "a"
[tasks.b]
command = "b"
)toml",
                              "d.toml");
  REQUIRE(result.diagnostics.size() == 2);
  CHECK(result.diagnostics[0].ToString() ==
        "d.toml:4:9: defaults.slots: must be at least 1, got 0");
  CHECK(result.diagnostics[1].ToString().starts_with(
      "d.toml:5:15: defaults.env.OUT: unknown template name 'run.dri' (known: "));
}
