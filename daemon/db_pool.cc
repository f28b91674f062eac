#include "daemon/db_pool.h"

namespace kiln::daemon {

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

Result<std::unique_ptr<store::Database>> DbPool::Acquire() {
  std::unique_lock lock(mu_);
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
  me.cv.wait(lock, [&] { return me.db != nullptr || me.may_connect; });
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
