// A bounded pool of database connections for the HTTP worker threads. Thread-safe.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/status.h"
#include "store/database.h"

namespace kiln::cli {

class DbPool {
 public:
  DbPool(std::string url, int max_connections) : url_(std::move(url)), max_(max_connections) {}

  // Runs f(Database&) on a pooled connection (waiting while all `max_connections` are busy) and
  // returns its result. A connection whose call failed with kUnavailable is dropped; the next
  // call connects afresh. f returns Status or Result<T>.
  template <typename F>
  auto With(F&& f) -> decltype(f(std::declval<store::Database&>())) {
    auto db = Acquire();
    if (!db.ok()) return db.status();
    auto result = f(**db);
    Release(std::move(*db), !result.ok() && CodeOf(result) == ErrorCode::kUnavailable);
    return result;
  }

 private:
  static ErrorCode CodeOf(const Status& s) { return s.code(); }
  template <typename T>
  static ErrorCode CodeOf(const Result<T>& r) {
    return r.ok() ? ErrorCode::kOk : r.status().code();
  }
  Result<std::unique_ptr<store::Database>> Acquire();
  void Release(std::unique_ptr<store::Database> db, bool broken);

  std::string url_;
  int max_;
  std::mutex mu_;
  std::condition_variable freed_;
  int open_ = 0;  // connections in use or idle
  std::vector<std::unique_ptr<store::Database>> idle_;
};

}  // namespace kiln::cli
