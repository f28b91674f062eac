// The HTTP server (cpp-httplib inside). Routes so far:
//   GET  /healthz                          200 {"status":"ok"}  (no token)
//   POST /api/v1/pipelines/{name}/runs     201 {"id":N,"pipeline":...}  body {"params":{...}}
// Errors are {"error":{"code":"...","message":"..."}} with 400/404/409/413/415/503. POST bodies
// must be JSON (Content-Type: application/json), nested at most 32 levels.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "scheduler/service.h"

namespace kiln::web {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  size_t max_body_bytes = 1 << 20;
  int threads = 16;
};

// Splits "HOST:PORT" (or "[v6]:PORT"); port 0 picks a free port.
Result<std::pair<std::string, int>> ParseListen(const std::string& listen);

class Server {
 public:
  // `service` must outlive the server.
  Server(scheduler::Service& service, ServerOptions options);
  ~Server();
  // Binds; error names the address. Then Run() serves until Stop() (from any thread).
  Status Bind();
  int port() const;
  void Run();
  // Blocks until Run() accepts connections (or has returned); call before Stop() from another
  // thread.
  void WaitUntilReady() const;
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::web
