// The HTTP client side of `kiln`: talks to a daemon's v1 API (docs/api.md). Server and token come
// from --server / KILN_SERVER (default http://127.0.0.1:8080) and --token / KILN_TOKEN.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace httplib {
class Client;
}

namespace kiln::cli {

struct ClientOptions {
  std::string server;           // empty: $KILN_SERVER, else http://127.0.0.1:8080
  std::string token;            // empty: $KILN_TOKEN
  std::string output = "text";  // text | json
};

class ApiClient {
 public:
  // Errors: a server URL that is not http://HOST[:PORT].
  static Result<std::unique_ptr<ApiClient>> Make(const ClientOptions& options);
  ~ApiClient();

  // The JSON body of a 2xx answer. Any other answer is an error whose message is the server's
  // ("no pipeline named 'x'"), with a hint for 401/403; a connection failure names the server.
  // A server that accepts the connection and does not answer within 60 s is an error
  // (kUnavailable), as is one that cannot be reached.
  Result<nlohmann::json> Get(const std::string& path);
  // `status`, when given, receives the answer's status (201 created, 200 an existing one).
  Result<nlohmann::json> Post(const std::string& path, const nlohmann::json& body,
                              int* status = nullptr);
  // Streams a text body (logs) to `sink` as it arrives. A followed log is silent up to the
  // server's 5 minutes while its task prints nothing: its reads wait up to 330 s.
  // `on_open`, when given, runs once the server has answered 2xx (the stream is open).
  Status Stream(const std::string& path, const std::function<bool(std::string_view)>& sink,
                const std::function<void()>& on_open = nullptr);
  // Reads the event stream at `path`; `on_event` gets each event's JSON and returns false to stop.
  // The server sends a keep-alive every 15 s: 60 s of silence is a lost connection.
  // `on_data`, when given, runs whenever the stream sends anything (keep-alives included): the
  // connection is alive.
  Status Events(const std::string& path, const std::function<bool(const nlohmann::json&)>& on_event,
                const std::function<void()>& on_data = nullptr);

  const std::string& server() const { return server_; }

 private:
  ApiClient(std::string server, std::string token);
  Status Failure(int status, const std::string& body) const;
  Status Unreachable(const std::string& what) const;
  Status StreamWaiting(const std::string& path, const std::function<bool(std::string_view)>& sink,
                       int read_seconds, const std::function<void()>& on_open = nullptr);

  std::string server_;
  std::string token_;
  std::unique_ptr<httplib::Client> http_;
};

// Waits between attempts to reach a daemon again while a command follows something that goes on
// without it (a run, a log): a daemon restarted or upgraded meanwhile is found again, and the
// command carries on from where it was. Says so on stderr once per loss.
class Reconnect {
 public:
  // `what` names what goes on meanwhile ("the run goes on").
  explicit Reconnect(std::string what) : what_(std::move(what)) {}
  // After `lost` (an error, or a stream that ended early): true after waiting a little (1 s,
  // growing to 5 s) while the daemon has been away less than 5 minutes; false when it is not worth
  // trying again (an answer that is not a lost connection, or 5 minutes gone).
  bool Again(const Status& lost);
  // Progress was made: the next loss is a new one.
  void Reset() { lost_since_ = 0; }

 private:
  std::string what_;
  int64_t lost_since_ = 0;  // ms since the epoch of the steady clock; 0: not lost
  int waits_ = 0;
};

// Percent-encodes a query or path value.
std::string UrlEncode(std::string_view text);

}  // namespace kiln::cli
