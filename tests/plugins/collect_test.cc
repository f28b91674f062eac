#include "plugins/collect.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/sha256.h"

using kiln::plugins::CollectResults;
using kiln::plugins::CollectSpec;
using nlohmann::json;

namespace {

namespace fs = std::filesystem;

constexpr const char* kAbcSha256 =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

// A pipeline folder and a run folder under a fresh temp folder, removed with their files.
class Folders {
 public:
  Folders() {
    static int counter = 0;
    auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    root_ = fs::temp_directory_path() / ("kiln_collect_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(now) + "_" + std::to_string(++counter));
    fs::create_directories(root_ / "pipeline");
    fs::create_directories(root_ / "run");
  }
  ~Folders() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  fs::path pipeline() const { return root_ / "pipeline"; }
  fs::path run() const { return root_ / "run"; }
  fs::path outside() const { return root_; }
  static void Write(const fs::path& file, const std::string& bytes) {
    fs::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary) << bytes;
  }
  CollectSpec Spec() const {
    CollectSpec spec;
    spec.pipeline_dir = pipeline().string();
    spec.run_dir = run().string();
    return spec;
  }

 private:
  fs::path root_;
};

json Collected(const CollectSpec& spec) {
  auto results = CollectResults(spec);
  REQUIRE(results.ok());
  return json::parse(results.value());
}

std::string Problem(const CollectSpec& spec) {
  auto results = CollectResults(spec);
  REQUIRE_FALSE(results.ok());
  return results.message();
}

}  // namespace

