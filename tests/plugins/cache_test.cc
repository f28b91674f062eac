// The result cache's two halves in plugins/: the collector keeps a cached task's outputs by
// content, and `kiln task cache` puts an earlier success's outputs in place when the inputs are
// the same, or says why it cannot.
#include "plugins/cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/sha256.h"
#include "plugins/collect.h"

using kiln::plugins::CacheCandidate;
using kiln::plugins::CacheSpec;
using nlohmann::json;

namespace {

namespace fs = std::filesystem;

std::string Sha(const std::string& text) { return kiln::Sha256Hex(text); }

std::string Read(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Write(const fs::path& file, const std::string& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << bytes;
}

// A pipeline folder with data/in.csv, two run folders and a store, under a fresh temp folder.
class Place {
 public:
  Place() {
    static int counter = 0;
    auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    root_ = fs::temp_directory_path() / ("kiln_cache_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(now) + "_" + std::to_string(++counter));
    fs::create_directories(root_ / "store");
    Write(root_ / "pipeline/data/in.csv", "a,b\n1,2\n");
  }
  ~Place() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  fs::path operator/(const std::string& rel) const { return root_ / rel; }
  // The files of an attempt of run `run` that reads data/in.csv and writes out/model.bin in its
  // run folder.
  kiln::plugins::CollectSpec Files(const std::string& run) const {
    kiln::plugins::CollectSpec files;
    files.pipeline_dir = (root_ / "pipeline").string();
    files.run_dir = (root_ / run).string();
    files.inputs = {"data/in.csv"};
    files.outputs = {(root_ / run / "out/model.bin").string()};
    files.cache_store = (root_ / "store").string();
    return files;
  }

 private:
  fs::path root_;
};

// What the first run's collector kept and recorded.
CacheCandidate FirstRun(const Place& p) {
  Write(p / "runs/1/out/model.bin", "weights");
  auto files = p.Files("runs/1");
  auto results = kiln::plugins::CollectResults(files);
  REQUIRE(results.ok());
  const json j = json::parse(results.value());
  CHECK_FALSE(j.contains("cache_error"));
  const json row = {{"run", 1}, {"task", "train"}, {"attempt", 1}, {"results", j}};
  auto candidates = kiln::plugins::CandidatesFromResults(json::array({row}).dump());
  REQUIRE(candidates.size() == 1);
  return candidates[0];
}

CacheSpec SecondRun(const Place& p, std::vector<CacheCandidate> candidates) {
  CacheSpec spec;
  spec.files = p.Files("runs/2");
  spec.report = (p / "runs/2/.kiln/train/cache.json").string();
  spec.candidates = std::move(candidates);
  spec.argv = {"/bin/true"};
  return spec;
}

}  // namespace

TEST_CASE("cache: the collector keeps outputs by content, read-only, once") {
  Place p;
  const CacheCandidate first = FirstRun(p);
  CHECK(first.inputs == std::vector<std::string>{Sha("a,b\n1,2\n")});
  REQUIRE(first.outputs.size() == 1);
  CHECK(first.outputs[0].sha256 == Sha("weights"));
  CHECK(first.outputs[0].bytes == 7);
  const fs::path kept = p / ("store/" + Sha("weights"));
  CHECK(Read(kept) == "weights");
  struct stat st {};
  REQUIRE(::stat(kept.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0444);
  // Kept again: the file that is there stays; no temporary file is left.
  FirstRun(p);
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(p / "store")) ++files;
  CHECK(files == 1);
}

TEST_CASE("cache: the same inputs put the earlier outputs in place and report the hit") {
  Place p;
  const CacheSpec spec = SecondRun(p, {FirstRun(p)});
  std::ostringstream log;
  auto hit = kiln::plugins::Restore(spec, log);
  REQUIRE(hit.ok());
  CHECK(hit->run == 1);
  CHECK(log.str().empty());
  CHECK(Read(p / "runs/2/out/model.bin") == "weights");
  CHECK(json::parse(Read(p / "runs/2/.kiln/train/cache.json")) ==
        json::parse(R"({"hit": {"run": 1, "task": "train", "attempt": 1}})"));
  // The collector of this attempt keeps the report with the results.
  auto files = p.Files("runs/2");
  files.cache_report = spec.report;
  const json results = json::parse(kiln::plugins::CollectResults(files).value());
  CHECK(results["cache"]["hit"]["run"] == 1);
  CHECK(results["outputs"][0]["sha256"] == Sha("weights"));
}

TEST_CASE("cache: other inputs, a lost or altered kept output, or no candidate are misses") {
  Place p;
  const CacheCandidate first = FirstRun(p);
  std::ostringstream log;

  SECTION("no earlier success") {
    auto miss = kiln::plugins::Restore(SecondRun(p, {}), log);
    CHECK(miss.message() ==
          "no earlier success of this task with the same command, environment and params");
  }
  SECTION("the input changed") {
    Write(p / "pipeline/data/in.csv", "a,b\n1,3\n");
    auto miss = kiln::plugins::Restore(SecondRun(p, {first}), log);
    CHECK(miss.message() == "no earlier success read these inputs");
    CHECK_FALSE(fs::exists(p / "runs/2/out/model.bin"));
  }
  SECTION("the input is gone") {
    fs::remove(p / "pipeline/data/in.csv");
    auto miss = kiln::plugins::Restore(SecondRun(p, {first}), log);
    CHECK(miss.message() == "input 'data/in.csv' does not exist");
  }
  SECTION("the kept output was removed") {
    fs::remove(p / ("store/" + Sha("weights")));
    auto miss = kiln::plugins::Restore(SecondRun(p, {first}), log);
    CHECK(miss.message() ==
          "output '" + (p / "runs/2/out/model.bin").string() + "' of run 1 is no longer kept");
    CHECK(log.str() == "kiln cache: " + miss.message() + "\n");
  }
  SECTION("the kept output was altered: never used, nothing left behind") {
    const fs::path kept = p / ("store/" + Sha("weights"));
    fs::permissions(kept, fs::perms::owner_write, fs::perm_options::add);
    Write(kept, "WEIGHTS");
    auto miss = kiln::plugins::Restore(SecondRun(p, {first}), log);
    CHECK(miss.message() == "output '" + (p / "runs/2/out/model.bin").string() +
                                "' of run 1 no longer has the content that was kept");
    CHECK_FALSE(fs::exists(p / "runs/2/out/model.bin"));
    size_t files = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(p / "runs/2/out")) ++files;
    CHECK(files == 0);
  }
  SECTION("a newer candidate that cannot be used gives way to an older one") {
    CacheCandidate lost = first;
    lost.run = 5;
    lost.outputs[0].sha256 = Sha("gone");
    auto hit = kiln::plugins::Restore(SecondRun(p, {lost, first}), log);
    REQUIRE(hit.ok());
    CHECK(hit->run == 1);
  }
}

TEST_CASE("cache: a spec round-trips, and malformed candidate rows are left out") {
  Place p;
  CacheSpec spec = SecondRun(p, {FirstRun(p)});
  auto back = kiln::plugins::ParseCacheSpec(kiln::plugins::CacheSpecJson(spec));
  REQUIRE(back.ok());
  CHECK(back->argv == spec.argv);
  CHECK(back->report == spec.report);
  CHECK(back->files.cache_store == spec.files.cache_store);
  REQUIRE(back->candidates.size() == 1);
  CHECK(back->candidates[0].outputs[0].sha256 == Sha("weights"));
  CHECK(kiln::plugins::CandidatesFromResults(
            R"([{"run": 1}, {"run": 2, "task": "t", "attempt": 1, "results": {"inputs": [],
               "outputs": [{"sha256": "x", "bytes": -1}]}}, 7, "no"])")
            .empty());
  CHECK(kiln::plugins::CandidatesFromResults("not json").empty());
  CHECK(
      kiln::plugins::ParseCacheSpec(R"({"files": {"pipeline_dir": "/p"}, "argv": []})").message() ==
      "the cache spec has no program");
}
