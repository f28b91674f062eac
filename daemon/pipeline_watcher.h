// Watches the pipelines folder (and its sub-folders, except hidden ones) with inotify and
// reports which pipeline files changed: written, created, moved in or out, deleted. Events are
// gathered until the folder is quiet for a moment (an editor's save is several events), then
// reported in one call. Thread-safe; the callback runs on the watcher's own thread.
#pragma once

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

}  // namespace kiln::daemon
