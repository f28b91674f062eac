#include "store/event_listener.h"

#include <algorithm>
#include <memory>
#include <pqxx/pqxx>
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

Result<bool> EventListener::Wait(std::chrono::milliseconds timeout) {
  const std::string what = "waiting for events";
  EventListenerImpl& impl = *impl_;
  // libpqxx 6 would silently reconnect a closed connection inside await_notification (and
  // LISTEN again), losing what was committed meanwhile without telling: report it instead.
  if (impl.lost || !impl.conn.is_open()) {
    impl.lost = true;
    return Status::Error(ErrorCode::kUnavailable,
                         "database: " + what + ": the connection was lost; listen again");
  }
  const int64_t ms = std::max<int64_t>(0, timeout.count());
  try {
    impl.received.clear();
    impl.conn.await_notification(static_cast<long>(ms / 1000),
                                 static_cast<long>((ms % 1000) * 1000));
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
