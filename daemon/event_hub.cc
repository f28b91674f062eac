#include "daemon/event_hub.h"

#include <memory>

#include "common/log.h"
#include "store/database.h"
#include "store/event_listener.h"

namespace kiln::daemon {

using namespace std::chrono_literals;

void EventHub::Start() {
  // The newest id before the thread runs, so that a stream opened right after start knows where
  // "now" is.
  if (auto db = store::Database::Connect(url_); db.ok()) {
    if (auto id = (*db)->LastEventId(); id.ok()) Publish(*id);
  }
  thread_ = std::thread([this] { Loop(); });
}

void EventHub::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  wakeup_.Notify();
  if (thread_.joinable()) thread_.join();
}

bool EventHub::WaitForEvents(int64_t after, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  changed_.wait_for(lock, timeout, [&] { return stopping_ || last_id_ > after; });
  return !stopping_;
}

uint64_t EventHub::log_generation() const {
  std::lock_guard lock(mu_);
  return log_generation_;
}

bool EventHub::WaitForShippedLogs(uint64_t after, int64_t after_event,
                                  std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  changed_.wait_for(lock, timeout,
                    [&] { return stopping_ || log_generation_ > after || last_id_ > after_event; });
  return !stopping_;
}

int64_t EventHub::last_id() const {
  std::lock_guard lock(mu_);
  return last_id_;
}

void EventHub::Publish(int64_t id) {
  {
    std::lock_guard lock(mu_);
    if (id <= last_id_) return;
    last_id_ = id;
  }
  changed_.notify_all();
}

// LISTEN first, then read the newest id: an event committed in between is seen either by the
// read or as a notification. Stop() ends the wait through the wake-up.
void EventHub::Loop() {
  std::unique_ptr<store::EventListener> listener;
  std::unique_ptr<store::Database> db;
  bool warned = false;
  auto stopping = [this] {
    std::lock_guard lock(mu_);
    return stopping_;
  };
  while (!stopping()) {
    if (!listener || !db) {
      auto l = store::EventListener::Connect(url_, {"kiln_events", "kiln_logs"});
      auto d = store::Database::Connect(url_);
      if (!l.ok() || !d.ok()) {
        if (!warned) log::Error("event stream: " + (l.ok() ? d.message() : l.message()));
        warned = true;
        std::unique_lock lock(mu_);
        changed_.wait_for(lock, 1s, [&] { return stopping_; });
        continue;
      }
      listener = std::move(l).value();
      db = std::move(d).value();
      warned = false;
      if (auto id = db->LastEventId(); id.ok()) Publish(*id);
    }
    auto notified = listener->Wait(60s, &wakeup_);
    if (!notified.ok()) {
      listener.reset();
      continue;
    }
    if (!*notified) continue;
    bool events = false;
    for (const store::Notification& n : listener->Take()) {  // they only say "read again"
      if (n.channel == "kiln_logs") {
        {
          std::lock_guard lock(mu_);
          ++log_generation_;
        }
        changed_.notify_all();
      } else {
        events = true;
      }
    }
    if (!events) continue;
    auto id = db->LastEventId();
    if (!id.ok()) {
      db.reset();
      continue;
    }
    Publish(*id);
  }
}

}  // namespace kiln::daemon
