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
  Result<nlohmann::json> Get(const std::string& path);
  Result<nlohmann::json> Post(const std::string& path, const nlohmann::json& body);
  // Streams a text body (logs) to `sink` as it arrives.
  Status Stream(const std::string& path, const std::function<bool(std::string_view)>& sink);
  // Reads the event stream at `path`; `on_event` gets each event's JSON and returns false to stop.
  Status Events(const std::string& path,
                const std::function<bool(const nlohmann::json&)>& on_event);

  const std::string& server() const { return server_; }

 private:
  ApiClient(std::string server, std::string token);
  Status Failure(int status, const std::string& body) const;
  Status Unreachable(const std::string& what) const;

  std::string server_;
  std::string token_;
  std::unique_ptr<httplib::Client> http_;
};

// Percent-encodes a query or path value.
std::string UrlEncode(std::string_view text);

}  // namespace kiln::cli
