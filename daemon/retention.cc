#include "daemon/retention.h"

#include <optional>
#include <regex>
#include <set>

#include "common/log.h"
#include "common/text.h"

namespace kiln::daemon {

namespace fs = std::filesystem;

namespace {

// The pattern of pipeline names (pipeline format v1): no name is "." or ".." or holds a '/'.
bool IsPipelineName(const std::string& name) {
  static const std::regex pattern("^[a-z0-9][a-z0-9_.-]{0,63}$");
  return std::regex_match(name, pattern);
}

class DbStore final : public RetentionStore {
 public:
  explicit DbStore(std::unique_ptr<store::Database> db) : db_(std::move(db)) {}
  Result<std::vector<store::Database::RunRef>> OldRuns(Instant ended_before, int keep,
                                                       int limit) override {
    return db_->OldRuns(ended_before, keep, limit);
  }
  Result<int64_t> DeleteRuns(const std::vector<RunId>& runs, Instant ended_before) override {
    return db_->DeleteRuns(runs, ended_before);
  }
  Result<int64_t> DeleteEvents(Instant before, int limit) override {
    return db_->DeleteEvents(before, limit);
  }
  Result<std::set<RunId>> DeletedRuns(const std::vector<RunId>& runs) override {
    return db_->DeletedRuns(runs);
  }

