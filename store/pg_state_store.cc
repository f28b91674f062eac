#include "store/pg_state_store.h"

#include <utility>
#include <vector>

#include "common/crash.h"
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

Result<std::unique_ptr<Database>> PgStateStore::Connect() {
  auto db = Database::Connect(url_);
  if (!db.ok() || committer_.empty()) return db;
  if (Status s = (*db)->HoldCommitterLock(committer_); !s.ok()) return s;
  return db;
}

Status PgStateStore::Open() {
  KILN_CHECK(!thread_.joinable());
  auto db = Connect();
  if (!db.ok()) return db.status();
  if (Status s = (*db)->PrepareStatements(); !s.ok()) return s;
  db_ = std::move(db).value();
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void PgStateStore::Commit(scheduler::Batch batch,
                          std::function<void(scheduler::CommitResult)> done) {
  {
    std::lock_guard lock(mu_);
    KILN_CHECK(thread_.joinable() && !stopping_);
    queue_.push_back(Pending{std::move(batch), std::move(done)});
  }
  wake_.notify_one();
}

void PgStateStore::LookupCache(const std::string& key,
                               std::function<void(Result<std::string>)> done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_ && thread_.joinable()) {
      lookups_.push_back(Lookup{key, std::move(done)});
      done = nullptr;
    }
  }
  if (done) {
    done(Status::Error(ErrorCode::kUnavailable, "the store is stopping"));
    return;
  }
  wake_.notify_one();
}

// The store thread: wait for batches, take all of them, write them in one transaction, post the
// callbacks; after a stop request, drain what is queued and exit.
void PgStateStore::Loop() {
  for (;;) {
    std::deque<Pending> group;
    std::deque<Lookup> lookups;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty() || !lookups_.empty(); });
      if (queue_.empty() && lookups_.empty()) return;  // stopping and drained
      group.swap(queue_);
      lookups.swap(lookups_);
    }
    for (Lookup& l : lookups) {
      l.done(db_ ? db_->CacheCandidates(l.key)
                 : Result<std::string>(
                       Status::Error(ErrorCode::kUnavailable, "the database connection was lost")));
    }
    if (group.empty()) continue;
    std::vector<scheduler::CommitResult> results = Write(group);
    for (size_t i = 0; i < group.size(); ++i) {
      post_([done = std::move(group[i].done), result = std::move(results[i])]() mutable {
        done(std::move(result));
      });
    }
  }
}

std::vector<scheduler::CommitResult> PgStateStore::Write(const std::deque<Pending>& group) {
  std::vector<scheduler::CommitResult> results(group.size());
  if (!db_) {
    // The previous connection was lost: a new one per attempt, so the database coming back is
    // noticed on the next commit.
    auto db = Connect();
    if (!db.ok()) {
      for (auto& r : results) r.status = db.status();
      return results;
    }
    db_ = std::move(db).value();
  }
  std::vector<const scheduler::Batch*> batches;
  batches.reserve(group.size());
  for (const Pending& p : group) batches.push_back(&p.batch);
  CrashPoint("commit.before");
  auto refused = db_->CommitBatches(batches, lease_owner_, lease_);
  if (!refused.ok()) {
    if (refused.status().code() == ErrorCode::kUnavailable) db_.reset();
    log::Error(refused.message());
    for (auto& r : results) r.status = refused.status();
    return results;
  }
  CrashPoint("commit.after");
  for (RefusedUpdate& r : *refused) {
    (r.refusal.rejected ? log::Error : log::Warn)("store: " + r.Describe());
    results[r.batch].refused.push_back(std::move(r.refusal));
  }
  return results;
}

}  // namespace kiln::store
