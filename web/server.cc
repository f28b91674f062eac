#include "web/server.h"

#include <thread>

#include "common/log.h"
#include "web/input.h"
#include "web/internal.h"

namespace kiln::web {

namespace {

using HandlerResponse = httplib::Server::HandlerResponse;

bool IsJsonType(std::string_view content_type) {
  std::string type(content_type.substr(0, content_type.find(';')));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return type == "application/json";
}

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path[0] != '/') return out;
  path.remove_prefix(1);
  while (true) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) return out;
    path.remove_prefix(slash + 1);
  }
}

struct RouteMatch {
  const Route* route = nullptr;
  std::vector<std::string> args;
  std::string allow;  // methods of the routes whose path matches, when none has `method`
};

// Matches `path` against the route templates: literal segments exactly, a {placeholder} any one
// non-empty segment. No regular expressions: a long path costs a linear scan, never recursion.
RouteMatch FindRoute(std::string_view path, std::string_view method) {
  RouteMatch match;
  auto segments = Segments(path);
  for (const Route& route : AllRoutes()) {
    auto pattern = Segments(route.path);
    if (pattern.size() != segments.size()) continue;
    std::vector<std::string> args;
    bool same = true;
    for (size_t i = 0; i < pattern.size() && same; ++i) {
      if (pattern[i].starts_with('{')) {
        same = !segments[i].empty();
        args.emplace_back(segments[i]);
      } else {
        same = pattern[i] == segments[i];
      }
    }
    if (!same) continue;
    if (route.method == method) {
      match.route = &route;
      match.args = std::move(args);
      return match;
    }
    if (!match.allow.empty()) match.allow += ", ";
    match.allow += route.method == "GET" ? "GET, HEAD" : std::string(route.method);
  }
  return match;
}

