#include "daemon/foreign_attempts.h"

#include <boost/asio/post.hpp>
#include <vector>

#include "common/log.h"

namespace kiln::daemon {

using scheduler::AttemptKey;
using scheduler::AttemptOutcome;

void ForeignAttempts::Watch(const scheduler::AdoptRequest& request,
                            std::function<void(AttemptOutcome)> on_exit, bool settled) {
  std::lock_guard lock(mu_);
  watched_[AttemptKey{request.run, request.task_id, request.attempt}] =
      Watched{std::move(on_exit), settled};
}

void ForeignAttempts::Settle(const AttemptKey& key) {
  std::lock_guard lock(mu_);
  if (auto it = watched_.find(key); it != watched_.end()) it->second.settled = true;
}

std::optional<std::function<void(AttemptOutcome)>> ForeignAttempts::Take(const AttemptKey& key) {
  std::lock_guard lock(mu_);
  auto it = watched_.find(key);
  if (it == watched_.end()) return std::nullopt;
  auto on_exit = std::move(it->second.on_exit);
  watched_.erase(it);
  return on_exit;
}

size_t ForeignAttempts::watched() const {
  std::lock_guard lock(mu_);
  return watched_.size();
}

void ForeignAttempts::Check(store::Database& db, const std::set<RunId>* runs) {
  std::vector<AttemptKey> keys;
  // Unsettled when read (before the rows are): rows read after a Settle meanwhile may still be
  // older than the commit.
  std::set<AttemptKey> unsettled;
  {
    std::lock_guard lock(mu_);
    auto take = [&](const AttemptKey& key, const Watched& w) {
      keys.push_back(key);
      if (!w.settled) unsettled.insert(key);
    };
    if (runs == nullptr) {
      for (const auto& [key, w] : watched_) take(key, w);
    } else {
      // Keys are ordered by run first: one range per run named.
      for (RunId run : *runs) {
        for (auto it = watched_.lower_bound(AttemptKey{run, "", 0});
             it != watched_.end() && it->first.run == run; ++it) {
          take(it->first, it->second);
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
    } else if (unsettled.count(s.key) != 0) {
      continue;  // its start may not be committed yet
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
      on_exit = std::move(it->second.on_exit);
      watched_.erase(it);
    }
    boost::asio::post(io_, [alive = alive_, on_exit = std::move(on_exit), o = *outcome] {
      if (*alive) on_exit(o);
    });
  }
}

}  // namespace kiln::daemon
