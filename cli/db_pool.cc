#include "cli/db_pool.h"

namespace kiln::cli {

Result<std::unique_ptr<store::Database>> DbPool::Acquire() {
  {
    std::unique_lock lock(mu_);
    freed_.wait(lock, [&] { return !idle_.empty() || open_ < max_; });
    if (!idle_.empty()) {
      auto db = std::move(idle_.back());
      idle_.pop_back();
      return db;
    }
    ++open_;  // reserved for the connection made below
  }
  auto db = store::Database::Connect(url_);
  if (!db.ok()) {
    std::lock_guard lock(mu_);
    --open_;
    freed_.notify_one();
    return Status::Error(ErrorCode::kUnavailable, db.message());
  }
  return db;
}

void DbPool::Release(std::unique_ptr<store::Database> db, bool broken) {
  std::lock_guard lock(mu_);
  if (broken) {
    --open_;
  } else {
    idle_.push_back(std::move(db));
  }
  freed_.notify_one();
}

}  // namespace kiln::cli
