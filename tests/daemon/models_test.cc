// The daemon's side of the model registry that needs no database: keeping an artifact, the
// champion cache, what a passed gate's results register, a drift's ask.
#include "daemon/models.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "common/sha256.h"
#include "daemon/service.h"

using namespace kiln;
namespace fs = std::filesystem;

namespace {

class Folders {
 public:
  Folders() {
    static int counter = 0;
    root_ = fs::temp_directory_path() /
            ("kiln_models_" + std::to_string(::getpid()) + "_" +
             std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "_" +
             std::to_string(++counter));
    fs::create_directories(root_ / "run");
    fs::create_directories(root_ / "pipeline");
  }
  ~Folders() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  fs::path operator/(const std::string& rest) const { return root_ / rest; }
  static void Write(const fs::path& file, const std::string& bytes) {
    std::ofstream(file, std::ios::binary) << bytes;
  }

 private:
  fs::path root_;
};

std::string Read(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

dag::Value Str(std::string key, std::string value) {
  dag::Value v;
  v.type = dag::Value::Type::kString;
  v.key = std::move(key);
  v.string = std::move(value);
  return v;
}

}  // namespace

TEST_CASE("an artifact is kept by its content hash, and only the file the gate read") {
  Folders f;
  Folders::Write(f / "run/model.pkl", "weights");
  const std::string sha = Sha256Hex("weights");
  auto kept = daemon::KeepArtifact(f / "models", f / "run", f / "pipeline",
                                   (f / "run/model.pkl").string(), sha, 7);
  REQUIRE(kept.ok());
  CHECK(*kept == 7);
  CHECK(Read(f / ("models/" + sha)) == "weights");
  // Changed since: refused, by size before copying, by hash after.
  Folders::Write(f / "run/model.pkl", "other weights");
  auto resized = daemon::KeepArtifact(f / "models", f / "run", f / "pipeline",
                                      (f / "run/model.pkl").string(), sha, 7);
  CHECK(resized.status().code() == ErrorCode::kInvalidArgument);
  CHECK(resized.message() == "artifact '" + (f / "run/model.pkl").string() +
                                 "' is not the file the gate read (its size differs from the "
                                 "gate's 7 bytes)");
  Folders::Write(f / "run/model.pkl", "WEIGHTS");
  auto rehashed = daemon::KeepArtifact(f / "models", f / "run", f / "pipeline",
                                       (f / "run/model.pkl").string(), sha, 7);
  CHECK(rehashed.message() == "artifact '" + (f / "run/model.pkl").string() +
                                  "' is not the file the gate read (its SHA-256 differs from the "
                                  "gate's " +
                                  sha + ")");
  // No temporary file is left behind.
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(f / "models")) ++files;
  CHECK(files == 1);
}

TEST_CASE("an artifact outside its folders, through a link or not a file is refused") {
  Folders f;
  Folders::Write(f / "secret", "s");
  fs::create_symlink(f / "secret", f / "run/link.pkl");
  fs::create_directories(f / "run/dir.pkl");
  auto outside = daemon::KeepArtifact(f / "models", f / "run", f / "pipeline",
                                      (f / "secret").string(), Sha256Hex("s"));
  CHECK(outside.message() == "artifact '" + (f / "secret").string() +
                                 "' is outside the run folder and the pipeline's folder");
  auto linked = daemon::KeepArtifact(f / "models", f / "run", f / "pipeline",
                                     (f / "run/link.pkl").string(), Sha256Hex("s"));
  CHECK_FALSE(linked.ok());
  CHECK(linked.status().code() == ErrorCode::kInvalidArgument);
  auto dotted = daemon::KeepArtifact(f / "models", f / "run", f / "pipeline",
                                     (f / "run/../secret").string(), Sha256Hex("s"));
  CHECK_FALSE(dotted.ok());
  auto folder = daemon::KeepArtifact(f / "models", f / "run", f / "pipeline",
                                     (f / "run/dir.pkl").string(), Sha256Hex("s"));
  CHECK(folder.message() ==
        "artifact '" + (f / "run/dir.pkl").string() + "' is not a regular file");
  CHECK_FALSE(fs::exists(f / ("models/" + Sha256Hex("s"))));
}

TEST_CASE("an artifact is read with the rights of the run's tasks") {
  Folders f;
  fs::create_directories(f / "pipeline/private");
  Folders::Write(f / "pipeline/private/model.pkl", "weights");
  fs::permissions(f / "pipeline/private", fs::perms::owner_all);
  fs::permissions(f / "pipeline/private/model.pkl", fs::perms::owner_read | fs::perms::owner_write);
  const std::string path = (f / "pipeline/private/model.pkl").string();
  const kiln::Identity task{"nobody", 65534, 65534, {65534}, true};
  auto as_task = daemon::KeepArtifact(f / "models", f / "run", f / "pipeline", path,
                                      Sha256Hex("weights"), 7, task);
  CHECK_FALSE(as_task.ok());
  if (::geteuid() == 0) {
    // What the task could not read is not read for it: the same answer a missing file gets.
    CHECK(as_task.message() == "artifact '" + path + "': Permission denied");
    CHECK(
        daemon::KeepArtifact(f / "models", f / "run", f / "pipeline", path, Sha256Hex("weights"), 7)
            .ok());
  }
}

