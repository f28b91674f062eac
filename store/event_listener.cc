#include "store/event_listener.h"

#include <algorithm>
#include <pqxx/pqxx>

#include "store/pq_internal.h"

namespace kiln::store {

namespace {

// Counts the notifications that libpqxx hands over while the listener waits.
class Receiver final : public pqxx::notification_receiver {
 public:
  explicit Receiver(pqxx::connection_base& conn)
      : pqxx::notification_receiver(conn, "kiln_events") {}
  void operator()(const std::string&, int) override { ++received; }
  int received = 0;
};

}  // namespace

struct EventListenerImpl {
  // The receiver's constructor sends LISTEN: once it returns, every later commit notifies us.
  explicit EventListenerImpl(const std::string& url) : conn(url), notices(conn), receiver(conn) {}
  pqxx::connection conn;
  NoticeToLog notices;
  Receiver receiver;
  bool lost = false;
};

EventListener::EventListener(std::unique_ptr<EventListenerImpl> impl) : impl_(std::move(impl)) {}
EventListener::~EventListener() = default;

Result<std::unique_ptr<EventListener>> EventListener::Connect(const std::string& url) {
  try {
    auto impl = std::make_unique<EventListenerImpl>(url);
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
    impl.receiver.received = 0;
    impl.conn.await_notification(static_cast<long>(ms / 1000),
                                 static_cast<long>((ms % 1000) * 1000));
    if (!impl.conn.is_open()) throw pqxx::broken_connection("the server closed the connection");
    return impl.receiver.received > 0;
  } catch (const std::exception& e) {
    impl.lost = true;
    Status s = DbError(what, e);
    return Status::Error(ErrorCode::kUnavailable, s.message());
  }
}

}  // namespace kiln::store
