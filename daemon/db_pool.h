// A bounded pool of database connections for the HTTP worker threads. Thread-safe.
//
// A database that stops answering (frozen, or a network that drops packets) never holds a
// caller for long: a connection is waited for at most `acquire_timeout`, and a call that runs
// past `call_deadline` is cut off by a watchdog (its socket is shut down, the call fails as a lost
// connection and the connection is dropped). Once a call has been cut off, the pool lets one call
// at a time find out whether the database answers again and fails the others at once, until one
// succeeds. Either way the caller gets kUnavailable: the API answers 503.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/status.h"
#include "store/database.h"

namespace kiln::daemon {

struct DbPoolOptions {
  int max_connections = 16;
  std::chrono::milliseconds acquire_timeout{1000};
  std::chrono::milliseconds call_deadline{10000};
  // Set on each connection (server side): bounds a statement the server runs but that waits
  // (on a lock, say) while the server itself still answers.
  std::chrono::milliseconds statement_timeout{10000};
};

class DbPool {
 public:
  DbPool(std::string url, DbPoolOptions options);
  ~DbPool();
  DbPool(const DbPool&) = delete;
  DbPool& operator=(const DbPool&) = delete;

  // Opens `count` connections now (at most max_connections), so that the first requests do not
  // pay for them. Errors as from Database::Connect.
  Status Warm(int count);

  // Runs f(Database&) on a pooled connection and returns its result. While all
  // `max_connections` are busy, callers wait in arrival order and each freed connection is handed
  // to the longest waiter (no thundering herd, no overtaking). A connection whose call failed
  // with kUnavailable is dropped; the next call connects afresh. f returns Status or Result<T>.
  template <typename F>
  auto With(F&& f) -> decltype(f(std::declval<store::Database&>())) {
    bool probe = false;
    auto db = Acquire(&probe);
    if (!db.ok()) {
      if (probe) EndProbe(false);
      return db.status();
    }
    Watch(db->get());
    auto result = f(**db);
    bool cut = Unwatch(db->get());
    const bool lost = !result.ok() && CodeOf(result) == ErrorCode::kUnavailable;
    if (probe) EndProbe(!cut && !lost);
    Release(std::move(*db), lost);
    if (cut && !result.ok()) return Status::Error(ErrorCode::kUnavailable, CutMessage());
    return result;
  }
  // With() for calls that only read: one that fails on a lost connection is tried once more on a
  // new one, so that the pooled connections a database restart broke cost no request an error.
  // Never for writes: a commit lost with its connection may have happened. Not after a call cut
  // off by the watchdog or a wait for a connection that timed out: the database is not answering.
  template <typename F>
  auto Read(F&& f) -> decltype(f(std::declval<store::Database&>())) {
    auto result = With(f);
    if (!result.ok() && CodeOf(result) == ErrorCode::kUnavailable &&
        !MessageOf(result).starts_with(kNotAnswering)) {
      result = With(f);
    }
    return result;
  }

 private:
  struct Waiter {
    std::condition_variable cv;
    std::unique_ptr<store::Database> db;  // handed over by Release
    bool may_connect = false;             // a slot was freed: connect a new one
  };
  static ErrorCode CodeOf(const Status& s) { return s.code(); }
  static std::string MessageOf(const Status& s) { return s.message(); }
  template <typename T>
  static std::string MessageOf(const Result<T>& r) {
    return r.ok() ? "" : r.status().message();
  }
  template <typename T>
  static ErrorCode CodeOf(const Result<T>& r) {
    return r.ok() ? ErrorCode::kOk : r.status().code();
  }
  static constexpr std::string_view kNotAnswering = "the database is not answering";
  std::string CutMessage() const;
  // `probe` is set when the pool waits for a sign of life and this call is the one to look.
  Result<std::unique_ptr<store::Database>> Acquire(bool* probe);
  void EndProbe(bool answered);
  // The watchdog's view of the calls under way.
  void Watch(store::Database* db);
  bool Unwatch(store::Database* db);  // true when the watchdog cut the call off
  void Watchdog();
  Result<std::unique_ptr<store::Database>> Connect();
  void Release(std::unique_ptr<store::Database> db, bool broken);

  struct Call {
    int socket = -1;
    std::chrono::steady_clock::time_point deadline;
    bool cut = false;
  };

  std::string url_;
  const DbPoolOptions options_;
  const int max_;
  std::mutex mu_;
  std::map<store::Database*, Call> calls_;  // under way; under mu_
  std::condition_variable watch_cv_;
  bool stopping_ = false;
  bool not_answering_ = false;  // a call was cut off and none has succeeded since
  bool probing_ = false;        // one call is finding out
  std::thread watchdog_;
  int open_ = 0;  // connections in use, idle, or being made
  std::vector<std::unique_ptr<store::Database>> idle_;
  std::deque<Waiter*> waiters_;  // oldest first
};

}  // namespace kiln::daemon
