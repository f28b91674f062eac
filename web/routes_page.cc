// The web page: GET / (the page, and signing in by the printed address), GET /ui/{file} (its
// files, built into the binary), and signing in and out with a form: /api/v1/session.
#include "web/assets.h"
#include "web/input.h"
#include "web/internal.h"

namespace kiln::web {

namespace {

// The page's scripts and styles come from the daemon alone: no inline script or style, no eval,
// no frames, no other origin.
constexpr const char* kPagePolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

std::string SessionCookieHeader(std::string_view value, bool clear) {
  std::string out = std::string(kSessionCookie) + "=" + std::string(value) +
                    "; HttpOnly; SameSite=Strict; Path=/";
  if (clear) out += "; Max-Age=0";
  return out;
}

void SendAsset(Call& call, const Asset& asset, int status) {
  call.res.status = status;
  call.res.set_header("Content-Security-Policy", kPagePolicy);
  call.res.set_header("ETag", std::string(asset.etag));
  // Asked again every time, answered 304 while unchanged: a new daemon's page is never stale.
  call.res.set_header("Cache-Control", "no-cache");
  if (status == 200 && call.req.get_header_value("If-None-Match") == asset.etag) {
    call.res.status = 304;
    return;
  }
  call.res.set_content(std::string(asset.body), std::string(asset.type));
}

// The page itself. Signed in or not, it is the same file: it asks /api/v1/session who the
// browser is and shows the sign-in form when nobody. Opening /?token=<secret> (the address
// `kiln serve` prints) opens a session, sets its cookie and reloads / without the token.
void Page(Call& call) {
  if (!AcceptQuery(call, {"token"})) return;
  const Asset* page = FindAsset("index.html");
  KILN_CHECK(page != nullptr);
  if (auto secret = QueryValue(call.req, "token")) {
    // A sign-in link another site sent the browser to would sign it in as that site's token
    // (login CSRF): what the browser then does would be done, and seen, as someone else. Such a
    // navigation says so (Sec-Fetch-Site); it gets the page without a session, and the address
    // typed, pasted or opened from a terminal (none) still signs in.
    const std::string site = call.req.get_header_value("Sec-Fetch-Site");
    if (site == "cross-site" || site == "same-site") {
      call.res.set_header("Location", "/");
      call.res.status = 303;
      return;
    }
    auto token = call.ctx.tokens.Find(*secret);
    // (A token removed by a reload meanwhile opens no session either.)
    auto session = token ? call.ctx.sessions.Open(*token, &call.ctx.tokens) : std::nullopt;
    if (!session) {
      // The page sees the token in its address and says that it is not known.
      call.res.set_header("WWW-Authenticate", "Bearer");
      return SendAsset(call, *page, 401);
    }
    call.res.set_header("Set-Cookie", SessionCookieHeader(*session, /*clear=*/false));
    call.res.set_header("Location", "/");
    call.res.status = 303;
    return;
  }
  SendAsset(call, *page, 200);
}

void UiFile(Call& call) {
  if (!AcceptQuery(call, {})) return;
  const Asset* asset = FindAsset(call.args[0]);
  if (asset == nullptr || asset->name == "index.html") {
    return SendError(call.res, 404, "not_found", "no such file: " + Quoted(call.req.path));
  }
  SendAsset(call, *asset, 200);
}

json Who(const Token& token) {
  return {{"name", token.name}, {"role", std::string(Name(token.role))}};
}

void GetSession(Call& call) {
  if (!AcceptQuery(call, {})) return;
  SendJson(call.res, 200, Who(*call.token));
}

// A cookie-borne request must be JSON to change anything (as on every other route).
bool RefuseForm(Call& call) {
  if (IsJsonType(call.req.get_header_value("Content-Type"))) return false;
  SendError(call.res, 415, "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json");
  return true;
}

// The sign-in form: {"token": "..."} opens a session and sets its cookie.
void SignIn(Call& call) {
  if (!AcceptQuery(call, {}) || RefuseForm(call)) return;
  auto body = ReadObject(call, {"token"});
  if (!body) return;
  auto it = body->value.find("token");
  if (it == body->value.end() || !it->is_string() || it->get<std::string>().empty()) {
    return SendError(
        call.res, 400, "invalid_argument",
        std::string(it == body->value.end() || (it->is_string()) ? "'token' is required"
                                                                 : "'token' must be a string") +
            ": the token's text");
  }
  auto token = call.ctx.tokens.Find(it->get<std::string>());
  auto session = token ? call.ctx.sessions.Open(*token, &call.ctx.tokens) : std::nullopt;
  if (!session) {
    return SendError(call.res, 401, "unauthenticated",
                     "the token is not known: check it, or ask an admin for a new one");
  }
  call.res.set_header("Set-Cookie", SessionCookieHeader(*session, /*clear=*/false));
  SendJson(call.res, 200, Who(*token));
}

// Ends the browser's session (it stops working at once, also if copied) and clears its cookie.
void SignOut(Call& call) {
  if (!AcceptQuery(call, {}) || RefuseForm(call) || !ReadObject(call, {})) return;
  for (size_t i = 0; i < call.req.get_header_value_count("Cookie"); ++i) {
    const std::string header = call.req.get_header_value("Cookie", i);
    if (auto value = CookieValue(header, kSessionCookie)) call.ctx.sessions.Close(*value);
  }
  call.res.set_header("Set-Cookie", SessionCookieHeader("", /*clear=*/true));
  SendJson(call.res, 200, {{"signed_out", true}});
}

}  // namespace

std::vector<Route> PageRoutes() {
  return {
      {"GET", "/", std::nullopt, Page},
      {"GET", "/ui/{file}", std::nullopt, UiFile},
      {"GET", "/api/v1/session", Role::kViewer, GetSession},
      {"POST", "/api/v1/session", std::nullopt, SignIn},
      {"POST", "/api/v1/session/end", std::nullopt, SignOut},
  };
}

}  // namespace kiln::web
