#include "web/front.h"

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <future>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/log.h"

namespace kiln::web {

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// Sent with every response unless the handler set its own value.
constexpr std::array<std::pair<const char*, const char*>, 5> kSecurityHeaders = {{
    {"X-Content-Type-Options", "nosniff"},
    {"Cache-Control", "no-store"},
    {"X-Frame-Options", "DENY"},
    {"Referrer-Policy", "no-referrer"},
    {"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"},
}};

constexpr size_t kMaxTarget = 8 << 10;
// How long, and how much, a closing connection may still send after its last response (read
// and dropped so that the response is not lost to a reset).
constexpr std::chrono::milliseconds kLinger{1000};
constexpr size_t kMaxLinger = 64 << 10;
// What a streaming connection may receive (a client should send nothing) before it is dropped.
constexpr size_t kMaxStreamInput = 64 << 10;

bool Clean(std::string_view s) { return s.find_first_of("\r\n") == std::string_view::npos; }

std::string Head(const Response& res, bool chunked, size_t length, bool close) {
  std::string out = "HTTP/1.1 " + std::to_string(res.status) + " ";
  out.append(StatusText(res.status)).append("\r\n");
  for (const auto& [name, value] : res.headers) {
    if (!Clean(name) || !Clean(value) || name.empty()) continue;
    const std::string lower = AsciiLower(name);
    // Framing is the front's to say.
    if (lower == "content-length" || lower == "transfer-encoding" || lower == "connection") {
      continue;
    }
    out.append(name).append(": ").append(value).append("\r\n");
  }
  for (const auto& [name, value] : kSecurityHeaders) {
    if (!res.has_header(name)) out.append(name).append(": ").append(value).append("\r\n");
  }
  if (chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  } else {
    out += "Content-Length: " + std::to_string(length) + "\r\n";
  }
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  return out;
}

class Connection;

// Everything the I/O thread shares with the connections. Touched only on the I/O thread except
// where marked.
struct State {
  State(FrontOptions o, FrontHandlers h)
      : options(std::move(o)),
        handlers(std::move(h)),
        acceptor(io),
        retry_accept(io),
        workers(static_cast<size_t>(std::max(1, options.threads))),
        streamers(static_cast<size_t>(std::max(1, options.streams))) {}

  void Accept();
  void Admit(tcp::socket socket);
  void Register(Connection* c);
  void Unregister(Connection* c);
  // Closes the connection of `among` (or of every client when null) that is idle or sending its
  // head since the longest; false when there is none.
  bool EvictOldest(const std::vector<Connection*>* among);
  void StopOnIo();

  const FrontOptions options;
  const FrontHandlers handlers;
  asio::io_context io;
  tcp::acceptor acceptor;
  asio::steady_timer retry_accept;
  std::unordered_map<std::string, std::vector<Connection*>> by_client;
  int total = 0;
  int queued = 0;                      // requests handed to the workers and not answered yet
  std::atomic<bool> stopping = false;  // any thread
  int port = 0;
  // Declared last, destroyed first: their jobs post to `io`.
  asio::thread_pool workers;
  asio::thread_pool streamers;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class Phase { kIdle, kHead, kBody, kBusy, kWriting, kStreaming, kClosing, kClosed };

  Connection(State& state, tcp::socket socket, std::string client)
      : state_(state), socket_(std::move(socket)), timer_(state.io), client_(std::move(client)) {}

  const std::string& client() const { return client_; }
  Phase phase() const { return phase_; }
  Clock::time_point since() const { return since_; }
  bool Evictable() const {
    return phase_ == Phase::kIdle || phase_ == Phase::kHead || phase_ == Phase::kClosing;
  }

  void Start() { WaitIdle(); }

  void Close() {
    if (phase_ == Phase::kClosed) return;
    Enter(Phase::kClosed);
    gone_ = true;
    Disarm();
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    state_.Unregister(this);
  }

  // Sends `res` (a refusal made on the I/O thread); the connection closes after it.
  void Refuse(Response res) {
    res_ = std::move(res);
    res_.close = true;
    Respond();
  }

