// A bounded pool of database connections for the HTTP worker threads. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/status.h"
#include "store/database.h"

namespace kiln::daemon {

class DbPool {
 public:
  DbPool(std::string url, int max_connections) : url_(std::move(url)), max_(max_connections) {}

  // Opens `count` connections now (at most max_connections), so that the first requests do not
  // pay for them. Errors as from Database::Connect.
  Status Warm(int count);

  // Runs f(Database&) on a pooled connection and returns its result. While all
  // `max_connections` are busy, callers wait in arrival order and each freed connection is handed
  // to the longest waiter (no thundering herd, no overtaking). A connection whose call failed
  // with kUnavailable is dropped; the next call connects afresh. f returns Status or Result<T>.
  template <typename F>
  auto With(F&& f) -> decltype(f(std::declval<store::Database&>())) {
    auto db = Acquire();
    if (!db.ok()) return db.status();
    auto result = f(**db);
    Release(std::move(*db), !result.ok() && CodeOf(result) == ErrorCode::kUnavailable);
    return result;
  }
  // With() for calls that only read: one that fails on a lost connection is tried once more on a
  // new one, so that the pooled connections a database restart broke cost no request an error.
  // Never for writes: a commit lost with its connection may have happened.
  template <typename F>
  auto Read(F&& f) -> decltype(f(std::declval<store::Database&>())) {
    auto result = With(f);
    if (!result.ok() && CodeOf(result) == ErrorCode::kUnavailable) result = With(f);
    return result;
  }

 private:
  struct Waiter {
    std::condition_variable cv;
    std::unique_ptr<store::Database> db;  // handed over by Release
    bool may_connect = false;             // a slot was freed: connect a new one
  };
  static ErrorCode CodeOf(const Status& s) { return s.code(); }
  template <typename T>
  static ErrorCode CodeOf(const Result<T>& r) {
    return r.ok() ? ErrorCode::kOk : r.status().code();
  }
  Result<std::unique_ptr<store::Database>> Acquire();
  Result<std::unique_ptr<store::Database>> Connect();
  void Release(std::unique_ptr<store::Database> db, bool broken);

  std::string url_;
  int max_;
  std::mutex mu_;
  int open_ = 0;  // connections in use, idle, or being made
  std::vector<std::unique_ptr<store::Database>> idle_;
  std::deque<Waiter*> waiters_;  // oldest first
};

}  // namespace kiln::daemon
