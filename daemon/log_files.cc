#include "daemon/log_files.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::daemon {

namespace fs = std::filesystem;

namespace {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// `file` relative to `root`, or empty when it does not lie beneath it (lexically).
fs::path Beneath(const fs::path& root, const fs::path& file) {
  fs::path rel = file.is_absolute()
                     ? file.lexically_normal().lexically_relative(root.lexically_normal())
                     : file.lexically_normal();
  if (rel.empty() || rel.is_absolute()) return {};
  for (const auto& part : rel) {
    if (part == "..") return {};
  }
  return rel;
}

int OpenBeneath(const fs::path& root, const fs::path& rel, int flags) {
  Fd dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) return -1;
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dir.get(), rel.c_str(), &how, sizeof how));
}

Status NotFound(const fs::path& file) {
  return Status::Error(ErrorCode::kNotFound,
                       "log " + file.filename().string() +
                           " not found in this daemon's log folder (the log of an attempt that "
                           "another daemon ran is in that daemon's folder: ask it)");
}

}  // namespace

Result<LogRange> ReadLogRange(const fs::path& root, const fs::path& file, uint64_t offset,
                              size_t max_bytes) {
  fs::path rel = Beneath(root, file);
  if (rel.empty()) return NotFound(file);
  // Non-blocking: opening a FIFO planted in the folder must not wait for a writer.
  Fd fd(OpenBeneath(root, rel, O_RDONLY | O_NONBLOCK));
  if (fd.get() < 0) {
    if (errno == ENOENT) return LogRange{};  // not written yet: an empty log
    return NotFound(file);
  }
  struct stat st {};
  // Only a regular file with one name is a log: a hard link planted in the folder to another
  // file (another run's log, a file of kiln's) is not served.
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
    return NotFound(file);
  }
  LogRange out;
  out.size = static_cast<uint64_t>(st.st_size);
  if (offset >= out.size) return out;
  size_t want = static_cast<size_t>(std::min<uint64_t>(max_bytes, out.size - offset));
  out.data.resize(want);
  size_t got = 0;
  while (got < want) {
    ssize_t n =
        ::pread(fd.get(), out.data.data() + got, want - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  out.data.resize(got);
  return out;
}

bool WaitForLogChange(const fs::path& root, const fs::path& file, uint64_t offset,
                      std::chrono::milliseconds timeout, bool* closed) {
  *closed = false;
  fs::path rel = Beneath(root, file);
  if (rel.empty()) return false;
  Fd watch(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (watch.get() < 0) return false;
  // Watch the folder: the file may not exist yet, and a folder watch needs no open of the file.
  fs::path dir = (root / rel).parent_path();
  if (::inotify_add_watch(watch.get(), dir.c_str(), IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE) < 0) {
    return false;
  }
  // Written before the watch was set up: no need to wait.
  if (auto now = ReadLogRange(root, file, offset, 1); now.ok() && now->size > offset) return true;
  const std::string name = rel.filename().string();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  alignas(inotify_event) char buf[4096];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return true;
    pollfd p{watch.get(), POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return true;
    ssize_t n = ::read(watch.get(), buf, sizeof buf);
    bool ours = false;
    for (ssize_t i = 0; i < n;) {
      auto* ev = reinterpret_cast<inotify_event*>(buf + i);
      if (ev->len > 0 && name == ev->name) {
        ours = true;
        if (ev->mask & IN_CLOSE_WRITE) *closed = true;
      }
      i += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
    if (ours) return true;
  }
}

}  // namespace kiln::daemon
