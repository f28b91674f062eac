// The retention sweep with a fake store and file system: batches, order, paths, stops, errors;
// and the file system's run folders.
#include "daemon/retention.h"

#include <stdlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

using namespace kiln;
using kiln::daemon::RetentionFiles;
using kiln::daemon::RetentionStore;
using kiln::daemon::Sweep;

namespace {

const Instant kNow{std::chrono::milliseconds(1'800'000'000'000)};

// Ended runs by id with their pipeline; the journal records every call in order.
struct FakeStore final : RetentionStore {
  Result<std::vector<store::Database::RunRef>> OldRuns(Instant ended_before, int keep,
                                                       int limit) override {
    journal.push_back("old " + std::to_string(keep) + " " + std::to_string(limit));
    cutoffs.push_back(ended_before);
    if (fail_old) return Status::Error(ErrorCode::kUnavailable, "database: gone");
    std::vector<store::Database::RunRef> out;
    for (const auto& [id, pipeline] : runs) {
      if (static_cast<int>(out.size()) == limit) break;
      out.push_back({RunId(id), pipeline});
    }
    return out;
  }
  Result<int64_t> DeleteRuns(const std::vector<RunId>& ids, Instant) override {
    std::string line = "delete";
    for (RunId id : ids) {
      line += " " + ToString(id);
      runs.erase(Value(id));
      deleted.insert(Value(id));
    }
    journal.push_back(line);
    return static_cast<int64_t>(ids.size());
  }
  Result<std::set<RunId>> DeletedRuns(const std::vector<RunId>& ids) override {
    std::string line = "deleted?";
    std::set<RunId> out;
    for (RunId id : ids) {
      line += " " + ToString(id);
      if (deleted.count(Value(id))) out.insert(id);
    }
    journal.push_back(line);
    if (fail_deleted) return Status::Error(ErrorCode::kUnavailable, "database: gone");
    return out;
  }
  Result<int64_t> DeleteEvents(Instant before, int limit) override {
    journal.push_back("events " + std::to_string(limit));
    cutoffs.push_back(before);
    const int64_t n = std::min<int64_t>(events, limit);
    events -= n;
    return n;
  }
  std::map<int64_t, std::string> runs;
  std::set<int64_t> deleted;  // runs a sweep deleted (deleted_runs)
  bool fail_deleted = false;
  int64_t events = 0;
  bool fail_old = false;
  std::vector<std::string> journal;
  std::vector<Instant> cutoffs;
};

struct FakeFiles final : RetentionFiles {
  explicit FakeFiles(std::vector<std::string>& journal) : journal_(journal) {}
  Status RemoveTree(const std::filesystem::path& folder) override {
    journal_.push_back("rm " + folder.string());
    if (folder.string() == refuse) return Status::Error("removing '" + refuse + "': denied");
    return Status::Ok();
  }
  std::string refuse;  // a folder whose removal fails
  Result<std::vector<RunFolder>> RunFolders(const std::filesystem::path& root) override {
    return folders[root.string()];
  }
  std::map<std::string, std::vector<RunFolder>> folders;  // by root

 private:
  std::vector<std::string>& journal_;
};

config::RetentionConfig Config(int batch) {
  config::RetentionConfig c;
  c.runs = std::chrono::hours(24);
  c.events = std::chrono::hours(1);
  c.min_runs = 3;
  c.batch = batch;
  return c;
}

}  // namespace

TEST_CASE("a sweep removes each run's folders before its rows, batch by batch, then events") {
  FakeStore store;
  store.runs = {{1, "train"}, {2, "train"}, {3, "etl"}};
  store.events = 5;
  FakeFiles files(store.journal);
  auto swept = Sweep(Config(2), kNow, store, files, "/d/logs", "/d/runs");
  REQUIRE(swept.ok());
  CHECK(swept->runs == 3);
  CHECK(swept->events == 5);
  CHECK(store.journal == std::vector<std::string>{"old 3 2", "rm /d/logs/train/1",
                                                  "rm /d/runs/train/1", "rm /d/logs/train/2",
                                                  "rm /d/runs/train/2", "delete 1 2", "old 3 2",
                                                  "rm /d/logs/etl/3", "rm /d/runs/etl/3",
                                                  "delete 3", "events 2", "events 2", "events 2"});
  CHECK(store.cutoffs.front() == kNow - std::chrono::hours(24));
  CHECK(store.cutoffs.back() == kNow - std::chrono::hours(1));
}

TEST_CASE("a pipeline name that is not one never becomes a path, but the rows go") {
  FakeStore store;
  store.runs = {{1, "../../etc"}, {2, "ok.name"}};
  FakeFiles files(store.journal);
  auto swept = Sweep(Config(10), kNow, store, files, "/d/logs", "/d/runs");
  REQUIRE(swept.ok());
  CHECK(store.journal == std::vector<std::string>{"old 3 10", "rm /d/logs/ok.name/2",
                                                  "rm /d/runs/ok.name/2", "delete 1 2",
                                                  "events 10"});
}

TEST_CASE("zero keeps forever, a stop between batches and an error end the sweep") {
  FakeStore store;
  store.runs = {{1, "a"}, {2, "a"}};
  store.events = 9;
  FakeFiles files(store.journal);
  auto keep = Config(1);
  keep.runs = Duration(0);
  keep.events = Duration(0);
  auto nothing = Sweep(keep, kNow, store, files, "/l", "/r");
  REQUIRE(nothing.ok());
  CHECK(store.journal.empty());

  int batches = 0;
  auto stopped = Sweep(Config(1), kNow, store, files, "/l", "/r", [&] { return ++batches > 1; });
  REQUIRE(stopped.ok());
  CHECK(stopped->runs == 1);
  CHECK(stopped->events == 0);
  CHECK(store.runs.size() == 1);

  store.fail_old = true;
  auto failed = Sweep(Config(1), kNow, store, files, "/l", "/r");
  CHECK(failed.message() == "database: gone");
}

