#include "daemon/retention.h"

#include <regex>

#include "common/log.h"

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
};

}  // namespace

Result<SweepResult> Sweep(const config::RetentionConfig& config, Instant now, RetentionStore& store,
                          RetentionFiles& files, const fs::path& logs_dir, const fs::path& runs_dir,
                          const std::function<bool()>& stop) {
  SweepResult result;
  auto stopped = [&] { return stop && stop(); };
  if (config.runs > Duration(0)) {
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
  if (config.events > Duration(0)) {
    const Instant cutoff = now - config.events;
    while (!stopped()) {
      auto deleted = store.DeleteEvents(cutoff, config.batch);
      if (!deleted.ok()) return deleted.status();
      result.events += *deleted;
      if (*deleted < config.batch) break;
    }
  }
  return result;
}

Retention::Retention(config::RetentionConfig config, std::string url, fs::path logs_dir,
                     fs::path runs_dir)
    : config_(config),
      url_(std::move(url)),
      logs_dir_(std::move(logs_dir)),
      runs_dir_(std::move(runs_dir)) {}

void Retention::Start() {
  if (config_.runs == Duration(0) && config_.events == Duration(0)) return;
  thread_ = std::thread([this] { Loop(); });
}

void Retention::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Retention::Loop() {
  DiskFiles files;
  std::unique_ptr<DbStore> store;
  while (true) {
    if (!store) {
      if (auto db = store::Database::Connect(url_); db.ok()) {
        store = std::make_unique<DbStore>(std::move(db).value());
      }
    }
    if (store) {
      auto swept = Sweep(config_, NowUtc(), *store, files, logs_dir_, runs_dir_, [this] {
        std::lock_guard lock(mu_);
        return stopping_;
      });
      if (!swept.ok()) {
        log::Error("retention: " + swept.message());
        store.reset();
      } else if (swept->runs > 0 || swept->events > 0) {
        log::Info("retention: deleted " + std::to_string(swept->runs) +
                  " runs (with their logs and run folders) and " + std::to_string(swept->events) +
                  " events");
      }
    }
    std::unique_lock lock(mu_);
    if (wake_.wait_for(lock, config_.interval, [this] { return stopping_; })) return;
  }
}

}  // namespace kiln::daemon