TEST_CASE("collect hashes inputs from the pipeline folder and outputs from the run folder") {
  Folders f;
  Folders::Write(f.pipeline() / "data" / "train.csv", "abc");
  Folders::Write(f.run() / "model.pkl", "");
  CollectSpec spec = f.Spec();
  spec.inputs = {"data/train.csv"};
  spec.outputs = {f.run().string() + "/./model.pkl"};
  const json r = Collected(spec);
  REQUIRE(r["inputs"].size() == 1);
  CHECK(r["inputs"][0]["path"] == (f.pipeline() / "data" / "train.csv").string());
  CHECK(r["inputs"][0]["sha256"] == kAbcSha256);
  CHECK(r["inputs"][0]["bytes"] == 3);
  REQUIRE(r["outputs"].size() == 1);
  CHECK(r["outputs"][0]["path"] == (f.run() / "model.pkl").string());
  // SHA-256 of no bytes.
  CHECK(r["outputs"][0]["sha256"] ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(r["outputs"][0]["bytes"] == 0);
  CHECK_FALSE(r.contains("metrics"));
}

TEST_CASE("collect hashes a file larger than its read block") {
  Folders f;
  std::string big(3 * (1 << 20) + 17, 'x');
  Folders::Write(f.run() / "big.bin", big);
  CollectSpec spec = f.Spec();
  spec.outputs = {(f.run() / "big.bin").string()};
  const json r = Collected(spec);
  CHECK(r["outputs"][0]["bytes"] == big.size());
  CHECK(r["outputs"][0]["sha256"] == kiln::Sha256Hex(big));
}

TEST_CASE("collect names every missing declared file with its resolved path") {
  Folders f;
  CollectSpec spec = f.Spec();
  spec.inputs = {"train.csv"};
  spec.outputs = {(f.run() / "model.pkl").string()};
  CHECK(Problem(spec) == "input 'train.csv' (" + (f.pipeline() / "train.csv").string() +
                             ") does not exist\noutput '" + (f.run() / "model.pkl").string() +
                             "' does not exist");
}

TEST_CASE("collect refuses paths that leave their folder") {
  Folders f;
  Folders::Write(f.outside() / "secret.txt", "s");
  CollectSpec spec = f.Spec();
  spec.inputs = {"../secret.txt"};
  CHECK(Problem(spec) ==
        "input '../secret.txt' leaves the pipeline's folder " + f.pipeline().string());
  spec.inputs = {(f.outside() / "secret.txt").string()};
  CHECK(Problem(spec) == "input '" + (f.outside() / "secret.txt").string() +
                             "' is outside the run folder and the pipeline's folder (absolute "
                             "paths elsewhere need allow_absolute_paths = true in [executor] of "
                             "kiln.toml)");
  spec.allow_absolute = true;
  CHECK(Collected(spec)["inputs"][0]["bytes"] == 1);
}

TEST_CASE("collect follows no symbolic link out of the run folder") {
  Folders f;
  Folders::Write(f.outside() / "secret.txt", "s");
  fs::create_symlink(f.outside() / "secret.txt", f.run() / "model.pkl");
  Folders::Write(f.run() / "real.txt", "abc");
  fs::create_symlink("real.txt", f.run() / "inside.txt");
  CollectSpec spec = f.Spec();
  spec.outputs = {(f.run() / "model.pkl").string()};
  CHECK(Problem(spec) == "output '" + (f.run() / "model.pkl").string() +
                             "' leads out of its folder through '..' or a symbolic link");
  // A link that stays inside is followed.
  spec.outputs = {(f.run() / "inside.txt").string()};
  CHECK(Collected(spec)["outputs"][0]["sha256"] == kAbcSha256);
}

TEST_CASE("collect refuses folders and FIFOs without blocking on them") {
  Folders f;
  fs::create_directories(f.run() / "dir");
  REQUIRE(::mkfifo((f.run() / "pipe").c_str(), 0600) == 0);
  CollectSpec spec = f.Spec();
  spec.outputs = {(f.run() / "dir").string(), (f.run() / "pipe").string()};
  CHECK(Problem(spec) == "output '" + (f.run() / "dir").string() +
                             "' is a folder, not a file\noutput '" + (f.run() / "pipe").string() +
                             "' is not a regular file");
}

TEST_CASE("collect records a flat metrics object") {
  Folders f;
  Folders::Write(f.run() / "metrics.json", R"({"accuracy": 0.93, "rows": 1200, "loss": -1e-3})");
  CollectSpec spec = f.Spec();
  spec.metrics = (f.run() / "metrics.json").string();
  const json r = Collected(spec);
  CHECK(r["metrics"] == json::parse(R"({"accuracy": 0.93, "rows": 1200, "loss": -0.001})"));
  CHECK(r["inputs"] == json::array());
  CHECK(r["outputs"] == json::array());
}

TEST_CASE("collect refuses a metrics file that is not a flat object of numbers") {
  Folders f;
  CollectSpec spec = f.Spec();
  spec.metrics = "metrics.json";
  const std::string where =
      "metrics file 'metrics.json' (" + (f.pipeline() / "metrics.json").string() + ") ";
  Folders::Write(f.pipeline() / "metrics.json", R"({"accuracy": "high"})");
  CHECK(Problem(spec) ==
        where + "key 'accuracy' is a string; expected a number (a flat JSON object of numbers)");
  Folders::Write(f.pipeline() / "metrics.json", R"({"nested": {"a": 1}})");
  CHECK(Problem(spec) ==
        where + "key 'nested' is an object; expected a number (a flat JSON object of numbers)");
  Folders::Write(f.pipeline() / "metrics.json", R"({"flag": true})");
  CHECK(Problem(spec) ==
        where + "key 'flag' is a boolean; expected a number (a flat JSON object of numbers)");
  Folders::Write(f.pipeline() / "metrics.json", R"({"none": null})");
  CHECK(Problem(spec) ==
        where + "key 'none' is null; expected a number (a flat JSON object of numbers)");
  Folders::Write(f.pipeline() / "metrics.json", "[1, 2]");
  CHECK(Problem(spec) == where +
                             "holds a JSON array; expected a flat JSON object of numbers, e.g. "
                             "{\"accuracy\": 0.93}");
  Folders::Write(f.pipeline() / "metrics.json", R"({"accuracy": 1e999})");
  CHECK(Problem(spec) ==
        where +
            "holds a number too large for a double; expected a flat JSON object of numbers, e.g. "
            "{\"accuracy\": 0.93}");
  // A name twice: which value the task meant is unknown. Nested keys are not names.
  Folders::Write(f.pipeline() / "metrics.json", R"({"accuracy": 0.8, "loss": 1, "accuracy": 0.9})");
  CHECK(Problem(spec) == where +
                             "has the key 'accuracy' twice; expected a flat JSON object of "
                             "numbers, each name once");
  Folders::Write(f.pipeline() / "metrics.json", R"({"a": {"x": 1}, "b": {"x": 2}})");
  CHECK(Problem(spec) ==
        where + "key 'a' is an object; expected a number (a flat JSON object of numbers)");
  Folders::Write(f.pipeline() / "metrics.json", "accuracy=0.9");
  CHECK(Problem(spec) == where +
                             "is not JSON; expected a flat JSON object of numbers, e.g. "
                             "{\"accuracy\": 0.93}");
  Folders::Write(f.pipeline() / "metrics.json",
                 "{\"a\": 1" + std::string(kiln::plugins::kMaxMetricsBytes, ' ') + "}");
  CHECK(Problem(spec) == where +
                             "is larger than 1048576 bytes; expected a flat JSON object of "
                             "numbers");
}

TEST_CASE("collect reads back the spec it was given") {
  CollectSpec spec;
  spec.inputs = {"a.csv", "{{ weird }}"};
  spec.outputs = {"/run/model.pkl"};
  spec.metrics = "m.json";
  spec.pipeline_dir = "/pipelines/churn";
  spec.run_dir = "/data/runs/churn/7";
  spec.allow_absolute = true;
  auto back = kiln::plugins::ParseCollectSpec(kiln::plugins::CollectSpecJson(spec));
  REQUIRE(back.ok());
  CHECK(back->inputs == spec.inputs);
  CHECK(back->outputs == spec.outputs);
  CHECK(back->metrics == spec.metrics);
  CHECK(back->pipeline_dir == spec.pipeline_dir);
  CHECK(back->run_dir == spec.run_dir);
  CHECK(back->allow_absolute);
  CHECK_FALSE(kiln::plugins::ParseCollectSpec("[]").ok());
  CHECK(kiln::plugins::ParseCollectSpec(R"({"pipeline_dir": "relative"})").message() ==
        "the collect spec's pipeline_dir is not absolute");
}
