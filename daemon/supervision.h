// The daemon's side of supervision: starting its supervisor (`kiln supervise`, a process of its
// own that outlives the daemon), the supervisor's access to the database (executor::Ledger on
// store::Database), and the body of `kiln supervise`.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "common/status.h"
#include "common/time.h"
#include "executor/supervisor.h"
#include "store/database.h"

namespace kiln::daemon {

struct SupervisionOptions {
  std::filesystem::path data_dir;  // absolute; the supervisor lives in <data_dir>/supervisor
  std::string daemon;              // DaemonName
  std::string database_url;
  Duration lease = std::chrono::seconds(30);
  // The database is the embedded cluster under data_dir: a supervisor that exits idle stops it
  // when no daemon holds the data folder (the daemon leaves it running for its supervisor).
  bool embedded = false;
  std::filesystem::path pg_bin_dir;
};

std::filesystem::path SupervisorDir(const std::filesystem::path& data_dir);

// Holds <data_dir>/daemon.lock for its lifetime: one daemon per data folder. Errors:
// kConflict "another kiln serve uses <data_dir>".
class DataDirLock {
 public:
  static Result<std::unique_ptr<DataDirLock>> Take(const std::filesystem::path& data_dir);
  ~DataDirLock();
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

// Starts `kiln supervise` for `options` (this binary, /proc/self/exe) in a session of its own,
// detached from the daemon (it is not the daemon's child once started), and returns once it
// listens, or with the error it reported. Its output goes to <data_dir>/supervisor/supervisor.log.
Status SpawnSupervisor(const SupervisionOptions& options);

// executor::Ledger on its own connection (made again after a lost one).
class DatabaseLedger final : public executor::Ledger {
 public:
  DatabaseLedger(std::string url, std::string name, std::string daemon, Duration lease)
      : url_(std::move(url)), name_(std::move(name)), daemon_(std::move(daemon)), lease_(lease) {}
  Result<std::vector<Stop>> Renew(const std::vector<scheduler::AttemptKey>& running) override;
  Status Record(const std::vector<executor::wire::Ended>& ends) override;
  Result<std::set<scheduler::AttemptKey>> StartsRecorded(
      const std::vector<scheduler::AttemptKey>& keys) override;
  Status Release() override;

 private:
  Result<store::Database*> Db();
  void Check(const Status& s);
  std::string url_, name_, daemon_;
  Duration lease_;
  std::unique_ptr<store::Database> db_;
};

// `kiln supervise`: forks (the daemon reaps the parent at once; the supervisor is nobody's
// child but init's or a subreaper's), starts a session, starts the supervisor and writes "ok" or
// the error to `ready_fd`, then serves. Returns the exit code.
int RunSupervisor(const SupervisionOptions& options, int ready_fd);

// This binary's path (for `kiln supervise` and `kiln task`).
std::string SelfExe();

}  // namespace kiln::daemon
