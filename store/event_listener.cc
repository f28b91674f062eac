#include "store/event_listener.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <pqxx/pqxx>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "store/pq_internal.h"

namespace kiln::store {

namespace {

// Collects the notifications that libpqxx hands over while the listener waits.
class Receiver final : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& conn, const std::string& channel, std::vector<Notification>& into)
      : pqxx::notification_receiver(conn, channel), into_(into) {}
  void operator()(const std::string& payload, int) override {
    into_.push_back(Notification{channel(), payload});
  }

 private:
  std::vector<Notification>& into_;
};

}  // namespace

struct EventListenerImpl {
  // Each receiver's constructor sends LISTEN: once they exist, every later commit notifies us.
  EventListenerImpl(const std::string& url, const std::vector<std::string>& channels)
      : conn(WithConnectTimeout(url)), notices(conn) {
    for (const std::string& channel : channels) {
      receivers.push_back(std::make_unique<Receiver>(conn, channel, received));
    }
  }
  pqxx::connection conn;
  NoticeToLog notices;
  std::vector<Notification> received;
  std::vector<std::unique_ptr<Receiver>> receivers;
  bool lost = false;
};

EventListener::EventListener(std::unique_ptr<EventListenerImpl> impl) : impl_(std::move(impl)) {}
EventListener::~EventListener() = default;

Result<std::unique_ptr<EventListener>> EventListener::Connect(
    const std::string& url, const std::vector<std::string>& channels) {
  try {
    auto impl = std::make_unique<EventListenerImpl>(url, channels);
    // notification_receiver swallows a connection lost during LISTEN: check that it is open.
    if (!impl->conn.is_open()) throw pqxx::broken_connection("the connection closed during LISTEN");
    return std::unique_ptr<EventListener>(new EventListener(std::move(impl)));
  } catch (const std::exception& e) {
    return ConnectError(url, e);
  }
}

Wakeup::Wakeup() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Wakeup::~Wakeup() {
  if (fd_ >= 0) ::close(fd_);
}

void Wakeup::Notify() {
  if (fd_ < 0) return;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd_, &one, sizeof one);  // full only after 2^64 - 1
}

void Wakeup::Clear() {
  if (fd_ < 0) return;
  uint64_t n = 0;
  [[maybe_unused]] ssize_t r = ::read(fd_, &n, sizeof n);  // non-blocking: 0 left, or none
}

Result<bool> EventListener::Wait(std::chrono::milliseconds timeout, Wakeup* wakeup) {
  const std::string what = "waiting for events";
  EventListenerImpl& impl = *impl_;
  // libpqxx 6 would silently reconnect a closed connection inside await_notification (and
  // LISTEN again), losing what was committed meanwhile without telling: report it instead.
  if (impl.lost || !impl.conn.is_open()) {
    impl.lost = true;
    return Status::Error(ErrorCode::kUnavailable,
                         "database: " + what + ": the connection was lost; listen again");
  }
  int64_t ms = std::max<int64_t>(0, timeout.count());
  // Without its descriptor (eventfd failed) a wake-up is seen at the latest this soon.
  if (wakeup && wakeup->fd() < 0) ms = std::min<int64_t>(ms, 250);
  try {
    impl.received.clear();
    // As await_notification, and the wake-up's descriptor polled beside the socket.
    if (impl.conn.get_notifs() == 0) {
      const int wake = wakeup ? wakeup->fd() : -1;
      pollfd fds[2] = {{impl.conn.sock(), POLLIN, 0}, {wake, POLLIN, 0}};
      if (::poll(fds, wake >= 0 ? 2 : 1, static_cast<int>(std::min<int64_t>(ms, INT_MAX))) < 0 &&
          errno != EINTR) {
        throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
      }
      if (fds[1].revents & POLLIN) wakeup->Clear();
      if (fds[0].revents) impl.conn.get_notifs();
    }
    if (!impl.conn.is_open()) throw pqxx::broken_connection("the server closed the connection");
    return !impl.received.empty();
  } catch (const std::exception& e) {
    impl.lost = true;
    Status s = DbError(what, e);
    return Status::Error(ErrorCode::kUnavailable, s.message());
  }
}

int EventListener::Socket() const { return impl_->conn.sock(); }

std::vector<Notification> EventListener::Take() { return std::exchange(impl_->received, {}); }

}  // namespace kiln::store
