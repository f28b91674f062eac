// Private to daemon/worker*.cc: the worker process (daemon/worker.h). worker.cc has the loop
// side (the supervisor's connection: starts, ends, kills) and the process's life; worker_db.cc
// the database thread (claims, ends, logs, the lease row).
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "daemon/runtime.h"
#include "daemon/supervision.h"
#include "daemon/worker.h"
#include "executor/supervised_runner.h"
#include "store/database.h"
#include "store/event_listener.h"

namespace kiln::daemon {

// A log the database thread follows: an attempt's file here, and how much of it is shipped.
struct Follow {
  std::filesystem::path path;
  bool watched = false;  // counted in its folder's watch (Worker::folders_)
  uint64_t shipped = 0;
  bool known = false;     // `shipped` was read from the database
  bool dirty = true;      // the file may have grown since it was last read
  bool leftover = false;  // of an attempt already ended: ship the rest, then remove the file
};

// A log to start following (handed from the loop to the database thread).
struct NewFollow {
  scheduler::AttemptKey key;
  std::filesystem::path path;
  bool fresh = false;  // a new claim: nothing shipped yet
  bool leftover = false;
};

class Worker {
 public:
  explicit Worker(WorkerOptions options) : o_(std::move(options)) {}
  ~Worker();
  int Run();
  // How a round of the database thread went: kLost (connect again), kFailed (wait, try again).
  enum class Round { kOk, kLost, kFailed };

 private:
  Status Open();
  std::filesystem::path LogOf(const scheduler::AttemptKey& key) const;
  // Loop side (worker.cc).
  void StartClaimed(store::Claimed claimed);
  void Adopt(const scheduler::AttemptKey& key);
  void Reconcile(std::vector<store::Claimed> held);
  void OnEnded(const scheduler::AttemptKey& key, scheduler::AttemptOutcome outcome);
  void Acked(const std::vector<scheduler::AttemptKey>& keys);
  void KillWhere(const std::function<bool(const scheduler::AttemptKey&)>& match);
  void OnSignal();
  void MaybeDone();
  void FollowLeftovers();
  // Database side (worker_db.cc).
  void DbLoop();
  Round DbRound(store::Database& db, std::map<scheduler::AttemptKey, Follow>& follows,
                bool& backlog);
  Round ShipLogs(store::Database& db, std::map<scheduler::AttemptKey, Follow>& follows,
                 const std::set<scheduler::AttemptKey>& ending);
  void OnNotifications(const std::vector<store::Notification>& notes, bool& backlog);
  bool Watch(const std::filesystem::path& folder);
  void Unwatch(const std::filesystem::path& folder);
  void Wake();

  WorkerOptions o_;
  std::string supervisor_;
  TaskUsers task_user_;
  boost::asio::io_context io_;
  std::unique_ptr<DataDirLock> lock_;
  std::unique_ptr<executor::SupervisedRunner> runner_;
  std::map<scheduler::AttemptKey, TaskId> tasks_;  // loop only: until their end is recorded
  uint32_t next_task_ = 0;
  int signals_ = 0;

  std::mutex mu_;  // guards what follows
  std::vector<store::RecordedOutcome> ends_;
  std::vector<NewFollow> follow_;
  std::map<scheduler::AttemptKey, int> slots_;  // claimed or adopted, end not yet recorded
  int in_flight_ = 0;                           // the sum of slots_
  bool draining_ = false;
  bool quit_ = false;

  std::chrono::steady_clock::time_point ship_at_{};  // database thread: next shipping of logs
  // Database thread: the inotify watch of each run's log folder, and how many followed logs are
  // in it. Folders are watched, not files: a task that prints nothing has no file (the process
  // layer makes it at the first byte), and the folder's watch sees it appear.
  struct FolderWatch {
    int wd = -1;
    int follows = 0;
  };
  std::map<std::filesystem::path, FolderWatch> folders_;
  std::set<std::filesystem::path> unwatchable_;  // warned about once
  store::Wakeup wake_;                           // Wake(): the database thread's poll returns
  int inotify_fd_ = -1;
  std::thread db_thread_;
};

}  // namespace kiln::daemon
