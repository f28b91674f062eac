#include "web/server.h"

#include "common/log.h"
#include "web/front.h"
#include "web/input.h"
#include "web/internal.h"

namespace kiln::web {

bool IsJsonType(std::string_view content_type) {
  std::string type = AsciiLower(content_type.substr(0, content_type.find(';')));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  return type == "application/json";
}

namespace {

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

// Matches `raw_path` (as sent, not yet decoded) against the route templates: literal segments
// exactly, a {placeholder} any one non-empty segment. Each segment is decoded on its own, so an
// encoded '/' ("a%2Fb") is part of a name, never a separator. No regular expressions: a long
// path costs a linear scan, never recursion.
RouteMatch FindRoute(std::string_view raw_path, std::string_view method) {
  RouteMatch match;
  std::vector<std::string> segments;
  for (std::string_view raw : Segments(raw_path)) {
    std::string decoded;
    if (!DecodeSegment(raw, decoded)) return match;  // ParseTarget refused it already
    segments.push_back(std::move(decoded));
  }
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
              caller.presented ? caller.refused
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

bool HasPendingBody(const Request& req) {
  std::string length = req.get_header_value("Content-Length");
  return !length.empty() && length.find_first_not_of('0') != std::string::npos;
}

struct Admission {
  const Route* route;
  Call call;
};

// Finds the route and checks the caller and the body's type. On refusal fills `res`.
std::optional<Admission> Admit(Context& ctx, const Request& req, Response& res) {
  std::string_view method = req.method == "HEAD" ? "GET" : std::string_view(req.method);
  RouteMatch m = FindRoute(std::string_view(req.target).substr(0, req.target.find('?')), method);
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
  Admission admitted{m.route, Call{ctx, req, res, std::move(m.args), nullptr}};
  if (m.route->role && !Authorize(admitted.call, *m.route->role, method)) return std::nullopt;
  if (method == "POST" && HasPendingBody(req) &&
      !IsJsonType(req.get_header_value("Content-Type"))) {
    SendError(res, 415, "unsupported_media_type",
              "send the body as JSON with Content-Type: application/json");
    return std::nullopt;
  }
  return admitted;
}

// Refuses a request whose body would be unbounded, too large or ambiguous, before anything
// reads it.
bool RefuseFraming(const Context& ctx, const Request& req, Response& res) {
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
  if (req.get_header_value_count("Content-Type") > 1) {
    // Read one way here and another by a proxy, it could pass for JSON where it is not.
    SendError(res, 400, "invalid_argument", "send Content-Type once");
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

// Before any body is read, on the I/O thread: bad framing, an unknown route, a caller who may
// not use it or a body of the wrong type is answered at once and never reaches a worker.
std::optional<Response> BeforeBody(Context& ctx, const Request& req) {
  Response res;
  if (RefuseFraming(ctx, req, res) || !Admit(ctx, req, res)) return res;
  return std::nullopt;
}

void Serve(Context& ctx, Request& req, Response& res) {
  if (auto admitted = Admit(ctx, req, res)) admitted->route->handler(admitted->call);
}

// /healthz says the process answers: served on the I/O thread, never behind busy workers.
bool Immediate(const Request& req) {
  return req.path == "/healthz" && (req.method == "GET" || req.method == "HEAD");
}

Response ErrorResponse(int status, std::string_view code, std::string_view message) {
  Response res;
  SendError(res, status, code, message);
  return res;
}

}  // namespace

const std::vector<Route>& AllRoutes() {
  static const std::vector<Route> routes = [] {
    std::vector<Route> all;
    for (auto part : {PageRoutes(), HealthRoutes(), PipelineRoutes(), GridRoutes(), RunRoutes(),
                      BackfillRoutes(), StreamRoutes(), ResultRoutes(), ModelRoutes()}) {
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
  Impl(scheduler::Service& s, ServerOptions o) : ctx(s, std::move(o)), front(FrontFor(ctx)) {}

  static FrontOptions Options(const ServerOptions& o) {
    FrontOptions f;
    f.host = o.host;
    f.port = o.port;
    f.threads = o.threads;
    f.streams = o.max_streams;
    f.queue = o.queue;
    f.max_body_bytes = o.max_body_bytes;
    f.max_header_bytes = o.max_header_bytes;
    f.max_headers = o.max_headers;
    f.max_connections = o.max_connections;
    f.max_per_client = o.max_per_client;
    f.head_timeout = o.head_timeout;
    f.idle_timeout = o.keep_alive;
    f.io_timeout = o.io_timeout;
    return f;
  }
  static Front FrontFor(Context& ctx) {
    FrontHandlers h;
    h.before_body = [&ctx](const Request& req) { return BeforeBody(ctx, req); };
    h.immediate = Immediate;
    h.serve = [&ctx](Request& req, Response& res) { Serve(ctx, req, res); };
    h.error = ErrorResponse;
    return Front(Options(ctx.options), std::move(h));
  }

  Context ctx;
  Front front;
};

Server::Server(scheduler::Service& service, ServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {}

Server::~Server() { Stop(); }

Status Server::Bind() {
  if (Status checked = CheckTokens(impl_->ctx.options.tokens); !checked.ok()) return checked;
  return impl_->front.Bind();
}

int Server::port() const { return impl_->front.port(); }

void Server::Run() { impl_->front.Run(); }

void Server::WaitUntilReady() const { impl_->front.WaitUntilReady(); }

Status Server::SetTokens(std::vector<Token> tokens) {
  if (Status set = impl_->ctx.tokens.Set(std::move(tokens)); !set.ok()) return set;
  impl_->ctx.sessions.CloseUnless(impl_->ctx.tokens);
  return Status::Ok();
}

void Server::Stop() {
  impl_->ctx.stopping = true;
  impl_->front.Stop();
}

std::vector<std::pair<std::string, std::string>> Server::Routes() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Route& r : AllRoutes()) out.emplace_back(r.method, r.path);
  return out;
}

}  // namespace kiln::web
