// Attempts of runs this daemon drives that another process supervises: a run taken over from a
// daemon whose lease expired keeps running its attempts under that daemon's supervisor (if it is
// still alive). Their ends are read from the database: the supervisor records them there
// (store::Database::RecordOutcomes) when no daemon acknowledges them. An attempt whose
// supervisor's lease has expired with no recorded end is lost.
//
// Watch() is called on the scheduler's loop; Check() on the lease keeper's thread (after each
// renewal and whenever a supervisor records ends); outcomes are posted to the loop.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "scheduler/task_runner.h"
#include "store/database.h"

namespace kiln::daemon {

class ForeignAttempts {
 public:
  explicit ForeignAttempts(boost::asio::io_context& io)
      : io_(io), alive_(std::make_shared<bool>(true)) {}
  ~ForeignAttempts() { *alive_ = false; }

  // Watches an attempt (TaskRunner::Adopt's contract: `on_exit` once, on the loop, never from
  // inside Watch). `wake` asks the keeper to Check soon.
  // `settled` false: its start is in a commit not over yet (Settle follows), so a row that does
  // not have it running says nothing yet; only an end recorded ends it.
  void Watch(const scheduler::AdoptRequest& request,
             std::function<void(scheduler::AttemptOutcome)> on_exit, bool settled = true);
  // Its start's commit is over (and it landed).
  void Settle(const scheduler::AttemptKey& key);
  // Stops watching an attempt; returns its `on_exit` when it was still watched.
  std::optional<std::function<void(scheduler::AttemptOutcome)>> Take(
      const scheduler::AttemptKey& key);
  // Reads where the watched attempts stand and delivers the ends found: all of them, or those
  // of `runs` only (the runs a notification named).
  void Check(store::Database& db, const std::set<RunId>* runs = nullptr);
  size_t watched() const;

 private:
  boost::asio::io_context& io_;
  mutable std::mutex mu_;
  struct Watched {
    std::function<void(scheduler::AttemptOutcome)> on_exit;
    bool settled = true;
  };
  std::map<scheduler::AttemptKey, Watched> watched_;
  std::shared_ptr<bool> alive_;
};

}  // namespace kiln::daemon
