// Wakes event-stream readers when new events are committed, by any process on the database:
// one thread LISTENs on the 'kiln_events' channel and publishes the newest event id; and on
// 'kiln_logs', for followers of logs that workers ship.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "daemon/env.h"
#include "store/event_listener.h"

namespace kiln::daemon {

class EventHub final : public EventSource {
 public:
  explicit EventHub(std::string url) : url_(std::move(url)) {}
  ~EventHub() override { Stop(); }
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // Starts the listening thread (it reconnects on its own after a lost connection).
  void Start() override;
  // Wakes every waiter (they return false) and joins the thread. Idempotent.
  void Stop() override;

  // Blocks until the newest committed event id is above `after`, the timeout passes, or the hub
  // stops. Returns false once stopped.
  bool WaitForEvents(int64_t after, std::chrono::milliseconds timeout) override;
  // The newest event id seen (0 before the first read).
  int64_t last_id() const override;
  uint64_t log_generation() const override;
  bool WaitForShippedLogs(uint64_t after, int64_t after_event,
                          std::chrono::milliseconds timeout) override;

 private:
  void Loop();
  void Publish(int64_t id);

  std::string url_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  store::Wakeup wakeup_;  // ends the thread's wait for notifications at Stop()
  int64_t last_id_ = 0;
  uint64_t log_generation_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace kiln::daemon
