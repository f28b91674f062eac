#include "daemon/foreign_attempts.h"

#include <boost/asio/post.hpp>
#include <vector>

#include "common/log.h"

namespace kiln::daemon {

using scheduler::AttemptKey;
using scheduler::AttemptOutcome;

void ForeignAttempts::Watch(const scheduler::AdoptRequest& request,
                            std::function<void(AttemptOutcome)> on_exit) {
  std::lock_guard lock(mu_);
  watched_[AttemptKey{request.run, request.task_id, request.attempt}] = std::move(on_exit);
}

std::optional<std::function<void(AttemptOutcome)>> ForeignAttempts::Take(const AttemptKey& key) {
  std::lock_guard lock(mu_);
  auto it = watched_.find(key);
  if (it == watched_.end()) return std::nullopt;
  auto on_exit = std::move(it->second);
  watched_.erase(it);
  return on_exit;
}

size_t ForeignAttempts::watched() const {
  std::lock_guard lock(mu_);
  return watched_.size();
}

void ForeignAttempts::Check(store::Database& db, const std::set<RunId>* runs) {
  std::vector<AttemptKey> keys;
  {
    std::lock_guard lock(mu_);
    if (runs == nullptr) {
      for (const auto& [key, f] : watched_) keys.push_back(key);
    } else {
      // Keys are ordered by run first: one range per run named.
      for (RunId run : *runs) {
        for (auto it = watched_.lower_bound(AttemptKey{run, "", 0});
             it != watched_.end() && it->first.run == run; ++it) {
          keys.push_back(it->first);
        }
      }
    }
  }
  if (keys.empty()) return;
  auto statuses = db.AttemptStatuses(keys);
  if (!statuses.ok()) {
    log::Error("attempts supervised elsewhere: " + statuses.message());
    return;
  }
  for (const store::Database::AttemptStatus& s : *statuses) {
    std::optional<AttemptOutcome> outcome;
    if (s.attempt.outcome) {
      outcome = s.attempt.outcome;
    } else if (!s.current) {
      AttemptOutcome gone;
      gone.lost = true;
      gone.error = "its row no longer has it running";
      outcome = gone;
    } else if (!s.attempt.supervisor_alive) {
      AttemptOutcome lost;
      lost.lost = true;
      lost.error = "its supervisor " + s.attempt.supervisor +
                   " stopped renewing its lease and recorded no end";
      outcome = lost;
    }
    if (!outcome) continue;
    std::function<void(AttemptOutcome)> on_exit;
    {
      std::lock_guard lock(mu_);
      auto it = watched_.find(s.key);
      if (it == watched_.end()) continue;
      on_exit = std::move(it->second);
      watched_.erase(it);
    }
    boost::asio::post(io_, [alive = alive_, on_exit = std::move(on_exit), o = *outcome] {
      if (*alive) on_exit(o);
    });
  }
}

}  // namespace kiln::daemon
