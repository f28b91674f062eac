#include "cli/client.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

namespace kiln::cli {

using nlohmann::json;

namespace {

// How long a read waits for the server: an answer; a stream's next event (keep-alives every
// 15 s); a followed log's next bytes (the server ends one silent for 5 minutes).
constexpr int kAnswerSeconds = 60;
constexpr int kEventSilenceSeconds = 60;
constexpr int kFollowedLogSeconds = 330;

std::string ErrorText(httplib::Error error) {
  switch (error) {
    case httplib::Error::Read:
      return "it accepted the connection but sent nothing in time";
    case httplib::Error::Connection:
      return "no connection (refused, or no route to it)";
    default:
      return httplib::to_string(error);
  }
}

}  // namespace

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Result<std::unique_ptr<ApiClient>> ApiClient::Make(const ClientOptions& options) {
  std::string server = options.server;
  if (server.empty()) {
    const char* env = std::getenv("KILN_SERVER");
    server = env && *env ? env : "http://127.0.0.1:8080";
  }
  while (server.size() > 1 && server.back() == '/') server.pop_back();
  if (!server.starts_with("http://") || server.size() <= 7 ||
      server.find('/', 7) != std::string::npos) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "server '" + server + "' must look like http://HOST:PORT");
  }
  std::string token = options.token;
  if (token.empty()) {
    const char* env = std::getenv("KILN_TOKEN");
    token = env ? env : "";
  }
  return std::unique_ptr<ApiClient>(new ApiClient(server, token));
}

ApiClient::ApiClient(std::string server, std::string token)
    : server_(std::move(server)),
      token_(std::move(token)),
      http_(std::make_unique<httplib::Client>(server_)) {
  if (!token_.empty()) http_->set_bearer_token_auth(token_.c_str());
  http_->set_connection_timeout(10, 0);
  http_->set_read_timeout(kAnswerSeconds, 0);
}

ApiClient::~ApiClient() = default;

bool Reconnect::Again(const Status& lost) {
  if (!lost.ok() && lost.code() != ErrorCode::kUnavailable) return false;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  if (lost_since_ == 0) {
    lost_since_ = now;
    waits_ = 0;
    std::cerr << "kiln: "
              << (lost.ok() ? std::string("the daemon ended the stream") : lost.message())
              << "; trying again (" << what_ << ")\n";
  } else if (now - lost_since_ > 5 * 60 * 1000) {
    return false;
  }
  // A client's back-off between attempts to connect: no event tells it the daemon is back.
  std::this_thread::sleep_for(std::chrono::seconds(std::min(1 + waits_++, 5)));
  return true;
}

Status ApiClient::Unreachable(const std::string& what) const {
  return Status::Error(ErrorCode::kUnavailable, "cannot reach " + server_ + ": " + what +
                                                    " (is kiln serve running? --server or "
                                                    "KILN_SERVER names it)");
}

Status ApiClient::Failure(int status, const std::string& body) const {
  std::string message = "HTTP " + std::to_string(status);
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_object() &&
      parsed["error"].contains("message") && parsed["error"]["message"].is_string()) {
    message = parsed["error"]["message"].get<std::string>();
  }
  if (status == 401) {
    message +=
        token_.empty() ? " (set KILN_TOKEN or pass --token)" : " (the token was not accepted)";
  }
  ErrorCode code = status == 404   ? ErrorCode::kNotFound
                   : status == 409 ? ErrorCode::kConflict
                   : status == 400 ? ErrorCode::kInvalidArgument
                   : status >= 500 ? ErrorCode::kUnavailable
                                   : ErrorCode::kInternal;
  return Status::Error(code, message);
}

Result<json> ApiClient::Get(const std::string& path) {
  auto res = http_->Get(path.c_str());
  if (!res) return Unreachable(ErrorText(res.error()));
  if (res->status / 100 != 2) return Failure(res->status, res->body);
  json body = json::parse(res->body, nullptr, false);
  if (body.is_discarded()) return Status::Error("the server answered with something not JSON");
  return body;
}

Result<json> ApiClient::Post(const std::string& path, const json& body, int* status) {
  auto res = http_->Post(path.c_str(), body.dump(), "application/json");
  if (!res) return Unreachable(ErrorText(res.error()));
  if (status != nullptr) *status = res->status;
  if (res->status / 100 != 2) return Failure(res->status, res->body);
  json parsed = json::parse(res->body, nullptr, false);
  if (parsed.is_discarded()) return Status::Error("the server answered with something not JSON");
  return parsed;
}

Status ApiClient::Stream(const std::string& path, const std::function<bool(std::string_view)>& sink,
                         const std::function<void()>& on_open) {
  return StreamWaiting(path, sink, kFollowedLogSeconds, on_open);
}

Status ApiClient::StreamWaiting(const std::string& path,
                                const std::function<bool(std::string_view)>& sink, int read_seconds,
                                const std::function<void()>& on_open) {
  http_->set_read_timeout(read_seconds, 0);
  struct Restore {
    httplib::Client& http;
    ~Restore() { http.set_read_timeout(kAnswerSeconds, 0); }
  } restore{*http_};
  int status = 0;
  std::string error_body;
  auto res = http_->Get(
      path.c_str(),
      [&](const httplib::Response& r) {
        status = r.status;
        if (status / 100 == 2 && on_open) on_open();
        return true;
      },
      [&](const char* data, size_t size) {
        if (status / 100 != 2) {
          error_body.append(data, size);
          return true;
        }
        return sink(std::string_view(data, size));
      });
  if (status / 100 != 2 && status != 0) return Failure(status, error_body);
  if (!res && res.error() != httplib::Error::Canceled) {
    return Unreachable(ErrorText(res.error()));
  }
  return Status::Ok();
}

Status ApiClient::Events(const std::string& path, const std::function<bool(const json&)>& on_event,
                         const std::function<void()>& on_data) {
  std::string pending;
  Status parse_error;
  Status s = StreamWaiting(
      path,
      [&](std::string_view data) {
        if (on_data) on_data();
        pending.append(data);
        size_t end;
        while ((end = pending.find("\n\n")) != std::string::npos) {
          std::string block = pending.substr(0, end);
          pending.erase(0, end + 2);
          size_t at = block.find("data: ");
          if (at == std::string::npos) continue;  // a keep-alive comment
          size_t line_end = block.find('\n', at);
          json event =
              json::parse(block.substr(at + 6, line_end == std::string::npos ? std::string::npos
                                                                             : line_end - at - 6),
                          nullptr, false);
          if (event.is_discarded()) {
            parse_error = Status::Error("the event stream sent something not JSON");
            return false;
          }
          if (!on_event(event)) return false;
        }
        return true;
      },
      kEventSilenceSeconds);
  if (!s.ok()) return s;
  return parse_error;
}

}  // namespace kiln::cli
