#include "daemon/db_pool.h"

#include <sys/socket.h>

#include <algorithm>

#include "common/log.h"

namespace kiln::daemon {

DbPool::DbPool(std::string url, DbPoolOptions options)
    : url_(std::move(url)), options_(options), max_(options.max_connections) {
  watchdog_ = std::thread([this] { Watchdog(); });
}

DbPool::~DbPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  watch_cv_.notify_all();
  watchdog_.join();
}

std::string DbPool::CutMessage() const {
  return std::string(kNotAnswering) + ": a call took longer than " +
         std::to_string(options_.call_deadline.count() / 1000) + " s and was abandoned";
}

void DbPool::Watch(store::Database* db) {
  int socket = db->Socket();
  {
    std::lock_guard lock(mu_);
    calls_[db] = Call{socket, std::chrono::steady_clock::now() + options_.call_deadline, false};
  }
  watch_cv_.notify_one();
}

bool DbPool::Unwatch(store::Database* db) {
  std::lock_guard lock(mu_);
  auto it = calls_.find(db);
  bool cut = it != calls_.end() && it->second.cut;
  if (it != calls_.end()) calls_.erase(it);
  return cut;
}

// Sleeps until the earliest deadline of the calls under way (or a new call), cuts off the calls
// past theirs. No polling: with no call under way it waits for one.
void DbPool::Watchdog() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto next = std::chrono::steady_clock::time_point::max();
    const auto now = std::chrono::steady_clock::now();
    for (auto& [db, call] : calls_) {
      if (call.cut) continue;
      if (call.deadline <= now) {
        // The connection's call is waiting on a server that does not answer: shutting the
        // socket down makes it fail now (the connection is then dropped by Release).
        if (call.socket >= 0) ::shutdown(call.socket, SHUT_RDWR);
        call.cut = true;
        not_answering_ = true;
        log::Warn("database: a call took longer than " +
                  std::to_string(options_.call_deadline.count() / 1000) +
                  " s; its connection is closed");
        continue;
      }
      next = std::min(next, call.deadline);
    }
    if (next == std::chrono::steady_clock::time_point::max()) {
      watch_cv_.wait(lock);
    } else {
      watch_cv_.wait_until(lock, next);
    }
  }
}

Status DbPool::Warm(int count) {
  for (int i = 0; i < count; ++i) {
    {
      std::lock_guard lock(mu_);
      if (open_ >= max_) return Status::Ok();
      ++open_;
    }
    auto db = Connect();
    if (!db.ok()) return db.status();
    Release(std::move(db).value(), false);
  }
  return Status::Ok();
}

Result<std::unique_ptr<store::Database>> DbPool::Connect() {
  auto db = store::Database::Connect(url_);
  if (db.ok()) {
    if (Status set = (*db)->SetStatementTimeout(options_.statement_timeout); !set.ok()) {
      db = set;
    }
  }
  if (!db.ok()) {
    std::lock_guard lock(mu_);
    --open_;
    // The slot is free again: let the longest waiter try.
    if (!waiters_.empty()) {
      Waiter* next = waiters_.front();
      waiters_.pop_front();
      next->may_connect = true;
      ++open_;
      next->cv.notify_one();
    }
    return Status::Error(ErrorCode::kUnavailable, db.message());
  }
  return db;
}

void DbPool::EndProbe(bool answered) {
  std::lock_guard lock(mu_);
  probing_ = false;
  if (answered) not_answering_ = false;
}

Result<std::unique_ptr<store::Database>> DbPool::Acquire(bool* probe) {
  std::unique_lock lock(mu_);
  if (not_answering_) {
    if (probing_) {
      return Status::Error(ErrorCode::kUnavailable,
                           std::string(kNotAnswering) + ": a call was abandoned after " +
                               std::to_string(options_.call_deadline.count() / 1000) +
                               " s; one request at a time finds out whether it answers again");
    }
    probing_ = *probe = true;
  }
  if (waiters_.empty() && !idle_.empty()) {
    auto db = std::move(idle_.back());
    idle_.pop_back();
    return db;
  }
  if (waiters_.empty() && open_ < max_) {
    ++open_;  // reserved for the connection made below
    lock.unlock();
    return Connect();
  }
  Waiter me;
  waiters_.push_back(&me);
  if (!me.cv.wait_for(lock, options_.acquire_timeout,
                      [&] { return me.db != nullptr || me.may_connect; })) {
    waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &me));
    return Status::Error(ErrorCode::kUnavailable, std::string(kNotAnswering) +
                                                      " fast enough: all " + std::to_string(max_) +
                                                      " connections are busy");
  }
  if (me.db) return std::move(me.db);
  lock.unlock();
  return Connect();  // Release counted the slot as ours
}

void DbPool::Release(std::unique_ptr<store::Database> db, bool broken) {
  std::lock_guard lock(mu_);
  if (broken) {
    // A lost connection means the server went away (or restarted): the idle ones are lost too,
    // and would each cost a request its error. They are made again when needed.
    open_ -= static_cast<int>(idle_.size());
    idle_.clear();
  }
  if (waiters_.empty()) {
    if (broken) {
      --open_;
    } else {
      idle_.push_back(std::move(db));
    }
    return;
  }
  Waiter* next = waiters_.front();
  waiters_.pop_front();
  if (broken) {
    next->may_connect = true;  // the slot passes on; the waiter connects afresh
  } else {
    next->db = std::move(db);
  }
  next->cv.notify_one();
}

}  // namespace kiln::daemon
