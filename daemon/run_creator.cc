#include "daemon/run_creator.h"

namespace kiln::daemon {

namespace {
// Bounds one transaction; the rest go in the next.
constexpr size_t kMaxBatch = 256;
}  // namespace

void RunCreator::Start() {
  writer_ = std::thread([this] { Loop(); });
}

void RunCreator::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  std::lock_guard lock(mu_);
  for (Request* r : queue_) {
    r->result = Status::Error(ErrorCode::kUnavailable, "the daemon is stopping");
  }
  queue_.clear();
  done_.notify_all();
}

Result<store::CreatedRun> RunCreator::Create(const store::NewRun& run) {
  Request request{&run, std::nullopt};
  std::unique_lock lock(mu_);
  if (stopping_) return Status::Error(ErrorCode::kUnavailable, "the daemon is stopping");
  queue_.push_back(&request);
  wake_.notify_one();
  done_.wait(lock, [&] { return request.result.has_value(); });
  return std::move(*request.result);
}

// While one batch commits, the next fills up: the batch size follows the load by itself.
void RunCreator::Loop() {
  std::vector<Request*> batch;
  while (true) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      while (!queue_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    Write(batch);
    {
      std::lock_guard lock(mu_);
      batch.clear();
    }
    done_.notify_all();
  }
}

void RunCreator::Write(std::vector<Request*>& batch) {
  std::vector<const store::NewRun*> runs;
  for (Request* r : batch) runs.push_back(r->run);
  auto created = pool_.With([&](store::Database& db) { return db.CreateRuns(runs); });
  std::lock_guard lock(mu_);
  if (created.ok()) {
    for (size_t i = 0; i < batch.size(); ++i) batch[i]->result = std::move((*created)[i]);
    return;
  }
  if (batch.size() == 1 || created.status().code() == ErrorCode::kUnavailable) {
    for (Request* r : batch) r->result = created.status();
    return;
  }
  // One run's failure failed them all: write each alone, so that it fails only itself.
  for (Request* r : batch) {
    r->result = pool_.With([&](store::Database& db) { return db.CreateRun(*r->run); });
  }
}

}  // namespace kiln::daemon