 private:
  void Enter(Phase phase) {
    phase_ = phase;
    since_ = Clock::now();
  }

  // One deadline per connection, for the phase it is in.
  void Arm(std::chrono::milliseconds after) {
    uint64_t generation = ++deadline_;
    timer_.expires_after(after);
    timer_.async_wait([self = shared_from_this(), generation](error_code ec) {
      if (!ec && generation == self->deadline_) self->OnDeadline();
    });
  }
  void Disarm() {
    ++deadline_;
    timer_.cancel();
  }
  void OnDeadline() {
    if (phase_ == Phase::kClosed) return;
    Close();  // idle too long, a head or body too slow, or a write that does not progress
  }

  void WaitIdle() {
    Enter(Phase::kIdle);
    if (state_.stopping) return Close();
    if (buffer_.size() > 0) return ReadHead();  // the next request is already here
    Arm(state_.options.idle_timeout);
    socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
      if (self->phase_ != Phase::kIdle) return;
      if (ec) return self->Close();
      self->ReadHead();
    });
  }

  void ReadHead() {
    Enter(Phase::kHead);
    req_ = Request{};
    Arm(state_.options.head_timeout);  // for the whole head, however it trickles in
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(state_.options.max_header_bytes));
    // Bodies are bounded before they are read (before_body refuses a Content-Length over the
    // limit, and chunked bodies); unbounded here so that such a head reaches it whole.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    http::async_read_header(socket_, buffer_, *parser_,
                            [self = shared_from_this()](error_code ec, size_t) {
                              if (self->phase_ == Phase::kHead) self->OnHead(ec);
                            });
  }

  void OnHead(error_code ec) {
    Disarm();
    if (ec == http::error::header_limit) {
      return Refuse(state_.handlers.error(
          431, "request_header_fields_too_large",
          "the request line and headers are over " +
              std::to_string(state_.options.max_header_bytes >> 10) + " KiB"));
    }
    if (ec == http::error::bad_content_length) {
      return Refuse(state_.handlers.error(400, "invalid_argument",
                                          "Content-Length must be one decimal number"));
    }
    if (ec && ec.category() == http::make_error_code(http::error::header_limit).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return Refuse(state_.handlers.error(
          400, "invalid_argument",
          "the request line or headers could not be read (" + ec.message() + ")"));
    }
    if (ec) return Close();
    auto& message = parser_->get();
    req_ = Request{};
    req_.method = std::string(message.method_string());
    req_.target = std::string(message.target());
    size_t fields = 0;
    for (const auto& field : message) {
      if (++fields > state_.options.max_headers) {
        return Refuse(state_.handlers.error(
            431, "request_header_fields_too_large",
            "over " + std::to_string(state_.options.max_headers) + " header fields"));
      }
      req_.headers.emplace(std::string(field.name_string()), std::string(field.value()));
    }
    if (req_.target.size() > kMaxTarget) {
      return Refuse(state_.handlers.error(
          414, "invalid_argument",
          "the request target is over " + std::to_string(kMaxTarget >> 10) + " KiB"));
    }
    if (!ParseTarget(req_.target, req_.path, req_.params)) {
      return Refuse(state_.handlers.error(
          400, "invalid_argument",
          "the request target must be a path starting with '/' with valid %-escapes"));
    }
    keep_alive_ = message.keep_alive();
    if (auto refusal = state_.handlers.before_body(req_)) return Refuse(std::move(*refusal));
    if (parser_->is_done()) return Dispatch();
    std::string expect = req_.get_header_value("Expect");
    if (expect.empty()) return ReadBody();
    if (AsciiLower(expect) != "100-continue") {
      return Refuse(state_.handlers.error(417, "invalid_argument",
                                          "the only Expect accepted is 100-continue"));
    }
    static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    Enter(Phase::kWriting);
    Arm(state_.options.io_timeout);
    asio::async_write(socket_, asio::buffer(kContinue),
                      [self = shared_from_this()](error_code ec, size_t) {
                        if (self->phase_ != Phase::kWriting) return;
                        if (ec) return self->Close();
                        self->ReadBody();
                      });
  }

  void ReadBody() {
    Enter(Phase::kBody);
    Arm(state_.options.io_timeout);
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, size_t) {
                       if (self->phase_ != Phase::kBody) return;
                       self->Disarm();
                       if (ec) return self->Close();
                       self->req_.body = std::move(self->parser_->get().body());
                       self->Dispatch();
                     });
  }

  void Dispatch() {
    Enter(Phase::kBusy);
    res_ = Response{};
    if (state_.handlers.immediate(req_)) {
      Serve();
      return Respond();
    }
    if (state_.queued >= state_.options.queue) {
      res_ = state_.handlers.error(503, "unavailable",
                                   "the server is busy: too many requests wait for an answer; "
                                   "try again shortly");
      return Respond();
    }
    ++state_.queued;
    asio::post(state_.workers,
               [self = shared_from_this(), work = asio::make_work_guard(state_.io)]() mutable {
                 self->Serve();
                 asio::post(self->state_.io, [self] {
                   --self->state_.queued;
                   if (self->phase_ == Phase::kBusy) self->Respond();
                 });
                 work.reset();
               });
  }

  // Runs the handler; on a worker thread unless immediate.
  void Serve() {
    try {
      state_.handlers.serve(req_, res_);
      return;
    } catch (const std::exception& e) {
      log::Error(std::string("http: request failed: ") + e.what());
    } catch (...) {
      log::Error("http: request failed");
    }
    res_ = state_.handlers.error(500, "internal", "internal error");
  }

  void Respond() {
    bool head_only = req_.method == "HEAD";
    if (res_.stream && !head_only) return StartStream();
    bool close = res_.close || !keep_alive_ || state_.stopping;
    out_ = Head(res_, false, res_.body.size(), close);
    if (!head_only) out_ += res_.body;
    res_ = Response{};
    Enter(Phase::kWriting);
    Arm(state_.options.io_timeout);
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this(), close](error_code ec, size_t) {
                        if (self->phase_ != Phase::kWriting) return;
                        self->Disarm();
                        if (ec) return self->Close();
                        if (close) return self->Linger();
                        self->WaitIdle();
                      });
  }

  // Closes after the last response: stops sending, then reads (and drops) what the client still
  // sends for a moment, so that a request body it sent is not answered with a reset that would
  // destroy the response before the client reads it.
  void Linger() {
    Enter(Phase::kClosing);
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    Arm(kLinger);
    Drain();
  }
  void Drain() {
    socket_.async_read_some(asio::buffer(scratch_),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              if (self->phase_ != Phase::kClosing) return;
                              self->lingered_ += n;
                              if (ec || self->lingered_ > kMaxLinger) return self->Close();
                              self->Drain();
                            });
  }

  // A streamed response: the head now, then chunks written for the stream's thread.
  void StartStream() {
    out_ = Head(res_, true, 0, true);
    Enter(Phase::kWriting);
    Arm(state_.options.io_timeout);
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](error_code ec, size_t) {
                        if (self->phase_ != Phase::kWriting) return;
                        self->Disarm();
                        if (ec) return self->Close();
                        self->Enter(Phase::kStreaming);
                        self->WatchPeer();
                        self->RunStream();
                      });
  }

  // A client that goes away is seen at once: its socket reads the end.
  void WatchPeer() {
    socket_.async_read_some(asio::buffer(scratch_),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              if (self->phase_ != Phase::kStreaming) return;
                              self->stream_input_ += n;
                              if (ec || self->stream_input_ > kMaxStreamInput) {
                                self->gone_ = true;
                                return;
                              }
                              self->WatchPeer();
                            });
  }

  class Sink : public DataSink {
   public:
    explicit Sink(Connection& c) : c_(c) {}
    bool write(const char* data, size_t size) override {
      return size == 0 ? !c_.gone_ : c_.WriteChunk(std::string_view(data, size));
    }
    void done() override { finished = true; }
    bool finished = false;

   private:
    Connection& c_;
  };

  void RunStream() {
    asio::post(state_.streamers, [self = shared_from_this(), step = std::move(res_.stream),
                                  work = asio::make_work_guard(state_.io)]() mutable {
      Sink sink(*self);
      bool ok = true;
      while (ok && !sink.finished && !self->gone_) {
        try {
          ok = step(sink);
        } catch (const std::exception& e) {
          log::Error(std::string("http: stream ended by an internal error: ") + e.what());
          ok = false;
        } catch (...) {
          log::Error("http: stream ended by an internal error");
          ok = false;
        }
      }
      step = nullptr;  // frees what the stream holds (its slot) now, on this thread
      bool clean = ok && sink.finished;
      asio::post(self->state_.io, [self, clean] { self->EndStream(clean); });
      work.reset();
    });
    res_ = Response{};
  }

  void EndStream(bool clean) {
    if (phase_ != Phase::kStreaming) return;
    if (!clean || gone_) return Close();
    error_code ignored;
    socket_.cancel(ignored);  // the watch for the client's end; nothing else is pending
    static const std::string kLast = "0\r\n\r\n";
    Enter(Phase::kWriting);
    Arm(state_.options.io_timeout);
    asio::async_write(socket_, asio::buffer(kLast),
                      [self = shared_from_this()](error_code ec, size_t) {
                        if (self->phase_ != Phase::kWriting) return;
                        self->Disarm();
                        if (ec) return self->Close();
                        self->Linger();
                      });
  }

  // On the stream's thread: writes one chunk through the I/O thread and waits until it is
  // written (or the write failed or took longer than io_timeout).
  bool WriteChunk(std::string_view data) {
    if (gone_) return false;
    char size[20];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    auto framed = std::make_shared<std::string>(size);
    framed->append(data).append("\r\n");
    std::promise<bool> written;
    auto result = written.get_future();
    asio::post(state_.io, [self = shared_from_this(), framed, &written] {
      if (self->phase_ != Phase::kStreaming || self->gone_) return written.set_value(false);
      self->Arm(self->state_.options.io_timeout);
      asio::async_write(self->socket_, asio::buffer(*framed),
                        [self, framed, &written](error_code ec, size_t) {
                          if (self->phase_ == Phase::kStreaming) self->Disarm();
                          if (ec) self->gone_ = true;
                          written.set_value(!ec);
                        });
    });
    return result.get();
  }

  State& state_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  uint64_t deadline_ = 0;
  std::string client_;
  Phase phase_ = Phase::kIdle;
  Clock::time_point since_ = Clock::now();
  boost::beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Request req_;
  Response res_;
  bool keep_alive_ = true;
  std::string out_;
  std::array<char, 4096> scratch_{};
  size_t stream_input_ = 0;
  size_t lingered_ = 0;
  std::atomic<bool> gone_ = false;  // the client went away; read by the stream's thread
};

