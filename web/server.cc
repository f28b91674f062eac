#include "web/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

namespace kiln::web {

using nlohmann::json;

namespace {

std::string_view CodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kConflict:
      return "conflict";
    case ErrorCode::kUnavailable:
      return "unavailable";
    default:
      return "internal";
  }
}

int HttpStatus(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

// Invalid UTF-8 (e.g. a percent-decoded path) is replaced rather than thrown on.
std::string Dump(const json& body) {
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

void SendError(httplib::Response& res, int status, std::string_view code, const std::string& msg) {
  res.status = status;
  json body = {{"error", {{"code", code}, {"message", msg}}}};
  res.set_content(Dump(body), "application/json");
}

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

// Deepest nesting of arrays and objects in a JSON text, outside strings. Checked before parsing
// so that no recursion over the document can exhaust the stack.
int NestingDepth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

constexpr int kMaxNesting = 32;

// Param values arrive as JSON scalars; they are converted to the declared type downstream.
Result<std::vector<std::pair<std::string, std::string>>> ParamsFromJson(const json& params) {
  std::vector<std::pair<std::string, std::string>> out;
  if (params.is_null()) return out;
  if (!params.is_object()) {
    return Status::Error(ErrorCode::kInvalidArgument, "'params' must be an object");
  }
  for (const auto& [name, value] : params.items()) {
    if (value.is_string()) {
      out.emplace_back(name, value.get<std::string>());
      if (out.back().second.find('\0') != std::string::npos) {
        return Status::Error(
            ErrorCode::kInvalidArgument,
            "param '" + name + "' contains a NUL byte, which no program can receive");
      }
    } else if (value.is_boolean() || value.is_number()) {
      out.emplace_back(name, value.dump());
    } else {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "param '" + name + "' must be a string, number or boolean");
    }
  }
  return out;
}

}  // namespace

Result<std::pair<std::string, int>> ParseListen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "listen address '" + listen + "' must be HOST:PORT, e.g. 127.0.0.1:8080");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int port = 0;
  for (char c : listen.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "listen address '" + listen + "': port must be a number 0-65535");
    }
    port = port * 10 + (c - '0');
  }
  if (port > 65535) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "listen address '" + listen + "': port must be a number 0-65535");
  }
  return std::pair<std::string, int>(host, port);
}

struct Server::Impl {
  Impl(scheduler::Service& s, ServerOptions o) : service(s), options(std::move(o)) {}
  scheduler::Service& service;
  ServerOptions options;
  httplib::Server http;
  int port = 0;
  std::atomic<bool> finished = false;
};

Server::Server(scheduler::Service& service, ServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {
  auto& http = impl_->http;
  int threads = impl_->options.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(impl_->options.max_body_bytes);
  http.set_read_timeout(10, 0);
  http.set_write_timeout(10, 0);
  http.set_keep_alive_timeout(5);

  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, {{"status", "ok"}});
  });
  http.Post(R"(/api/v1/pipelines/([^/]+)/runs)", [this](const httplib::Request& req,
                                                        httplib::Response& res) {
    if (!req.body.empty() &&
        !req.get_header_value("Content-Type").starts_with("application/json")) {
      // Also what keeps a web page from posting here without a CORS preflight.
      return SendError(res, 415, "unsupported_media_type",
                       "send the body as JSON with Content-Type: application/json");
    }
    if (NestingDepth(req.body) > kMaxNesting) {
      return SendError(res, 400, "invalid_json",
                       "body nests deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    json body = json::object();
    if (!req.body.empty()) {
      body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
      if (body.is_discarded()) return SendError(res, 400, "invalid_json", "body is not valid JSON");
      if (!body.is_object())
        return SendError(res, 400, "invalid_argument", "body must be an object");
    }
    scheduler::TriggerRequest trigger;
    trigger.pipeline = req.matches[1];
    trigger.actor = "http";
    static const json kNull;
    auto found = body.find("params");
    auto params = ParamsFromJson(found == body.end() ? kNull : *found);
    if (!params.ok()) return SendError(res, 400, "invalid_argument", params.message());
    trigger.params = std::move(params).value();
    if (body.contains("idempotency_key")) {
      if (!body["idempotency_key"].is_string()) {
        return SendError(res, 400, "invalid_argument", "'idempotency_key' must be a string");
      }
      trigger.idempotency_key = body["idempotency_key"].get<std::string>();
    }
    if (auto note = body.find("note"); note != body.end() && note->is_string()) {
      trigger.note = note->get<std::string>();
    }
    auto result = impl_->service.Trigger(trigger);
    if (!result.ok()) {
      return SendError(res, HttpStatus(result.status().code()), CodeName(result.status().code()),
                       result.message());
    }
    SendJson(res, result->existing ? 200 : 201,
             {{"id", Value(result->id)}, {"pipeline", trigger.pipeline}, {"state", "queued"}});
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler already answered with a JSON error
    if (res.status == 413) return SendError(res, 413, "too_large", "request body over 1 MiB");
    if (res.status == 404) return SendError(res, 404, "not_found", "no such route");
    SendError(res, res.status, "error", "request failed");
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        SendError(res, 500, "internal", "internal error");
      });
}

Server::~Server() { Stop(); }

Status Server::Bind() {
  auto& o = impl_->options;
  if (o.port == 0) {
    impl_->port = impl_->http.bind_to_any_port(o.host);
  } else {
    impl_->port = impl_->http.bind_to_port(o.host, o.port) ? o.port : -1;
  }
  if (impl_->port < 0) {
    return Status::Error(ErrorCode::kUnavailable, "cannot listen on " + o.host + ":" +
                                                      std::to_string(o.port) +
                                                      " (address in use or not local?)");
  }
  return Status::Ok();
}

int Server::port() const { return impl_->port; }
void Server::Run() {
  impl_->http.listen_after_bind();
  impl_->finished = true;
}

void Server::WaitUntilReady() const {
  // Startup handshake only: httplib offers no notification, and stop() before the accept loop
  // has started would be lost.
  while (!impl_->http.is_running() && !impl_->finished) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}
void Server::Stop() { impl_->http.stop(); }

}  // namespace kiln::web
