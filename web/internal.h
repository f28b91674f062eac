// Private to web/: what server.cc and the route files share. No header outside web/ may include
// this one.
#pragma once

#include <atomic>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scheduler/service.h"
#include "web/auth.h"
#include "web/http.h"
#include "web/json_body.h"
#include "web/server.h"

namespace kiln::web {

// The sign-in cookie (web/auth.h SessionTable).
inline constexpr const char* kSessionCookie = "kiln_session";

constexpr int kMaxNesting = 32;

// Counts open streams against a cap. Thread-safe.
class StreamSlots {
 public:
  explicit StreamSlots(int max) : max_(max) {}
  // A held slot, released when the last copy of the pointer is dropped; null when all are taken.
  std::shared_ptr<void> TryAcquire();

 private:
  std::shared_ptr<std::atomic<int>> used_ = std::make_shared<std::atomic<int>>(0);
  int max_;
};

// What every handler may reach. Owned by the server; outlives every request it serves.
struct Context {
  Context(scheduler::Service& s, ServerOptions o)
      : service(s), options(std::move(o)), tokens(options.tokens), streams(options.max_streams) {}
  scheduler::Service& service;
  const ServerOptions options;
  Tokens tokens;  // replaced by a reload of kiln.toml (Server::SetTokens)
  SessionTable sessions;
  StreamSlots streams;
  std::atomic<bool> stopping = false;  // set by Server::Stop(): streams end
};

// One admitted request: its route matched and its caller may use it.
struct Call {
  Context& ctx;
  const Request& req;
  Response& res;
  std::vector<std::string> args;       // the {placeholders} of the route's path, in order
  std::shared_ptr<const Token> token;  // who asked; null on routes that need no token
  // The actor recorded for changes.
  std::string actor() const { return token ? token->name : ""; }
};

using HandlerFn = void (*)(Call&);

// One route. `path` is the OpenAPI path template, e.g. "/api/v1/runs/{id}".
struct Route {
  std::string_view method;  // "GET" or "POST"
  std::string_view path;
  std::optional<Role> role;  // nullopt: served without a token
  HandlerFn handler;
};

// The routes of each file; AllRoutes() is their union.
std::vector<Route> HealthRoutes();    // routes_health.cc: /healthz, /readyz, /metrics, openapi
std::vector<Route> PipelineRoutes();  // routes_pipelines.cc
std::vector<Route> RunRoutes();       // routes_runs.cc
std::vector<Route> StreamRoutes();    // routes_logs_events.cc: attempts, logs, events
std::vector<Route> BackfillRoutes();  // routes_backfills.cc
std::vector<Route> PageRoutes();      // routes_page.cc: /, /ui/{file}, /api/v1/session
std::vector<Route> GridRoutes();      // routes_grid.cc: a pipeline's grid and graph, run attempts
std::vector<Route> ResultRoutes();    // routes_results.cc: metrics, lineage
std::vector<Route> ModelRoutes();     // routes_models.cc: the model registry
const std::vector<Route>& AllRoutes();

// Responses. Every JSON response goes through these (invalid UTF-8 is replaced, never thrown on).
void SendJson(Response& res, int status, const json& body);
void SendError(Response& res, int status, std::string_view code, std::string_view message);
// A failed Status by its code: kInvalidArgument 400, kNotFound 404, kConflict 409,
// kUnavailable 503, anything else 500.
void SendStatus(Response& res, const Status& status);
// Who the caller is, from the Authorization header or else the kiln_session cookie.
struct Caller {
  std::shared_ptr<const Token> token;
  bool presented = false;  // a credential was sent (maybe an unknown one)
  bool by_cookie = false;
  std::string refused;  // why a credential sent was not taken ("" when none was sent)
};
Caller Identify(const Context& ctx, const Request& req);
// Whether `token` was removed by a reload of kiln.toml since a request took it (an open stream
// then ends).
inline bool Revoked(const Context& ctx, const Token& token) {
  return ctx.tokens.ByHash(token.sha256_hex) == nullptr;
}

// Whether a Content-Type header names JSON ("application/json", parameters and case aside).
bool IsJsonType(std::string_view content_type);

// Query strings: true when every parameter is one of `allowed` and none repeats; else sends 400
// naming the parameter and returns false.
bool AcceptQuery(Call& call, std::initializer_list<std::string_view> allowed);
std::optional<std::string> QueryValue(const Request& req, const std::string& name);
// "query parameter 'name': <why>" as kInvalidArgument.
Status QueryError(std::string_view name, std::string_view why);

// The paging of a list of runs: `limit` (1 to kMaxPageLimit; more is cut to it) and `cursor` (the
// next_cursor of an earlier page: the run id the page starts below).
constexpr int kMaxPageLimit = 100;
struct Paging {
  std::optional<int> limit;
  std::optional<RunId> before;
};
Status ReadPaging(const Request& req, Paging& out);

// The request body as a JSON object whose fields are all in `allowed` (an empty body is {}).
// On error sends 400 (invalid_json or invalid_argument) and returns nullopt.
std::optional<JsonBody> ReadObject(Call& call, std::initializer_list<std::string_view> allowed);
// Sends 400 and returns false unless the path argument is valid.
bool CheckPipelineArg(Call& call, const std::string& name);
bool CheckTaskArg(Call& call, const std::string& task);
std::optional<RunId> RunArg(Call& call, const std::string& text);
// A positive int: an attempt number.
std::optional<int> AttemptArg(Call& call, const std::string& text);

}  // namespace kiln::web
