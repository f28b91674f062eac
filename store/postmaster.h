// Private to store/: starting, following and stopping the PostgreSQL server of a cluster through
// its process and its lock file (postmaster.pid), woken by pidfds and inotify. pg_ctl's -w looks
// every 100 ms, which cost the embedded cluster about 50 ms at each start and each stop.
//
// Everything here may run as root on a folder that PostgreSQL's user owns: files there are read
// without following links or blocking, and only when they are that user's regular files.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "common/status.h"

namespace kiln::store {

// The content of `file` when it is a regular file of `owner` of at most `max` bytes, read
// without following a link or blocking on a FIFO; nullopt when there is no such file (a reason
// in `*why` when it exists but is not one, or cannot be read).
std::optional<std::string> ReadOwnedFile(const std::filesystem::path& file, uid_t owner, size_t max,
                                         std::string* why = nullptr);

// Waits until `server`, a child of this process started on `cluster`, says "ready" (or
// "standby") in its lock file (true), or exits (false, reaped; `*exit_code` is its exit code, -N
// for signal N). ErrorCode::kUnavailable when neither happens within `timeout`.
Result<bool> WaitUntilReady(const std::filesystem::path& cluster, uid_t owner, pid_t server,
                            std::chrono::milliseconds timeout, int* exit_code);

// Who holds the lock file of `cluster`: nobody (no file), a stale holder (a process that is
// gone, or not this cluster's server: a pid reused since a crash), or the server, with a pidfd
// opened before it was looked at. A server is `owner`'s process started as `postgres -D
// <cluster>` (/proc/PID and its cmdline, which need no ptrace rights). Errors when that cannot
// be told (an unreadable /proc or lock file, a lock file being written, `owner`'s postgres whose
// command line does not show its data folder).
struct LockHolder {
  enum Kind { kNone, kStale, kServer } kind = kNone;
  pid_t pid = 0;
  int pidfd = -1;  // owned; for kServer (and a live kStale)
  LockHolder() = default;
  LockHolder(LockHolder&& other) noexcept;
  LockHolder& operator=(LockHolder&&) = delete;
  ~LockHolder();
};
Result<LockHolder> FindServer(const std::filesystem::path& cluster, uid_t owner);

// Sends `signal` to a server FindServer found (through its pidfd).
Status SignalServer(const LockHolder& server, int signal);

// A fast shutdown (SIGINT, as `pg_ctl stop -m fast` sends) of the server of `cluster`, waiting
// until its process has exited (and reaping it when it is this process's child). False when no
// server of this cluster runs (FindServer: none, or a stale holder, which is never signalled).
// ErrorCode::kUnavailable when it has not exited within `timeout`.
Result<bool> ShutDown(const std::filesystem::path& cluster, uid_t owner,
                      std::chrono::milliseconds timeout);

}  // namespace kiln::store