std::string SizeText(uint64_t bytes) {
  if (bytes % (1 << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes) + " bytes";
}

// Checks that the caller may use a route that needs `need`; on refusal fills `call.res`.
bool Authorize(Call& call, Role need, std::string_view method) {
  Caller caller = Identify(call.ctx, call.req);
  if (!caller.token) {
    call.res.set_header("WWW-Authenticate", "Bearer");
    SendError(call.res, 401, "unauthenticated",
              caller.presented ? "the token is not known: check it, or ask an admin for a new one"
                               : "sign in: send the header Authorization: Bearer <token>");
    return false;
  }
  if (caller.token->role < need) {
    SendError(call.res, 403, "forbidden",
              "token '" + caller.token->name + "' has the role " +
                  std::string(Name(caller.token->role)) + "; this needs " +
                  std::string(Name(need)));
    return false;
  }
  if (method == "POST" && caller.by_cookie &&
      !IsJsonType(call.req.get_header_value("Content-Type"))) {
    SendError(call.res, 403, "forbidden",
              "requests signed in by cookie must send Content-Type: application/json to change "
              "anything (so that no other site can make a browser send them)");
    return false;
  }
  call.token = caller.token;
  return true;
}

bool HasPendingBody(const httplib::Request& req) {
  return req.get_header_value<uint64_t>("Content-Length") > 0;
}

struct Admission {
  const Route* route;
  Call call;
};

// Finds the route and checks the caller and the body's type. On refusal fills `res`.
std::optional<Admission> Admit(Context& ctx, const httplib::Request& req, httplib::Response& res) {
  std::string_view method = req.method == "HEAD" ? "GET" : std::string_view(req.method);
  RouteMatch m = FindRoute(req.path, method);
  if (!m.route && m.allow.empty()) {
    SendError(res, 404, "not_found", "no such route: " + req.method + " " + Quoted(req.path));
    return std::nullopt;
  }
  if (!m.route) {
    res.set_header("Allow", m.allow);
    SendError(
        res, 405, "method_not_allowed",
        Quoted(req.path) + " does not answer " + Quoted(req.method) + "; it answers " + m.allow);
    return std::nullopt;
  }
  Admission admitted{m.route, Call{ctx, req, res, std::move(m.args)}};
  if (m.route->role && !Authorize(admitted.call, *m.route->role, method)) return std::nullopt;
  if (method == "POST" && HasPendingBody(req) &&
      !IsJsonType(req.get_header_value("Content-Type"))) {
    SendError(res, 415, "unsupported_media_type",
              "send the body as JSON with Content-Type: application/json");
    return std::nullopt;
  }
  return admitted;
}

void Serve(Context& ctx, const httplib::Request& req, httplib::Response& res) {
  if (auto admitted = Admit(ctx, req, res)) admitted->route->handler(admitted->call);
}

// Refuses a request whose body would be unbounded, too large or ambiguous. Runs before anything
// reads the body (httplib 0.11.4 reads a declared-too-large body to its end before answering 413,
// reads chunked and compressed bodies without any limit, and reads a POST without Content-Length
// until the connection ends).
bool RefuseFraming(const Context& ctx, const httplib::Request& req, httplib::Response& res) {
  if (req.has_header("Transfer-Encoding")) {
    SendError(res, 411, "length_required",
              "send the body with Content-Length (chunked request bodies are not accepted)");
    return true;
  }
  if (req.has_header("Content-Encoding") &&
      req.get_header_value("Content-Encoding") != "identity") {
    SendError(res, 415, "unsupported_media_type", "compressed request bodies are not accepted");
    return true;
  }
  if (!req.has_header("Content-Length")) return false;
  std::string text = req.get_header_value("Content-Length");
  bool digits = !text.empty() && text.size() <= 40 &&
                text.find_first_not_of("0123456789") == std::string::npos;
  if (!digits || req.get_header_value_count("Content-Length") > 1) {
    SendError(res, 400, "invalid_argument", "Content-Length must be one decimal number");
    return true;
  }
  size_t first = text.find_first_not_of('0');
  std::string_view significant =
      first == std::string::npos ? "0" : std::string_view(text).substr(first);
  uint64_t max = ctx.options.max_body_bytes;
  if (significant.size() > 19 || std::stoull(std::string(significant)) > max) {
    SendError(res, 413, "too_large", "request body over " + SizeText(max));
    return true;
  }
  if (significant != "0" && (req.method == "GET" || req.method == "HEAD")) {
    SendError(res, 400, "invalid_argument", req.method + " requests take no body");
    return true;
  }
  return false;
}

// Sends the response prepared in `res` and then closes the connection: for refusals made while
// a request body is still unread on it. The body is written by a content provider that reports
// failure after writing everything, which is how httplib 0.11.4 can be made to close.
void CloseAfterResponse(httplib::Response& res) {
  auto body = std::make_shared<std::string>(std::move(res.body));
  std::string type = res.get_header_value("Content-Type");
  res.body.clear();
  res.headers.erase("Content-Type");
  res.set_header("Connection", "close");
  res.set_content_provider(body->size(), type,
                           [body](size_t offset, size_t length, httplib::DataSink& sink) {
                             sink.write(body->data() + offset, length);
                             return false;
                           });
}

// True, with `res` filled and the connection set to close, when the request is refused before
// its body is read: bad framing, or a POST with a body that would be refused anyway.
bool RefuseBeforeBody(Context& ctx, const httplib::Request& req, httplib::Response& res) {
  bool refused = RefuseFraming(ctx, req, res) ||
                 (req.method == "POST" && HasPendingBody(req) && !Admit(ctx, req, res));
  if (refused) CloseAfterResponse(res);
  return refused;
}

// Serves every request whose body need not be read. A POST with a body is admitted here (so that
// a refused one is never read) and served by the POST handler once httplib has read the body.
HandlerResponse PreRoute(Context& ctx, const httplib::Request& req, httplib::Response& res) {
  if (RefuseBeforeBody(ctx, req, res)) return HandlerResponse::Handled;
  if (req.method == "POST" && HasPendingBody(req)) return HandlerResponse::Unhandled;
  if (req.method == "POST" && !req.has_header("Content-Length")) {
    // HTTP/1.1: no length and no chunking is an empty body; httplib would wait for more.
    MutableRequest(req).set_header("Content-Length", "0");
  }
  Serve(ctx, req, res);
  if (HasPendingBody(req)) CloseAfterResponse(res);  // a body that no route reads (PUT, ...)
  return HandlerResponse::Handled;
}

// Answers for failures that httplib detects itself (bad request line, URI too long, ...).
HandlerResponse OnError(const httplib::Request&, httplib::Response& res) {
  if (res.has_header("Content-Type")) return HandlerResponse::Unhandled;  // already ours
  switch (res.status) {
    case 400:
      SendError(res, 400, "invalid_argument", "the request line or headers could not be read");
      break;
    case 404:
      SendError(res, 404, "not_found", "no such route");
      break;
    case 413:
      SendError(res, 413, "too_large", "request body too large");
      break;
    case 414:
      SendError(res, 414, "invalid_argument", "request URI too long");
      break;
    case 416:
      SendError(res, 416, "invalid_argument", "the Range header could not be read");
      break;
    default:
      SendError(res, res.status, res.status >= 500 ? "internal" : "invalid_argument",
                "request failed");
  }
  return HandlerResponse::Handled;
}

httplib::Headers SecurityHeaders() {
  return {{"X-Content-Type-Options", "nosniff"},
          {"Cache-Control", "no-store"},
          {"X-Frame-Options", "DENY"},
          {"Referrer-Policy", "no-referrer"},
          {"Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"}};
}

}  // namespace