void State::Accept() {
  acceptor.async_accept([this](error_code ec, tcp::socket socket) {
    if (!acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors (or another passing failure): try again shortly rather than spin.
      log::Warn("http: accept failed: " + ec.message());
      retry_accept.expires_after(std::chrono::milliseconds(100));
      retry_accept.async_wait([this](error_code e) {
        if (!e) Accept();
      });
      return;
    }
    Admit(std::move(socket));
    Accept();
  });
}

void State::Admit(tcp::socket socket) {
  error_code ec;
  auto remote = socket.remote_endpoint(ec);
  if (ec) return;
  socket.set_option(tcp::no_delay(true), ec);
  std::string client = remote.address().to_string();
  auto mine = by_client.find(client);
  bool room =
      (mine == by_client.end() || static_cast<int>(mine->second.size()) < options.max_per_client ||
       EvictOldest(&mine->second)) &&
      (total < options.max_connections || EvictOldest(nullptr));
  if (!room) {
    // Every connection is at work: refuse this one, without waiting on it.
    Response res =
        handlers.error(503, "unavailable", "too many connections; close some or try again shortly");
    std::string out = Head(res, false, res.body.size(), true) + res.body;
    socket.non_blocking(true, ec);
    asio::write(socket, asio::buffer(out), ec);
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
    return;
  }
  auto c = std::make_shared<Connection>(*this, std::move(socket), std::move(client));
  Register(c.get());
  c->Start();
}

