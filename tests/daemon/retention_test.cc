// The retention sweep with a fake store and file system: batches, order, paths, stops, errors.
#include "daemon/retention.h"

#include <catch2/catch.hpp>
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
    }
    journal.push_back(line);
    return static_cast<int64_t>(ids.size());
  }
  Result<std::set<RunId>> ExistingRuns(const std::vector<RunId>& ids) override {
    std::string line = "exists";
    std::set<RunId> out;
    for (RunId id : ids) {
      line += " " + ToString(id);
      if (runs.count(Value(id)) || kept.count(Value(id))) out.insert(id);
    }
    journal.push_back(line);
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
  std::set<int64_t> kept;  // rows of runs not old enough to be swept
  int64_t events = 0;
  bool fail_old = false;
  std::vector<std::string> journal;
  std::vector<Instant> cutoffs;
};

struct FakeFiles final : RetentionFiles {
  explicit FakeFiles(std::vector<std::string>& journal) : journal_(journal) {}
  Status RemoveTree(const std::filesystem::path& folder) override {
    journal_.push_back("rm " + folder.string());
    return Status::Ok();
  }
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
  store.kept = {3};
  store.events = 5;
  FakeFiles files(store.journal);
  const Instant old = kNow - std::chrono::hours(48);
  // Run 2's rows are gone (another daemon swept them); run 3 is kept; run 4's folder is recent
  // (whatever it is, it is not a run retention deleted).
  files.folders["/d/logs"] = {{"train", RunId(2), old},
                              {"train", RunId(3), old},
                              {"train", RunId(4), kNow - std::chrono::minutes(5)}};
  files.folders["/d/runs"] = {{"train", RunId(2), old}};
  auto swept = Sweep(Config(10), kNow, store, files, "/d/logs", "/d/runs", nullptr,
                     /*leader=*/false);
  REQUIRE(swept.ok());
  CHECK(swept->runs == 0);
  CHECK(swept->events == 0);
  CHECK(swept->orphans == 1);
  CHECK(store.journal ==
        std::vector<std::string>{"exists 2 3", "rm /d/logs/train/2", "rm /d/runs/train/2"});
  CHECK(store.runs.size() == 1);
}

TEST_CASE("the leader deletes rows with its own folders, then the folders others left") {
  FakeStore store;
  store.runs = {{1, "train"}};
  FakeFiles files(store.journal);
  const Instant old = kNow - std::chrono::hours(48);
  files.folders["/d/logs"] = {{"etl", RunId(7), old}};
  auto swept = Sweep(Config(1), kNow, store, files, "/d/logs", "/d/runs");
  REQUIRE(swept.ok());
  CHECK(swept->runs == 1);
  CHECK(swept->orphans == 1);
  CHECK(store.journal == std::vector<std::string>{"old 3 1", "rm /d/logs/train/1",
                                                  "rm /d/runs/train/1", "delete 1", "old 3 1",
                                                  "events 1", "exists 7", "rm /d/logs/etl/7"});
}