httplib::Request& MutableRequest(const httplib::Request& req) {
  // httplib owns a non-const Request and hands handlers a const view of it; adjusting a header
  // is how a handler steers what httplib does next (how it reads the body, how it encodes).
  return const_cast<httplib::Request&>(req);
}

const std::vector<Route>& AllRoutes() {
  static const std::vector<Route> routes = [] {
    std::vector<Route> all;
    for (auto part :
         {HealthRoutes(), PipelineRoutes(), RunRoutes(), BackfillRoutes(), StreamRoutes()}) {
      all.insert(all.end(), part.begin(), part.end());
    }
    return all;
  }();
  return routes;
}

Result<std::pair<std::string, int>> ParseListen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "listen address '" + listen + "' must be HOST:PORT, e.g. 127.0.0.1:8080");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
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
  Impl(scheduler::Service& s, ServerOptions o) : ctx(s, std::move(o)) {}
  Context ctx;
  httplib::Server http;
  int port = 0;
  std::atomic<bool> finished = false;
};

Server::Server(scheduler::Service& service, ServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {
  Context& ctx = impl_->ctx;
  auto& http = impl_->http;
  size_t threads = static_cast<size_t>(std::max(1, ctx.options.threads)) +
                   static_cast<size_t>(std::max(0, ctx.options.max_streams));
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(ctx.options.max_body_bytes);
  http.set_read_timeout(ctx.options.io_timeout);
  http.set_write_timeout(ctx.options.io_timeout);
  http.set_keep_alive_timeout(ctx.options.keep_alive.count());
  // httplib writes headers and body separately: with Nagle's algorithm the body then waits for
  // the client's delayed ACK (40 ms on Linux) on every keep-alive request.
  http.set_tcp_nodelay(true);
  // httplib closes a keep-alive connection after 5 requests by default: clients that poll would
  // reconnect all the time.
  http.set_keep_alive_max_count(1000);
  http.set_default_headers(SecurityHeaders());
  http.set_pre_routing_handler([&ctx](const httplib::Request& req, httplib::Response& res) {
    return PreRoute(ctx, req, res);
  });
  http.set_expect_100_continue_handler([&ctx](const httplib::Request& req, httplib::Response& res) {
    // Refusals are answered instead of "100 Continue", so the client never sends the body.
    return RefuseBeforeBody(ctx, req, res) ? res.status : 100;
  });
  http.Post(".*",
            [&ctx](const httplib::Request& req, httplib::Response& res) { Serve(ctx, req, res); });
  http.set_error_handler(httplib::Server::HandlerWithResponse(OnError));
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
        try {
          if (error) std::rethrow_exception(error);
        } catch (const std::exception& e) {
          log::Error(std::string("http: request failed: ") + e.what());
        } catch (...) {
          log::Error("http: request failed");
        }
        SendError(res, 500, "internal", "internal error");
      });
}

Server::~Server() { Stop(); }

Status Server::Bind() {
  const auto& o = impl_->ctx.options;
  if (Status checked = CheckTokens(o.tokens); !checked.ok()) return checked;
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

void Server::Stop() {
  impl_->ctx.stopping = true;
  impl_->http.stop();
}

std::vector<std::pair<std::string, std::string>> Server::Routes() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Route& r : AllRoutes()) out.emplace_back(r.method, r.path);
  return out;
}

}  // namespace kiln::web
