// The scheduler's StateStore on PostgreSQL: a store thread with its own connection writes the
// batches, several at a time (group commit), and posts the results back.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "common/time.h"
#include "scheduler/state_store.h"

namespace kiln::store {

class Database;

class PgStateStore final : public scheduler::StateStore {
 public:
  // Runs a callback on the scheduler's thread, e.g. [&io](auto f) { asio::post(io, f); }.
  using Post = std::function<void(std::function<void()>)>;

  // `lease_owner` names the committing daemon: recorded in events, and the only daemon whose runs
  // its commits may change (Database::CommitBatches). Nothing happens until Open().
  PgStateStore(std::string url, std::string lease_owner, Post post,
               Duration lease = std::chrono::minutes(10));
  // Commits everything still queued (their callbacks are posted), then joins the store thread.
  // `post` must work until then.
  ~PgStateStore() override;
  PgStateStore(const PgStateStore&) = delete;
  PgStateStore& operator=(const PgStateStore&) = delete;

  // Connects and prepares the statements (blocking; a connection error names the redacted URL),
  // then starts the store thread. Call once, before Commit(). The schema must already be migrated
  // (Database::Migrate()).
  Status Open();
  // Before Open(): every connection of the store holds the committer lock of `supervisor`
  // (Database::HoldCommitterLock), the supervisor this daemon sends starts before they commit.
  void HoldCommitterLock(std::string supervisor) { committer_ = std::move(supervisor); }

  // Queues `batch`. The store thread takes every batch queued so far and writes them in one
  // transaction (Database::CommitBatches: fencing, events, rejected values), then posts each
  // `done` in call order with the same status: ok with the batch's refused updates (logged), or
  // the error after a rollback (nothing of those batches was written; the caller may commit them
  // again). Thread-safe; never blocks on the database and never calls `done` itself.
  void Commit(scheduler::Batch batch, std::function<void(scheduler::CommitResult)> done) override;
  // Read on the store thread, between commits; `done` is called there.
  void LookupCache(const std::string& key, std::function<void(Result<std::string>)> done) override;

 private:
  struct Pending {
    scheduler::Batch batch;
    std::function<void(scheduler::CommitResult)> done;
  };

  Result<std::unique_ptr<Database>> Connect();
  void Loop();
  std::vector<scheduler::CommitResult> Write(const std::deque<Pending>& group);

  const std::string url_;
  const std::string lease_owner_;
  const Post post_;
  const Duration lease_;
  std::string committer_;

  std::unique_ptr<Database> db_;  // used only by the store thread once it runs

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Pending> queue_;  // guarded by mu_
  struct Lookup {
    std::string key;
    std::function<void(Result<std::string>)> done;
  };
  std::deque<Lookup> lookups_;  // guarded by mu_
  bool stopping_ = false;       // guarded by mu_
  std::thread thread_;
};

}  // namespace kiln::store