TEST_CASE("a follower deletes no rows but removes its folders of runs the leader deleted") {
  FakeStore store;
  store.runs = {{1, "train"}};  // old enough, but the leader's to delete
  store.deleted = {2, 5};
  store.events = 5;
  FakeFiles files(store.journal);
  // Run 2 was deleted by the leader's sweep; run 3 is kept; run 4 is unknown to this database
  // (a folder of anything else sharing the data folder): only run 2's folders go.
  files.folders["/d/logs"] = {{"train", RunId(2)}, {"train", RunId(3)}, {"etl", RunId(4)}};
  files.folders["/d/runs"] = {{"train", RunId(2)}};
  auto swept =
      Sweep(Config(2), kNow, store, files, "/d/logs", "/d/runs", nullptr, /*leader=*/false);
  REQUIRE(swept.ok());
  CHECK(swept->runs == 0);
  CHECK(swept->events == 0);
  CHECK(swept->orphans == 1);
  // Asked in batches of the sweep's size.
  CHECK(store.journal == std::vector<std::string>{"deleted? 2 3", "deleted? 4",
                                                  "rm /d/logs/train/2", "rm /d/runs/train/2"});
  CHECK(store.runs.size() == 1);
}

TEST_CASE("the leader records what it deletes, then removes the folders it has of deleted runs") {
  FakeStore store;
  store.runs = {{1, "train"}};
  store.deleted = {7};
  FakeFiles files(store.journal);
  files.folders["/d/logs"] = {{"etl", RunId(7)}, {"etl", RunId(8)}};
  auto swept = Sweep(Config(1), kNow, store, files, "/d/logs", "/d/runs");
  REQUIRE(swept.ok());
  CHECK(swept->runs == 1);
  CHECK(swept->orphans == 1);
  CHECK(store.journal == std::vector<std::string>{"old 3 1", "rm /d/logs/train/1",
                                                  "rm /d/runs/train/1", "delete 1", "old 3 1",
                                                  "events 1", "deleted? 7", "deleted? 8",
                                                  "rm /d/logs/etl/7"});
  CHECK(store.deleted == std::set<int64_t>{1, 7});
}

TEST_CASE("a folder that cannot be removed is skipped, a database error keeps every folder") {
  FakeStore store;
  store.deleted = {2, 3};
  FakeFiles files(store.journal);
  files.folders["/d/logs"] = {{"train", RunId(2)}, {"train", RunId(3)}};
  files.refuse = "/d/logs/train/2";
  auto swept =
      Sweep(Config(10), kNow, store, files, "/d/logs", "/d/runs", nullptr, /*leader=*/false);
  REQUIRE(swept.ok());
  CHECK(swept->orphans == 1);
  CHECK(store.journal ==
        std::vector<std::string>{"deleted? 2 3", "rm /d/logs/train/2", "rm /d/logs/train/3"});
  store.journal.clear();
  store.fail_deleted = true;
  auto failed =
      Sweep(Config(10), kNow, store, files, "/d/logs", "/d/runs", nullptr, /*leader=*/false);
  REQUIRE_FALSE(failed.ok());
  CHECK(store.journal == std::vector<std::string>{"deleted? 2 3"});
}

TEST_CASE("run folders on disk: only pipeline names and run ids, never through a link") {
  namespace fs = std::filesystem;
  std::string pattern = (fs::temp_directory_path() / "kiln-retention-XXXXXX").string();
  REQUIRE(::mkdtemp(pattern.data()) != nullptr);
  const fs::path tmp = pattern;
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } cleanup{tmp};
  const fs::path root = tmp / "logs";
  fs::create_directories(root / "train/12");
  fs::create_directories(root / "train/7");
  fs::create_directories(root / "train/007");  // not an id as written
  fs::create_directories(root / "train/12x");
  fs::create_directories(root / "train/0");
  std::ofstream(root / "train/13") << "a file, not a folder";
  fs::create_directories(tmp / "elsewhere/99");
  fs::create_directory_symlink(tmp / "elsewhere/99", root / "train/14");  // a linked run
  fs::create_directory_symlink(tmp / "elsewhere", root / "linked");       // a linked pipeline
  fs::create_directories(root / "not a name/15");
  auto files = daemon::DiskRetentionFiles();
  auto found = files->RunFolders(root);
  REQUIRE(found.ok());
  std::vector<std::pair<std::string, int64_t>> got;
  for (const auto& f : *found) got.emplace_back(f.pipeline, Value(f.run));
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::pair<std::string, int64_t>>{{"train", 7}, {"train", 12}});
  // Nothing under a root that does not exist.
  auto none = files->RunFolders(tmp / "missing");
  REQUIRE(none.ok());
  CHECK(none->empty());
  // Removing a run folder removes a link in it, not what the link points to.
  fs::create_directory_symlink(tmp / "elsewhere", root / "train/12/link");
  REQUIRE(files->RemoveTree(root / "train/12").ok());
  CHECK_FALSE(fs::exists(root / "train/12"));
  CHECK(fs::exists(tmp / "elsewhere/99"));
  CHECK(files->RemoveTree(root / "train/404").ok());  // nothing there: nothing to do
}
