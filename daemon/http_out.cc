#include "daemon/http_out.h"

#include <httplib.h>

namespace kiln::daemon {

namespace {

constexpr size_t kMaxBody = 1 << 20;

// What a failed request met, in words (cpp-httplib 0.11 names them in one word).
std::string Failure(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection:
      return "cannot connect";
    case httplib::Error::ConnectionTimeout:
      return "no connection in time";
    case httplib::Error::Read:
      return "no answer (the connection failed or the answer timed out)";
    case httplib::Error::Write:
      return "the request could not be sent";
    case httplib::Error::SSLConnection:
    case httplib::Error::SSLServerVerification:
    case httplib::Error::SSLLoadingCerts:
      return "TLS failed (" + httplib::to_string(error) + ")";
    default:
      return httplib::to_string(error);
  }
}

}  // namespace

HttpAnswer SendHttp(const HttpOut& request) {
  // scheme://authority, then the path and query ("/" at least).
  const std::string& url = request.url;
  const size_t scheme_end = url.find("://");
  const std::string not_url = "not an http:// or https:// URL";
  if (scheme_end == std::string::npos) return {0, not_url};
  const size_t path_start = url.find('/', scheme_end + 3);
  const std::string origin = url.substr(0, path_start);
  const std::string target = path_start == std::string::npos ? "/" : url.substr(path_start);
  httplib::Client client(origin);
  if (!client.is_valid()) return {0, not_url};
  client.set_connection_timeout(request.connect_timeout);
  client.set_read_timeout(request.answer_timeout);
  client.set_write_timeout(request.answer_timeout);
  client.set_follow_location(false);
  httplib::Headers headers(request.headers.begin(), request.headers.end());
  int status = 0;
  size_t read = 0;
  auto on_answer = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  auto on_body = [&](const char*, size_t n) {
    read += n;
    return read <= kMaxBody;  // the answer's code is what counts; a long body is cut
  };
  httplib::Result result = request.method == "POST"
                               ? client.Post(target, headers, request.body, "application/json")
                               : client.Get(target, headers, on_answer, on_body);
  if (result) status = result->status;
  if (status == 0) return {0, Failure(result.error())};
  return {status, ""};
}

}  // namespace kiln::daemon
