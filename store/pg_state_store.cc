#include "store/pg_state_store.h"

#include <utility>
#include <vector>

#include "common/log.h"
#include "store/database.h"

namespace kiln::store {

PgStateStore::PgStateStore(std::string url, std::string lease_owner, Post post, Duration lease)
    : url_(std::move(url)),
      lease_owner_(std::move(lease_owner)),
      post_(std::move(post)),
      lease_(lease) {}

PgStateStore::~PgStateStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

Status PgStateStore::Open() {
  KILN_CHECK(!thread_.joinable());
  auto db = Database::Connect(url_);
  if (!db.ok()) return db.status();
  if (Status s = (*db)->PrepareStatements(); !s.ok()) return s;
  db_ = std::move(db).value();
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void PgStateStore::Commit(scheduler::Batch batch, std::function<void(Status)> done) {
  {
    std::lock_guard lock(mu_);
    KILN_CHECK(thread_.joinable() && !stopping_);
    queue_.push_back(Pending{std::move(batch), std::move(done)});
  }
  wake_.notify_one();
}

// The store thread: wait for batches, take all of them, write them in one transaction, post the
// callbacks; after a stop request, drain what is queued and exit.
void PgStateStore::Loop() {
  for (;;) {
    std::deque<Pending> group;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      group.swap(queue_);
    }
    Status status = Write(group);
    for (Pending& p : group) {
      post_([done = std::move(p.done), status] { done(status); });
    }
  }
}

Status PgStateStore::Write(const std::deque<Pending>& group) {
  if (!db_) {
    // The previous connection was lost: a new one per attempt, so the database coming back is
    // noticed on the next commit.
    auto db = Database::Connect(url_);
    if (!db.ok()) return db.status();
    db_ = std::move(db).value();
  }
  std::vector<const scheduler::Batch*> batches;
  batches.reserve(group.size());
  for (const Pending& p : group) batches.push_back(&p.batch);
  auto fenced = db_->CommitBatches(batches, lease_owner_, lease_);
  if (!fenced.ok()) {
    if (fenced.status().code() == ErrorCode::kUnavailable) db_.reset();
    log::Error(fenced.message());
    return fenced.status();
  }
  for (const FencedUpdate& f : *fenced) log::Warn("store: " + f.Describe());
  return Status::Ok();
}

}  // namespace kiln::store
