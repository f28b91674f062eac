#include "daemon/pipeline_watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include "common/log.h"
#include "config/pipeline_loader.h"

namespace kiln::daemon {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |
                           IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
// Quiet time that ends a burst of events, and the longest a burst may be gathered.
constexpr int kQuietMs = 20;
constexpr int kMaxGatherMs = 200;

}  // namespace

Status PipelineWatcher::Start() {
  inotify_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  stop_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (inotify_ < 0 || stop_ < 0) {
    return Status::Error(dir_.string() + ": cannot watch for changes: " + std::strerror(errno));
  }
  Watch(dir_);
  if (watches_.empty()) {
    return Status::Error(dir_.string() + ": cannot watch for changes: " + std::strerror(errno));
  }
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void PipelineWatcher::Stop() {
  if (stop_ >= 0) {
    uint64_t one = 1;
    (void)!write(stop_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  if (inotify_ >= 0) close(inotify_);
  if (stop_ >= 0) close(stop_);
  inotify_ = stop_ = -1;
}

void PipelineWatcher::Watch(const fs::path& dir) {
  int wd = inotify_add_watch(inotify_, dir.c_str(), kMask);
  if (wd < 0) {
    log::Error(dir.string() + ": cannot watch for changes: " + std::strerror(errno));
    return;
  }
  watches_[wd] = dir;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->path().filename().string().starts_with(".")) continue;
    if (it->is_directory(type_ec) && !it->is_symlink(type_ec)) Watch(it->path());
  }
}

// The loop: wait for inotify events (or stop); gather a burst until it is quiet; report it.
void PipelineWatcher::Loop() {
  std::set<std::string> changed;
  bool rescan = false;
  int gathered_ms = 0;
  alignas(inotify_event) char buf[16384];
  while (true) {
    pollfd fds[2] = {{inotify_, POLLIN, 0}, {stop_, POLLIN, 0}};
    const bool pending = !changed.empty() || rescan;
    int n = poll(fds, 2, pending ? kQuietMs : -1);
    if (n < 0 && errno != EINTR) {
      log::Error(dir_.string() + ": watching for changes stopped: " + std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    if (n == 0 || (pending && gathered_ms >= kMaxGatherMs)) {
      if (pending) {
        // Folders created while events were lost are watched from now on.
        if (rescan) Watch(dir_);
        try {
          on_change_(changed, rescan);
        } catch (const std::exception& e) {
          log::Error(dir_.string() + ": reloading failed: " + e.what());
        }
      }
      changed.clear();
      rescan = false;
      gathered_ms = 0;
      if (n == 0) continue;
    }
    if (!(fds[0].revents & POLLIN)) continue;
    gathered_ms += kQuietMs;
    ssize_t len;
    while ((len = read(inotify_, buf, sizeof buf)) > 0) {
      for (char* p = buf; p < buf + len;) {
        auto* ev = reinterpret_cast<inotify_event*>(p);
        p += sizeof(inotify_event) + ev->len;
        if (ev->mask & IN_Q_OVERFLOW) {
          rescan = true;
          continue;
        }
        auto dir = watches_.find(ev->wd);
        if (dir == watches_.end()) continue;
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
          if ((ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) && dir->second == dir_) {
            log::Error(dir_.string() +
                       ": the pipelines folder was moved or deleted; changes "
                       "are no longer seen until it is back and the daemon restarts");
          }
          if (ev->mask & IN_IGNORED) watches_.erase(dir);
          rescan = true;
          continue;
        }
        const std::string name = ev->len ? ev->name : "";
        if (name.empty() || name.starts_with(".")) continue;
        const fs::path path = dir->second / name;
        if (ev->mask & IN_ISDIR) {
          if (ev->mask & (IN_CREATE | IN_MOVED_TO)) Watch(path);
          rescan = true;
        } else if (path.extension() == ".toml" && !(ev->mask & IN_CREATE)) {
          // A created file is reported when its writer closes it (IN_CLOSE_WRITE).
          changed.insert(path.string());
        }
      }
    }
  }
}

FolderStamps StampPipelineFiles(const fs::path& dir) {
  FolderStamps out;
  if (dir.empty()) return out;
  auto files = config::ListPipelineFiles(dir);
  if (!files.ok()) return out;
  for (const fs::path& f : *files) {
    struct stat st {};
    if (::stat(f.c_str(), &st) != 0) continue;
    out[f.string()] = {int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec,
                       static_cast<uintmax_t>(st.st_size), static_cast<uint64_t>(st.st_ino)};
  }
  return out;
}

int64_t RacyFrom(std::chrono::system_clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             (at - std::chrono::seconds(2)).time_since_epoch())
      .count();
}

std::set<std::string> ChangedFiles(const FolderStamps& before, const FolderStamps& now,
                                   int64_t racy_from_ns) {
  std::set<std::string> changed;
  for (const auto& [file, stamp] : now) {
    auto it = before.find(file);
    if (it == before.end() || !(it->second == stamp) || stamp.mtime_ns >= racy_from_ns) {
      changed.insert(file);
    }
  }
  for (const auto& [file, stamp] : before) {
    if (!now.count(file)) changed.insert(file);
  }
  return changed;
}

}  // namespace kiln::daemon
