// The daemon's outgoing HTTP requests (wait looks at URLs, notification webhooks), made one way:
// no redirects followed, a connect and an answer timeout, the answer's body read and dropped
// (at most 1 MiB is read). Blocking: call it from a thread of its own, never the loop.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "common/time.h"

namespace kiln::daemon {

struct HttpOut {
  std::string method = "GET";  // GET | POST
  std::string url;             // http:// or https://
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // POST: sent as application/json
  Duration connect_timeout = std::chrono::seconds(5);
  Duration answer_timeout = std::chrono::seconds(10);
};

struct HttpAnswer {
  int status = 0;     // 0: no answer; `error` says what failed
  std::string error;  // "cannot connect", "no answer (...)", "not an http:// or https:// URL"
};

HttpAnswer SendHttp(const HttpOut& request);

}  // namespace kiln::daemon
