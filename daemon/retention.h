// Retention ([retention] in kiln.toml): a sweep every `interval` deletes ended runs older than
// `runs` (leaving the newest `min_runs` of each pipeline), with their task rows, attempts, log
// folders and run folders, and events older than `events`; in batches of `batch`, each its own
// short transaction, on a thread of its own, so scheduling never waits for it. Nothing of a run
// that has not ended is deleted. A duration of 0 keeps forever.
//
// Crash safety: a run's folders are removed before its rows, so a sweep that dies in between
// leaves rows whose logs are gone (the next sweep deletes them), never folders nobody knows.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/time.h"
#include "config/daemon_config.h"
#include "store/database.h"

namespace kiln::daemon {

// What the sweep needs from the database (store::Database in the daemon, a fake in tests).
class RetentionStore {
 public:
  virtual ~RetentionStore() = default;
  virtual Result<std::vector<store::Database::RunRef>> OldRuns(Instant ended_before, int keep,
                                                               int limit) = 0;
  virtual Result<int64_t> DeleteRuns(const std::vector<RunId>& runs, Instant ended_before) = 0;
  virtual Result<int64_t> DeleteEvents(Instant before, int limit) = 0;
  // Which of `runs` a sweep deleted (Database::DeletedRuns).
  virtual Result<std::set<RunId>> DeletedRuns(const std::vector<RunId>& runs) = 0;
};

// What the sweep needs from the file system.
class RetentionFiles {
 public:
  virtual ~RetentionFiles() = default;
  // Removes the folder and everything in it; nothing when it does not exist.
  virtual Status RemoveTree(const std::filesystem::path& folder) = 0;
  // A run's folder, <root>/<pipeline>/<run id>.
  struct RunFolder {
    std::string pipeline;
    RunId run{};
  };
  // The run folders under `root`: only names that are a pipeline's and a run id, and neither
  // level a symbolic link; nothing when `root` does not exist.
  virtual Result<std::vector<RunFolder>> RunFolders(const std::filesystem::path& root) = 0;
};

// The file system's.
std::unique_ptr<RetentionFiles> DiskRetentionFiles();

struct SweepResult {
  int64_t runs = 0;
  int64_t events = 0;
  int64_t orphans = 0;  // runs another daemon's sweep deleted whose folders this one removed
};

// One sweep at `now`: runs first (folders, then rows, each deleted run recorded), then events,
// then this daemon's folders of runs recorded as deleted (with several daemons on one database a
// run's logs may be in several data folders). Only the leader of the daemons (`leader`) deletes
// rows and events; every daemon removes its own folders. Stops at the first error of the
// database (what was deleted stays deleted) or when `stop()` turns true between batches; a
// folder that cannot be removed is logged and skipped.
// Folders are <logs_dir>/<pipeline>/<run> and <runs_dir>/<pipeline>/<run>; a pipeline name that
// is not a valid one never becomes a path.
Result<SweepResult> Sweep(const config::RetentionConfig& config, Instant now, RetentionStore& store,
                          RetentionFiles& files, const std::filesystem::path& logs_dir,
                          const std::filesystem::path& runs_dir,
                          const std::function<bool()>& stop = nullptr, bool leader = true);

// The periodic sweep of a daemon, on its own thread and connection.
class Retention {
 public:
  // `leads`: whether this daemon leads the daemons on its database now (Sweep's `leader`).
  Retention(config::RetentionConfig config, std::string url, std::filesystem::path logs_dir,
            std::filesystem::path runs_dir, std::function<bool()> leads = nullptr);
  ~Retention() { Stop(); }
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;

  // The first sweep runs at once, then one every interval. Nothing when both durations are 0.
  void Start();
  // Ends the thread (a batch in progress finishes first). Idempotent.
  void Stop();
  // kiln.toml reloaded: the next sweep, at once, uses `config` (a sweep in progress finishes
  // with the one it began with). Starts the thread if the first config kept everything.
  void SetConfig(const config::RetentionConfig& config);

 private:
  void Loop();

  config::RetentionConfig config_;  // under mu_
  bool started_ = false;            // Start() was called
  bool woken_ = false;              // SetConfig since the last sweep
  std::string url_;
  std::filesystem::path logs_dir_, runs_dir_;
  std::function<bool()> leads_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace kiln::daemon