void State::Register(Connection* c) {
  by_client[c->client()].push_back(c);
  ++total;
}

void State::Unregister(Connection* c) {
  auto it = by_client.find(c->client());
  if (it == by_client.end()) return;
  auto& list = it->second;
  auto at = std::find(list.begin(), list.end(), c);
  if (at == list.end()) return;
  list.erase(at);
  --total;
  if (list.empty()) by_client.erase(it);
}

bool State::EvictOldest(const std::vector<Connection*>* among) {
  Connection* oldest = nullptr;
  auto consider = [&](const std::vector<Connection*>& list) {
    for (Connection* c : list) {
      if (c->Evictable() && (!oldest || c->since() < oldest->since())) oldest = c;
    }
  };
  if (among) {
    consider(*among);
  } else {
    for (const auto& [client, list] : by_client) consider(list);
  }
  if (!oldest) return false;
  oldest->Close();  // unregisters it (and may erase `among` when it was the last)
  return true;
}

void State::StopOnIo() {
  error_code ignored;
  acceptor.close(ignored);
  retry_accept.cancel();
  std::vector<Connection*> idle;
  for (const auto& [client, list] : by_client) {
    for (Connection* c : list) {
      auto phase = c->phase();
      if (phase == Connection::Phase::kIdle || phase == Connection::Phase::kHead ||
          phase == Connection::Phase::kBody || phase == Connection::Phase::kClosing) {
        idle.push_back(c);
      }
    }
  }
  for (Connection* c : idle) c->Close();
}

}  // namespace

