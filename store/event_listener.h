// Wakes a reader of the event stream when events were committed: a connection of its own that
// LISTENs on 'kiln_events', which every transaction that appends events notifies at commit
// (store/database.h). libpqxx stays inside store/.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::store {

struct EventListenerImpl;  // store/event_listener.cc

// Ends a Wait() early from another thread, so that a thread that waits for notifications stops
// at once instead of at its wait's timeout: an eventfd, polled beside the listener's socket.
// Thread safety: Notify() from any thread. Ownership: owns its descriptor; outlives the
// listeners waiting on it. Without a descriptor (eventfd failed), a wait with it lasts at most
// 250 ms, so that a wake-up is seen that late at worst.
class Wakeup {
 public:
  Wakeup();
  ~Wakeup();
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;
  // The Wait in progress, or else the next one, returns at once.
  void Notify();
  // Takes the notifications so far (for a caller that polls fd() itself).
  void Clear();
  int fd() const { return fd_; }

 private:
  int fd_;
};

// One notification: its channel and payload.
struct Notification {
  std::string channel;
  std::string payload;
};

// Use: Connect() first, then read the events (Database::ListEvents after the last id seen),
// then Wait(), read again, and so on. An event committed after Connect() returns always wakes a
// later Wait() (or the one in progress), so nothing committed between a read and the next Wait()
// is slept through. Notifications carry nothing: they only say "read again". Several commits may
// wake one Wait().
//
// Thread safety: none; one listener per thread (or per stream multiplexer). Ownership: owns its
// connection, closed by the destructor.
class EventListener {
 public:
  // Opens a connection to `url` and starts listening on `channels`. Errors as Database::Connect:
  // one line naming the redacted URL, ErrorCode::kUnavailable. Never throws. Channels:
  // 'kiln_events' (every commit of events), 'kiln_commands' (payload: "<run id> <reason>", a run
  // whose cancel was requested), 'kiln_outcomes' (payload: run ids whose attempts' supervisors
  // recorded ends).
  static Result<std::unique_ptr<EventListener>> Connect(const std::string& url,
                                                        const std::vector<std::string>& channels = {
                                                            "kiln_events"});
  ~EventListener();
  EventListener(const EventListener&) = delete;
  EventListener& operator=(const EventListener&) = delete;

  // Blocks until a notification arrives (true) or `timeout` passes (false); returns at once
  // when notifications arrived since the last call. A lost connection gives
  // ErrorCode::kUnavailable "database: waiting for events: ...", then and on every later call:
  // Connect() a new listener (and read the events again: some may have been missed).
  // With `wakeup`, it also returns (false unless notifications came) as soon as it is notified,
  // and takes its notification.
  Result<bool> Wait(std::chrono::milliseconds timeout, Wakeup* wakeup = nullptr);
  // The connection's socket, for poll() beside other descriptors: readable when a notification
  // may have come (then Wait(0ms) takes it). Only for polling; the listener owns it.
  int Socket() const;
  // The notifications the last Wait() received, oldest first (the next Wait forgets them).
  std::vector<Notification> Take();

 private:
  explicit EventListener(std::unique_ptr<EventListenerImpl> impl);
  std::unique_ptr<EventListenerImpl> impl_;
};

}  // namespace kiln::store