 private:
  std::unique_ptr<store::Database> db_;
};

class DiskFiles final : public RetentionFiles {
 public:
  Status RemoveTree(const fs::path& folder) override {
    std::error_code ec;
    fs::remove_all(folder, ec);
    if (ec) return Status::Error("removing '" + folder.string() + "': " + ec.message());
    return Status::Ok();
  }
  Result<std::vector<RunFolder>> RunFolders(const fs::path& root) override {
    std::vector<RunFolder> out;
    std::error_code ec;
    for (fs::directory_iterator p(root, ec), end; !ec && p != end; p.increment(ec)) {
      const std::string pipeline = p->path().filename().string();
      std::error_code st;
      if (!IsPipelineName(pipeline) || !fs::is_directory(fs::symlink_status(p->path(), st))) {
        continue;
      }
      std::error_code inner;
      for (fs::directory_iterator r(p->path(), inner), e; !inner && r != e; r.increment(inner)) {
        // A run folder's name is its id in decimal, nothing else.
        auto id = ParseDecimal(r->path().filename().string(), 1);
        if (id && fs::is_directory(fs::symlink_status(r->path(), st))) {
          out.push_back({pipeline, RunId(*id)});
        }
      }
    }
    return out;
  }
};

// Removes the run folders under `logs_dir` and `runs_dir` of runs a sweep deleted (recorded
// in the database: a folder whose run is merely unknown there is never touched).
Result<int64_t> SweepDeleted(const config::RetentionConfig& config, RetentionStore& store,
                             RetentionFiles& files, const fs::path& logs_dir,
                             const fs::path& runs_dir, const std::function<bool()>& stopped) {
  std::vector<std::pair<fs::path, RetentionFiles::RunFolder>> folders;
  std::set<RunId> ids;
  for (const fs::path& root : {logs_dir, runs_dir}) {
    auto found = files.RunFolders(root);
    if (!found.ok()) return found.status();
    for (auto& f : *found) {
      ids.insert(f.run);
      folders.emplace_back(root, std::move(f));
    }
  }
  std::set<RunId> deleted;
  std::vector<RunId> batch;
  for (auto it = ids.begin(); it != ids.end();) {
    batch.push_back(*it++);
    if (static_cast<int>(batch.size()) < config.batch && it != ids.end()) continue;
    if (stopped()) return 0;
    auto found = store.DeletedRuns(batch);
    if (!found.ok()) return found.status();
    deleted.insert(found->begin(), found->end());
    batch.clear();
  }
  std::set<RunId> removed;
  for (const auto& [root, folder] : folders) {
    if (!deleted.count(folder.run)) continue;
    if (stopped()) break;
    if (Status s = files.RemoveTree(root / folder.pipeline / ToString(folder.run)); !s.ok()) {
      log::Error("retention: " + s.message());
      continue;
    }
    removed.insert(folder.run);
  }
  return static_cast<int64_t>(removed.size());
}

}  // namespace

Result<SweepResult> Sweep(const config::RetentionConfig& config, Instant now, RetentionStore& store,
                          RetentionFiles& files, const fs::path& logs_dir, const fs::path& runs_dir,
                          const std::function<bool()>& stop, bool leader) {
  SweepResult result;
  auto stopped = [&] { return stop && stop(); };
  if (config.runs > Duration(0) && leader) {
    const Instant cutoff = now - config.runs;
    while (!stopped()) {
      auto old = store.OldRuns(cutoff, config.min_runs, config.batch);
      if (!old.ok()) return old.status();
      if (old->empty()) break;
      std::vector<RunId> ids;
      for (const auto& ref : *old) {
        if (IsPipelineName(ref.pipeline)) {
          const std::string run = ToString(ref.id);
          for (const fs::path& root : {logs_dir, runs_dir}) {
            if (Status s = files.RemoveTree(root / ref.pipeline / run); !s.ok()) return s;
          }
        }
        ids.push_back(ref.id);
      }
      auto deleted = store.DeleteRuns(ids, cutoff);
      if (!deleted.ok()) return deleted.status();
      result.runs += *deleted;
      if (old->size() < static_cast<size_t>(config.batch)) break;
    }
  }
  if (config.events > Duration(0) && leader) {
    const Instant cutoff = now - config.events;
    while (!stopped()) {
      auto deleted = store.DeleteEvents(cutoff, config.batch);
      if (!deleted.ok()) return deleted.status();
      result.events += *deleted;
      if (*deleted < config.batch) break;
    }
  }
  if (config.runs > Duration(0) && !stopped()) {
    auto orphans = SweepDeleted(config, store, files, logs_dir, runs_dir, stopped);
    if (!orphans.ok()) return orphans.status();
    result.orphans = *orphans;
  }
  return result;
}

Retention::Retention(config::RetentionConfig config, std::string url, fs::path logs_dir,
                     fs::path runs_dir, std::function<bool()> leads)
    : config_(config),
      url_(std::move(url)),
      logs_dir_(std::move(logs_dir)),
      runs_dir_(std::move(runs_dir)),
      leads_(std::move(leads)) {}

namespace {
bool KeepsAll(const config::RetentionConfig& c) {
  return c.runs == Duration(0) && c.events == Duration(0);
}
}  // namespace

void Retention::Start() {
  std::lock_guard lock(mu_);
  started_ = true;
  if (KeepsAll(config_) || stopping_) return;
  thread_ = std::thread([this] { Loop(); });
}

void Retention::SetConfig(const config::RetentionConfig& config) {
  {
    std::lock_guard lock(mu_);
    config_ = config;
    woken_ = true;
    // A thread that runs wakes below; none is needed for a config that keeps everything.
    if (started_ && !stopping_ && !thread_.joinable() && !KeepsAll(config_)) {
      thread_ = std::thread([this] { Loop(); });
    }
  }
  wake_.notify_all();
}

std::unique_ptr<RetentionFiles> DiskRetentionFiles() { return std::make_unique<DiskFiles>(); }

void Retention::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Retention::Loop() {
  auto files = DiskRetentionFiles();
  std::unique_ptr<DbStore> store;
  while (true) {
    if (!store) {
      if (auto db = store::Database::Connect(url_); db.ok()) {
        store = std::make_unique<DbStore>(std::move(db).value());
      }
    }
    config::RetentionConfig config;
    {
      std::lock_guard lock(mu_);
      config = config_;
      woken_ = false;
    }
    if (store) {
      auto swept = Sweep(
          config, NowUtc(), *store, *files, logs_dir_, runs_dir_,
          [this] {
            std::lock_guard lock(mu_);
            return stopping_;
          },
          !leads_ || leads_());
      if (!swept.ok()) {
        log::Error("retention: " + swept.message());
        store.reset();
      } else if (swept->runs > 0 || swept->events > 0 || swept->orphans > 0) {
        log::Info("retention: deleted " + std::to_string(swept->runs) +
                  " runs (with their logs and run folders) and " + std::to_string(swept->events) +
                  " events; removed the folders of " + std::to_string(swept->orphans) +
                  " runs another daemon deleted");
      }
    }
    std::unique_lock lock(mu_);
    if (wake_.wait_for(lock, config.interval, [this] { return stopping_ || woken_; }) &&
        stopping_) {
      return;
    }
  }
}

}  // namespace kiln::daemon
