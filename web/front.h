// Private to web/: the HTTP/1.1 front. Accepts connections and reads request heads and bodies on
// one I/O thread (Boost.Beast's parser on Boost.Asio), so that a slow or idle connection costs a
// socket and a little memory, never a thread; runs handlers on a pool of worker threads and
// streams on their own pool.
//
// What it bounds, so that no client can stall it (docs/security.md):
// - a request head must arrive whole within `head_timeout` of its first byte, and a keep-alive
//   connection may stay idle for `idle_timeout`; a body must arrive within `io_timeout`;
// - a head over `max_header_bytes` or with over `max_headers` fields gets 431; a body over
//   `max_body_bytes` 413 (before it is read, when its length says so);
// - at most `max_connections` connections, `max_per_client` from one address; when a new one
//   would pass either cap, the connection idle (or still sending its head) the longest is closed
//   to make room, and only when none is idle is the new one refused with 503;
// - at most `queue` requests wait for a worker; beyond, 503 at once;
// - a response write must progress within `io_timeout`; a stream ends as soon as its client goes
//   away (its step sees that, and its slot is freed).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "web/http.h"

namespace kiln::web {

struct FrontOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  int threads = 16;  // workers for ordinary requests
  int streams = 64;  // threads for streams
  int queue = 256;   // requests waiting for a worker
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 16 << 10;
  size_t max_headers = 100;
  int max_connections = 1024;
  int max_per_client = 256;
  std::chrono::milliseconds head_timeout{10000};
  std::chrono::milliseconds idle_timeout{5000};
  std::chrono::milliseconds io_timeout{10000};
};

// What the front asks of the server. All but `serve` run on the I/O thread and must not block.
struct FrontHandlers {
  // After a head is read, before its body: a response that refuses the request (the body is then
  // never read and the connection closes), or nullopt.
  std::function<std::optional<Response>(const Request&)> before_body;
  // Whether the request is served at once on the I/O thread (it must be cheap and never block).
  std::function<bool(const Request&)> immediate;
  // Serves the request: on a worker thread, or the I/O thread when `immediate`.
  std::function<void(Request&, Response&)> serve;
  // A JSON error response for what the front refuses itself (400, 408, 413, 431, 503).
  std::function<Response(int status, std::string_view code, std::string_view message)> error;
};

class Front {
 public:
  Front(FrontOptions options, FrontHandlers handlers);
  ~Front();
  Front(const Front&) = delete;
  Front& operator=(const Front&) = delete;
  Status Bind();
  int port() const;
  // Serves until Stop(); returns once every connection is closed and every handler has returned.
  void Run();
  void WaitUntilReady() const;
  void Stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace kiln::web
