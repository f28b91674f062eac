#include "daemon/fire_timer.h"

#include <exception>
#include <vector>

#include "common/log.h"

namespace kiln::daemon {

void FireTimer::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void FireTimer::Touch(const std::string& name) {
  {
    std::lock_guard lock(mu_);
    touched_.insert(name);
  }
  wake_.notify_one();
}

bool FireTimer::Post(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    jobs_.push_back(std::move(job));
  }
  wake_.notify_one();
  return true;
}

void FireTimer::Forget(const std::string& name) {
  std::lock_guard lock(mu_);
  touched_.erase(name);
  Unfile(name);
  if (name == checking_) forgotten_ = true;  // the check in progress files nothing
}

void FireTimer::Unfile(const std::string& name) {
  auto it = next_.find(name);
  if (it == next_.end()) return;
  auto [begin, end] = due_.equal_range(it->second);
  for (auto d = begin; d != end; ++d) {
    if (d->second == name) {
      due_.erase(d);
      break;
    }
  }
  next_.erase(it);
}

void FireTimer::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

// The loop: sleep until the earliest due instant or a touch; take every pipeline that is due or
// touched; check each one without the lock; file its next instant.
void FireTimer::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (!jobs_.empty()) {
      std::vector<std::function<void()>> jobs;
      jobs.swap(jobs_);
      lock.unlock();
      for (auto& job : jobs) {
        try {
          job();
        } catch (const std::exception& e) {
          log::Error(std::string("schedule thread: a job failed: ") + e.what());
        }
      }
      lock.lock();
      continue;
    }
    if (touched_.empty()) {
      if (due_.empty()) {
        wake_.wait(lock);
      } else {
        // On the wall clock: the due instant minus the offset, at most a day ahead (a fire
        // centuries away would overflow system_clock's nanoseconds).
        const Duration ahead =
            std::min<Duration>(due_.begin()->first - Now(), std::chrono::hours(24));
        const auto deadline = std::chrono::system_clock::now() + ahead;
        wake_.wait_until(lock, deadline);
      }
      if (stopping_) break;
    }
    const Instant now = Now();
    std::set<std::string> names;
    names.swap(touched_);
    while (!due_.empty() && due_.begin()->first <= now) {
      names.insert(due_.begin()->second);
      next_.erase(due_.begin()->second);
      due_.erase(due_.begin());
    }
    if (names.empty()) continue;
    for (const std::string& name : names) {
      checking_ = name;
      forgotten_ = false;
      lock.unlock();
      std::optional<Instant> next;
      try {
        next = check_(name, Now());
      } catch (const std::exception& e) {
        log::Error(name + ": schedule check failed: " + e.what());
        next = Now() + std::chrono::seconds(5);
      }
      lock.lock();
      checking_.clear();
      if (stopping_) return;
      if (forgotten_) continue;
      // A touch that arrived meanwhile stays in touched_ and is checked next round.
      Unfile(name);
      if (next) {
        due_.emplace(*next, name);
        next_[name] = *next;
      }
    }
  }
}

}  // namespace kiln::daemon