TEST_CASE("a passed gate's results register what the pipeline file says, whatever the report") {
  dag::TaskSpec gate;
  gate.id = "gate";
  gate.kind = "gate";
  gate.options.type = dag::Value::Type::kTable;
  gate.options.items.push_back(Str("model", "churn"));
  dag::Value promote;
  promote.type = dag::Value::Type::kBool;
  promote.key = "promote";
  promote.boolean = true;
  gate.options.items.push_back(promote);
  dag::Value require;
  require.type = dag::Value::Type::kArray;
  require.key = "require";
  require.items.push_back(Str("", "accuracy >= champion.accuracy"));
  gate.options.items.push_back(require);
  const std::string sha(64, 'a');
  const std::string results = R"({"report": {"model": "other", "decision": "pass",
      "conditions": [], "metrics": {"accuracy": 0.9},
      "artifact": {"path": "/r/model.pkl", "sha256": ")" +
                              sha + R"(", "bytes": 3}}})";
  auto reg = daemon::RegistrationOf(gate, results);
  REQUIRE(reg.has_value());
  CHECK(reg->model == "churn");
  CHECK(reg->require == std::vector<std::string>{"accuracy >= champion.accuracy"});
  CHECK(reg->artifact == "/r/model.pkl");
  CHECK(reg->bytes == 3);
  // Not passed, wrong shapes, or another kind: nothing to register, and nothing thrown.
  CHECK_FALSE(daemon::RegistrationOf(gate, R"({"report": {"decision": "fail"}})").has_value());
  CHECK_FALSE(daemon::RegistrationOf(gate, R"({"report": {"decision": 3}})").has_value());
  CHECK_FALSE(daemon::RegistrationOf(gate, R"({"report": "x"})").has_value());
  CHECK_FALSE(daemon::RegistrationOf(gate, "not json").has_value());
  dag::TaskSpec shell;
  CHECK_FALSE(daemon::RegistrationOf(shell, results).has_value());
}

TEST_CASE("a drift's ask names the pipeline file's trigger and never throws on a bad report") {
  dag::TaskSpec drift;
  drift.id = "drift";
  drift.kind = "drift";
  drift.options.type = dag::Value::Type::kTable;
  drift.options.items = {Str("on_drift", "trigger"), Str("trigger", "retrain"),
                         Str("cooldown", "1h")};
  auto ask = daemon::DriftAskOf(drift, R"({"report": {"trigger": "elsewhere", "method": "psi",
      "drifted": ["age"], "columns": [{"column": "age", "statistic": 0.31, "drifted": true},
      {"column": "income", "statistic": 0.01, "drifted": false}]}})");
  REQUIRE(ask.has_value());
  CHECK(ask->pipeline == "retrain");
  CHECK(ask->cooldown == std::chrono::hours(1));
  CHECK(ask->note == "drift in task 'drift': age psi 0.3100");
  CHECK_FALSE(daemon::DriftAskOf(drift, R"({"report": {"drifted": []}})").has_value());
  CHECK_FALSE(daemon::DriftAskOf(drift, R"({"report": {"drifted": "yes"}})").has_value());
  // A column entry of the wrong shape: no ask, nothing thrown.
  CHECK_FALSE(daemon::DriftAskOf(drift, R"({"report": {"drifted": ["a"],
      "columns": [{"statistic": "x", "drifted": 1}]}})")
                  .has_value());
}

TEST_CASE("the champion cache follows what the registry says") {
  daemon::ChampionCache cache;
  CHECK_FALSE(cache.Get("churn").has_value());
  scheduler::ModelRecord model;
  model.name = "churn";
  scheduler::ModelVersionRecord v1;
  v1.version = 1;
  v1.metrics = R"({"accuracy": 0.8, "name": "x"})";
  scheduler::ModelVersionRecord v2 = v1;
  v2.version = 2;
  v2.champion = true;
  v2.metrics = R"({"accuracy": 0.9})";
  model.history = {v2, v1};
  cache.Update(model);
  REQUIRE(cache.Get("churn").has_value());
  CHECK(cache.Get("churn")->version == 2);
  CHECK(cache.Get("churn")->metrics == std::map<std::string, double>{{"accuracy", 0.9}});
  model.history[0].champion = false;
  cache.Update(model);
  CHECK_FALSE(cache.Get("churn").has_value());
}
