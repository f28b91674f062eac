// GET /, /healthz, /readyz, /metrics and /api/v1/openapi.json.
#include "web/internal.h"
#include "web/metrics_text.h"
#include "web/openapi.h"

namespace kiln::web {

namespace {

std::string EscapeHtml(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// `body` is trusted HTML: callers escape every value they put in it.
void SendPage(Response& res, int status, std::string_view body) {
  res.status = status;
  std::string html =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kiln</title>"
      "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}</style></head>"
      "<body><h1>kiln</h1>\n";
  html.append(body).append("\n</body></html>\n");
  res.set_content(html, "text/html; charset=utf-8");
}

void SendSignIn(Response& res, std::string_view problem) {
  res.set_header("WWW-Authenticate", "Bearer");
  std::string body = "<p>" + EscapeHtml(problem) + "</p>";
  body +=
      "<p>Sign in by opening the sign-in address that <code>kiln serve</code> printed when it "
      "first started (<code>/?token=...</code>), or call the API with the header "
      "<code>Authorization: Bearer &lt;token&gt;</code>.</p>";
  SendPage(res, 401, body);
}

// Opening /?token=<secret> stores a session value for the token (never the token itself) in an
// HttpOnly cookie and reloads / without the token in the address.
void SignIn(Call& call, const std::string& secret) {
  const Token* token = call.ctx.tokens.Find(secret);
  if (token == nullptr) {
    return SendSignIn(call.res, "That sign-in address is not valid: its token is not known.");
  }
  call.res.set_header("Set-Cookie", std::string(kSessionCookie) + "=" +
                                        call.ctx.tokens.SessionFor(*token) +
                                        "; HttpOnly; SameSite=Strict; Path=/");
  call.res.set_header("Location", "/");
  SendPage(call.res, 303, "<p>Signed in. <a href=\"/\">Continue</a>.</p>");
}

void Home(Call& call) {
  if (auto secret = QueryValue(call.req, "token")) return SignIn(call, *secret);
  Caller caller = Identify(call.ctx, call.req);
  if (!caller.token) {
    return SendSignIn(call.res, caller.presented ? "Your sign-in is not valid (any more)."
                                                 : "You are not signed in.");
  }
  std::string body = "<p>Signed in as <b>" + EscapeHtml(caller.token->name) + "</b> (" +
                     std::string(Name(caller.token->role)) + ").</p>\n<ul>";
  for (auto [href, text] :
       {std::pair{"/api/v1/pipelines", "Pipelines"}, std::pair{"/api/v1/runs", "Runs"},
        std::pair{"/api/v1/openapi.json", "API description (OpenAPI)"},
        std::pair{"/metrics", "Metrics"}}) {
    body.append("<li><a href=\"").append(href).append("\">").append(text).append("</a></li>");
  }
  body += "</ul>";
  SendPage(call.res, 200, body);
}

void Healthz(Call& call) {
  if (AcceptQuery(call, {})) SendJson(call.res, 200, {{"status", "ok"}});
}

void Readyz(Call& call) {
  if (!AcceptQuery(call, {})) return;
  Status ready = call.ctx.service.Ready();
  if (!ready.ok()) return SendError(call.res, 503, "unavailable", ready.message());
  SendJson(call.res, 200, {{"status", "ready"}});
}

void Metrics(Call& call) {
  if (!AcceptQuery(call, {})) return;
  call.res.status = 200;
  call.res.set_content(RenderMetrics(call.ctx.service.Metrics()), kMetricsContentType);
}

void OpenApi(Call& call) {
  if (!AcceptQuery(call, {})) return;
  call.res.status = 200;
  call.res.set_content(std::string(OpenApiDocument()), "application/json");
}

}  // namespace

std::vector<Route> HealthRoutes() {
  return {
      {"GET", "/", std::nullopt, Home},
      {"GET", "/healthz", std::nullopt, Healthz},
      {"GET", "/readyz", Role::kViewer, Readyz},
      {"GET", "/metrics", Role::kViewer, Metrics},
      {"GET", "/api/v1/openapi.json", Role::kViewer, OpenApi},
  };
}

}  // namespace kiln::web
