// Private to store/: following the PostgreSQL server of a cluster through its lock file
// (postmaster.pid) and its process, woken by inotify and pidfds. pg_ctl's -w looks every 100 ms,
// which cost the embedded cluster about 50 ms at each start and each stop on average.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>

#include "common/status.h"

namespace kiln::store {

// What the lock file <cluster>/postmaster.pid says: the server's pid (negative for a
// single-user backend), when it started (seconds since the epoch) and its status line
// ("starting", "ready", "stopping", "standby"; empty before the server has written one).
struct LockFile {
  pid_t pid = 0;
  std::time_t started = 0;
  std::string status;
};
std::optional<LockFile> ReadLockFile(const std::filesystem::path& cluster);

// Waits until the server that `starter` (a child of this process: `pg_ctl start -w`) started
// for `cluster` says "ready" in its lock file (true), or `starter` exits (false; `*exit_code` is
// its exit code, -N for signal N, and it is reaped). The server counts when it is the starter's
// child and started at or after `since`: a lock file left by an earlier server does not.
// ErrorCode::kUnavailable when neither happens within `timeout`. When it returns true the
// starter may still run (it looks every 100 ms): reap it with ReapStarter.
Result<bool> WaitUntilReady(const std::filesystem::path& cluster, std::time_t since, pid_t starter,
                            std::chrono::milliseconds timeout, int* exit_code);

// Waits for the child `pid` to exit and reaps it; its exit code (-N for signal N).
int ReapStarter(pid_t pid);

// A fast shutdown (SIGINT, as `pg_ctl stop -m fast` sends) of the server of `cluster`, waiting
// until its process has exited. False when no server of this cluster runs: no lock file, or one
// naming a process that is gone or is not this cluster's server (its working directory is not
// the cluster: a pid reused since a crash is never signalled). ErrorCode::kUnavailable when it
// has not exited within `timeout`.
Result<bool> ShutDown(const std::filesystem::path& cluster, std::chrono::milliseconds timeout);

}  // namespace kiln::store