struct Front::Impl {
  Impl(FrontOptions o, FrontHandlers h) : state(std::move(o), std::move(h)) {}
  State state;
  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  bool running = false;
  bool finished = false;
};

Front::Front(FrontOptions options, FrontHandlers handlers)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(handlers))) {}

Front::~Front() {
  Stop();
  std::unique_lock lock(impl_->mutex);
  if (impl_->running) impl_->changed.wait(lock, [&] { return impl_->finished; });
}

Status Front::Bind() {
  State& s = impl_->state;
  const auto& o = s.options;
  auto failed = [&](const std::string& why) {
    return Status::Error(ErrorCode::kUnavailable, "cannot listen on " + o.host + ":" +
                                                      std::to_string(o.port) + " (" + why + ")");
  };
  error_code ec;
  tcp::resolver resolver(s.io);
  auto found = resolver.resolve(o.host, std::to_string(o.port),
                                tcp::resolver::numeric_service | tcp::resolver::passive, ec);
  if (ec || found.empty()) return failed("address not known: " + ec.message());
  tcp::endpoint endpoint = found.begin()->endpoint();
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    s.acceptor.close(ignored);
    return failed(ec == asio::error::address_in_use ? "address in use" : ec.message());
  }
  s.port = s.acceptor.local_endpoint(ec).port();
  return Status::Ok();
}

int Front::port() const { return impl_->state.port; }

void Front::Run() {
  State& s = impl_->state;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->running = true;
  }
  impl_->changed.notify_all();
  if (!s.stopping && s.acceptor.is_open()) s.Accept();
  s.io.run();
  s.workers.join();
  s.streamers.join();
  {
    std::lock_guard lock(impl_->mutex);
    impl_->finished = true;
  }
  impl_->changed.notify_all();
}

void Front::WaitUntilReady() const {
  std::unique_lock lock(impl_->mutex);
  impl_->changed.wait(lock, [&] { return impl_->running || impl_->finished; });
}

void Front::Stop() {
  State& s = impl_->state;
  if (s.stopping.exchange(true)) return;
  asio::post(s.io, [&s] { s.StopOnIo(); });
}

}  // namespace kiln::web
