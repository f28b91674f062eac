// The HTTP server: the v1 API of docs/api.md over scheduler::Service (web/front.h inside).
//
// Every route but GET /healthz needs a token (web/auth.h): `Authorization: Bearer <secret>` or
// the `kiln_session` cookie set by opening /?token=<secret>. Errors are
// {"error":{"code":"...","message":"..."}} with the statuses of docs/api.md. Request bodies over
// `max_body_bytes` get 413 before they are read; chunked request bodies get 411.
//
// Threads: connections are read and written on one I/O thread; requests are served on a pool of
// `threads` workers, and each open stream (event stream, followed log) holds one of
// `max_streams` stream threads (503 beyond), so open streams never starve the rest of the API.
// The limits below bound what any client can hold (web/front.h, docs/security.md).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "scheduler/service.h"
#include "web/auth.h"

namespace kiln::web {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 picks a free port
  // Who may sign in. With none, every route but /healthz answers 401.
  std::vector<Token> tokens;
  size_t max_body_bytes = 1 << 20;
  // For ordinary requests; as many as the daemon's database connections: more make requests
  // wait on each other for a connection (measured: p99 of reads at 32 connections 9 ms with 16,
  // 150-400 ms with 32).
  int threads = 16;
  int max_streams = 64;                           // event streams and followed logs open at once
  int queue = 256;                                // requests waiting for a worker; 503 beyond
  size_t max_header_bytes = 16 << 10;             // request line and headers; 431 beyond
  size_t max_headers = 100;                       // header fields; 431 beyond
  int max_connections = 1024;                     // open at once, over all clients
  int max_per_client = 256;                       // open at once from one address
  std::chrono::milliseconds head_timeout{10000};  // a request head from its first byte
  std::chrono::milliseconds io_timeout{10000};    // a body, or a response write, to progress
  std::chrono::milliseconds keep_alive{5000};     // idle connections are closed after this
  // An event stream silent for this long gets a ": keep-alive" comment.
  std::chrono::milliseconds stream_keep_alive{15000};
};

// Splits "HOST:PORT" (or "[v6]:PORT"); port 0 picks a free port.
Result<std::pair<std::string, int>> ParseListen(const std::string& listen);

class Server {
 public:
  // `service` must outlive the server.
  Server(scheduler::Service& service, ServerOptions options);
  ~Server();
  // Checks the tokens (CheckTokens) and binds; the error names the token or the address. Then
  // Run() serves until Stop() (from any thread).
  Status Bind();
  int port() const;
  void Run();
  // Blocks until Run() accepts connections (or has returned); call before Stop() from another
  // thread.
  void WaitUntilReady() const;
  // Replaces the tokens (a reload of kiln.toml), checked as in Bind: from the next request on,
  // a removed token is refused, and its sessions and open streams end; a token whose role
  // changed has the new one. From any thread.
  Status SetTokens(std::vector<Token> tokens);
  // Stops accepting and makes Run() return. Open streams are cut off within about a second (they
  // end cleanly when the service stops first: its waits then say so). The thread that called
  // Run() must have returned from it before the server is destroyed.
  void Stop();

  // Every route served, as (method, path template), e.g. ("GET", "/api/v1/runs/{id}"). The
  // OpenAPI document at /api/v1/openapi.json describes exactly these.
  static std::vector<std::pair<std::string, std::string>> Routes();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::web
