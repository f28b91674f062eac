// Group commit of triggers: HTTP threads hand their new runs to one writer, which creates every
// run waiting at that moment in one transaction, so N concurrent triggers cost one commit (and
// one turn of the event-order lock) instead of N. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "daemon/db_pool.h"
#include "store/database.h"

namespace kiln::daemon {

class RunCreator {
 public:
  explicit RunCreator(DbPool& pool) : pool_(pool) {}
  ~RunCreator() { Stop(); }
  RunCreator(const RunCreator&) = delete;
  RunCreator& operator=(const RunCreator&) = delete;

  void Start();
  // Requests still waiting get kUnavailable; joins the writer. Idempotent.
  void Stop();

  // Creates `run` (as Database::CreateRun) in the next batch; blocks until it is committed.
  Result<store::CreatedRun> Create(const store::NewRun& run);

 private:
  struct Request {
    const store::NewRun* run;
    std::optional<Result<store::CreatedRun>> result;
  };
  void Loop();
  void Write(std::vector<Request*>& batch);

  DbPool& pool_;
  std::mutex mu_;
  std::condition_variable wake_;  // the writer: requests arrived or stopping
  std::condition_variable done_;  // the callers: results are in
  std::deque<Request*> queue_;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace kiln::daemon
