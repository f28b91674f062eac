// Watches the pipelines folder (and its sub-folders, except hidden ones) with inotify and
// reports which pipeline files changed: written, created, moved in or out, deleted. Events are
// gathered until the folder is quiet for a moment (an editor's save is several events), then
// reported in one call. Thread-safe; the callback runs on the watcher's own thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "common/status.h"

namespace kiln::daemon {

class PipelineWatcher {
 public:
  // `changed`: *.toml files that may differ now (they may also be gone); `rescan`: a folder
  // appeared, moved or vanished, so the caller should compare the whole folder with what it has.
  using OnChange = std::function<void(const std::set<std::string>& changed, bool rescan)>;

  PipelineWatcher(std::filesystem::path dir, OnChange on_change)
      : dir_(std::move(dir)), on_change_(std::move(on_change)) {}
  ~PipelineWatcher() { Stop(); }
  PipelineWatcher(const PipelineWatcher&) = delete;
  PipelineWatcher& operator=(const PipelineWatcher&) = delete;

  // Sets up the watches and starts the thread. Errors name the folder.
  Status Start();
  // Ends the thread (a report in progress finishes first). Idempotent.
  void Stop();

 private:
  void Loop();
  void Watch(const std::filesystem::path& dir);  // dir and its non-hidden sub-folders

  std::filesystem::path dir_;
  OnChange on_change_;
  int inotify_ = -1;
  int stop_ = -1;  // eventfd
  std::map<int, std::filesystem::path> watches_;
  std::thread thread_;
};

// What a pipeline file was when it was read: a file written again, or replaced by a rename, has
// another stamp. The start takes them before it loads the folder and again once the watcher runs,
// so that a file changed in between is loaded again (inotify sees only what comes after it).
struct FileStamp {
  int64_t mtime_ns = 0;
  uintmax_t size = 0;
  uint64_t inode = 0;
  bool operator==(const FileStamp&) const = default;
};
using FolderStamps = std::map<std::string, FileStamp>;

// The stamps of the folder's pipeline files (as config::ListPipelineFiles lists them); a file
// that cannot be listed or read is left out.
FolderStamps StampPipelineFiles(const std::filesystem::path& dir);
// Files that are new, gone or changed between `before` and `now`, and those whose modification
// time is `racy_from_ns` or later (nanoseconds since the epoch): a file rewritten in place at the
// same size within the file system's timestamp resolution keeps its stamp, so a file modified
// about when `before` was taken may have changed unseen (git's "racy clean" rule).
std::set<std::string> ChangedFiles(const FolderStamps& before, const FolderStamps& now,
                                   int64_t racy_from_ns);
// When the stamps of a folder are taken at `at`, the racy_from_ns for ChangedFiles: two seconds
// before, the coarsest timestamps of a common file system.
int64_t RacyFrom(std::chrono::system_clock::time_point at);

}  // namespace kiln::daemon
