// Helpers shared by the route handlers: responses, callers, query strings, bodies, path ids.
#include <algorithm>
#include <limits>

#include "web/input.h"
#include "web/internal.h"

namespace kiln::web {

namespace {

std::string Dump(const json& body) {
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string Joined(std::initializer_list<std::string_view> names) {
  std::string out;
  for (auto name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

}  // namespace

std::shared_ptr<void> StreamSlots::TryAcquire() {
  int now = used_->load();
  do {
    if (now >= max_) return nullptr;
  } while (!used_->compare_exchange_weak(now, now + 1));
  auto used = used_;
  return std::shared_ptr<void>(used.get(), [used](void*) { used->fetch_sub(1); });
}

void SendJson(Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

void SendError(Response& res, int status, std::string_view code, std::string_view message) {
  SendJson(res, status, {{"error", {{"code", code}, {"message", message}}}});
}

void SendStatus(Response& res, const Status& status) {
  switch (status.code()) {
    case ErrorCode::kInvalidArgument:
      return SendError(res, 400, "invalid_argument", status.message());
    case ErrorCode::kNotFound:
      return SendError(res, 404, "not_found", status.message());
    case ErrorCode::kConflict:
      return SendError(res, 409, "conflict", status.message());
    case ErrorCode::kUnavailable:
      return SendError(res, 503, "unavailable", status.message());
    default:
      return SendError(res, 500, "internal", status.message());
  }
}

Caller Identify(const Context& ctx, const Request& req) {
  Caller caller;
  if (req.has_header("Authorization")) {
    caller.presented = true;
    // Two credentials: which one a proxy or a client meant is not for the server to guess.
    if (req.get_header_value_count("Authorization") > 1) {
      caller.refused = "the header Authorization is sent more than once; send one";
      return caller;
    }
    std::string header = req.get_header_value("Authorization");
    if (auto secret = BearerSecret(header)) caller.token = ctx.tokens.Find(*secret);
    if (!caller.token)
      caller.refused = "the token is not known: check it, or ask an admin for a new one";
    return caller;
  }
  for (size_t i = 0; i < req.get_header_value_count("Cookie"); ++i) {
    std::string header = req.get_header_value("Cookie", i);
    if (auto session = CookieValue(header, kSessionCookie)) {
      caller.presented = caller.by_cookie = true;
      if (auto token = ctx.sessions.Find(*session)) caller.token = ctx.tokens.ByHash(*token);
      if (!caller.token) {
        caller.refused =
            "the session has ended (signed out, its token removed, or the daemon restarted): "
            "sign in again with /?token=<token>";
      }
      return caller;
    }
  }
  return caller;
}

Status QueryError(std::string_view name, std::string_view why) {
  return Status::Error(ErrorCode::kInvalidArgument,
                       "query parameter " + Quoted(name) + ": " + std::string(why));
}

bool AcceptQuery(Call& call, std::initializer_list<std::string_view> allowed) {
  const auto& params = call.req.params;
  for (auto it = params.begin(); it != params.end(); it = params.upper_bound(it->first)) {
    const std::string& name = it->first;
    Status error;
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      error = QueryError(name, allowed.size() == 0 ? "unknown; this route takes no query parameters"
                                                   : "unknown; accepted: " + Joined(allowed));
    } else if (params.count(name) > 1) {
      error = QueryError(name, "given more than once");
    } else if (!IsSafeUtf8(it->second)) {
      // Nothing downstream (the database above all) holds such text.
      error = QueryError(name, "must be UTF-8 text without NUL characters");
    }
    if (!error.ok()) {
      SendStatus(call.res, error);
      return false;
    }
  }
  return true;
}

std::optional<std::string> QueryValue(const Request& req, const std::string& name) {
  if (!req.has_param(name)) return std::nullopt;
  return req.get_param_value(name);
}

Status ReadPaging(const Request& req, Paging& out) {
  if (auto limit = QueryValue(req, "limit")) {
    auto n = ParseCount(*limit);
    if (!n || *n < 1) {
      return QueryError("limit", "must be a whole number of 1 or more (above " +
                                     std::to_string(kMaxPageLimit) + " means " +
                                     std::to_string(kMaxPageLimit) + "), not " + Quoted(*limit));
    }
    out.limit = static_cast<int>(std::min<int64_t>(*n, kMaxPageLimit));
  }
  if (auto cursor = QueryValue(req, "cursor")) {
    auto id = ParseDecimal(*cursor, 1);
    if (!id) {
      return QueryError("cursor",
                        "must be a next_cursor from an earlier page, not " + Quoted(*cursor));
    }
    out.before = RunId{*id};
  }
  return Status::Ok();
}

std::optional<JsonBody> ReadObject(Call& call, std::initializer_list<std::string_view> allowed) {
  if (call.req.body.empty()) return JsonBody{json::object(), {}};
  auto parsed = ParseJsonBody(call.req.body, kMaxNesting);
  if (!parsed.ok()) {
    SendError(call.res, 400, "invalid_json", parsed.message());
    return std::nullopt;
  }
  if (!parsed->value.is_object()) {
    SendError(call.res, 400, "invalid_argument", "body must be a JSON object");
    return std::nullopt;
  }
  for (const auto& [key, value] : parsed->value.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      SendError(
          call.res, 400, "invalid_argument",
          "body: unknown field " + Quoted(key) +
              (allowed.size() == 0 ? "; send no body or {}" : "; accepted: " + Joined(allowed)));
      return std::nullopt;
    }
  }
  return std::move(parsed).value();
}

bool CheckPipelineArg(Call& call, const std::string& name) {
  Status checked = CheckPipelineName(name);
  if (!checked.ok()) SendStatus(call.res, checked);
  return checked.ok();
}

bool CheckTaskArg(Call& call, const std::string& task) {
  Status checked = CheckTaskId(task);
  if (!checked.ok()) SendStatus(call.res, checked);
  return checked.ok();
}

std::optional<RunId> RunArg(Call& call, const std::string& text) {
  if (auto id = ParseDecimal(text, 1)) return RunId{*id};
  SendError(call.res, 400, "invalid_argument",
            "run id " + Quoted(text) + " must be a positive integer");
  return std::nullopt;
}

std::optional<int> AttemptArg(Call& call, const std::string& text) {
  auto n = ParseDecimal(text, 1);
  if (n && *n <= std::numeric_limits<int>::max()) return static_cast<int>(*n);
  SendError(call.res, 400, "invalid_argument",
            "attempt " + Quoted(text) + " must be a positive integer");
  return std::nullopt;
}

}  // namespace kiln::web
