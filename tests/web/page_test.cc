// The web page as the daemon serves it: the page and its files, signing in by address and by
// form, signing out, and the headers that keep the page to its own scripts.
#include <set>

#include "tests/web/harness.h"
#include "web/assets.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

namespace {

const std::string kPagePolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

std::string CookieOf(const httplib::Result& r) {
  std::string set = r->get_header_value("Set-Cookie");
  return set.substr(0, set.find(';'));
}

}  // namespace

TEST_CASE("the page and its files are built in, served with their type, policy and ETag") {
  TestServer server;
  auto client = server.Client();
  auto page = client->Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->get_header_value("Content-Type") == "text/html; charset=utf-8");
  CHECK(page->get_header_value("Content-Security-Policy") == kPagePolicy);
  CHECK(page->get_header_value("X-Content-Type-Options") == "nosniff");
  CHECK(page->get_header_value("Cache-Control") == "no-cache");
  CHECK(page->body == std::string(FindAsset("index.html")->body));
  CHECK(page->body.find("<script type=\"module\" src=\"/ui/app.js\"></script>") !=
        std::string::npos);

  // Every file the page names is served; nothing is fetched from elsewhere.
  std::set<std::string> names;
  size_t total = 0;
  for (const Asset& a : Assets()) {
    names.insert(std::string(a.name));
    total += a.body.size();
    if (a.name == "index.html") continue;
    INFO(a.name);
    auto r = client->Get(("/ui/" + std::string(a.name)).c_str());
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == std::string(a.body));
    CHECK(r->get_header_value("Content-Type") == std::string(a.type));
    CHECK(r->get_header_value("ETag") == std::string(a.etag));
    // No address of another site (the SVG namespace is a name, never fetched).
    std::string text = r->body;
    for (size_t at; (at = text.find("http://www.w3.org/2000/svg")) != std::string::npos;) {
      text.erase(at, 26);
    }
    CHECK(text.find("http://") == std::string::npos);
    CHECK(text.find("https://") == std::string::npos);
    auto again = client->Get(("/ui/" + std::string(a.name)).c_str(),
                             {{"If-None-Match", std::string(a.etag)}});
    CHECK(again->status == 304);
    CHECK(again->body.empty());
  }
  CHECK(names.count("app.js") == 1);
  CHECK(names.count("app.css") == 1);
  CHECK(total < (1 << 20));  // the issue's budget: under 1 MiB in all
  CHECK(ContentTypeFor("x.js") == "text/javascript; charset=utf-8");
  CHECK(ContentTypeFor("x.svg") == "image/svg+xml");
  CHECK(ContentTypeFor("x.bin") == "application/octet-stream");

  CHECK(client->Get("/ui/nope.js")->status == 404);
  CHECK(client->Get("/ui/index.html")->status == 404);  // the page is at / only
  CHECK(client->Get("/ui/..%2fserver.cc")->status == 404);
  CHECK(client->Get("/?other=1")->status == 400);
}

TEST_CASE("the sign-in address opens a session in an HttpOnly cookie and forgets the token") {
  TestServer server;
  auto client = server.Client();
  auto r = client->Get(("/?token=" + kOperatorSecret).c_str());
  REQUIRE(r);
  CHECK(r->status == 303);
  CHECK(r->get_header_value("Location") == "/");
  std::string set = r->get_header_value("Set-Cookie");
  // A random session value: 64 hex digits, never the token.
  REQUIRE(set.size() ==
          std::string("kiln_session=; HttpOnly; SameSite=Strict; Path=/").size() + 64);
  CHECK(set.starts_with("kiln_session="));
  CHECK(set.ends_with("; HttpOnly; SameSite=Strict; Path=/"));
  CHECK(set.find(kOperatorSecret) == std::string::npos);
  CHECK(r->get_header_value("Referrer-Policy") == "no-referrer");

  httplib::Headers cookie = {{"Cookie", "theme=dark; " + CookieOf(r)}};
  auto who = client->Get("/api/v1/session", cookie);
  CHECK(who->status == 200);
  CHECK(Body(who) == json{{"name", "ops"}, {"role", "operator"}});
  CHECK(client->Get("/api/v1/pipelines", cookie)->status == 200);
  // Each sign-in is a session of its own.
  CHECK(CookieOf(client->Get(("/?token=" + kOperatorSecret).c_str())) != CookieOf(r));
}

TEST_CASE("a sign-in address another site sent the browser to opens no session") {
  TestServer server;
  auto client = server.Client();
  for (const char* site : {"cross-site", "same-site"}) {
    auto r = client->Get(("/?token=" + kOperatorSecret).c_str(), {{"Sec-Fetch-Site", site}});
    REQUIRE(r);
    CHECK(r->status == 303);
    CHECK(r->get_header_value("Location") == "/");
    CHECK(r->get_header_value("Set-Cookie").empty());
  }
  // Typed, pasted or opened from a terminal: it signs in.
  auto typed = client->Get(("/?token=" + kOperatorSecret).c_str(), {{"Sec-Fetch-Site", "none"}});
  REQUIRE(typed);
  CHECK(typed->status == 303);
  CHECK(typed->get_header_value("Set-Cookie").starts_with("kiln_session="));
}

TEST_CASE("an unknown sign-in address gets the page with 401 and no cookie") {
  TestServer server;
  auto client = server.Client();
  auto wrong = client->Get("/?token=%3Cscript%3Ealert(1)%3C/script%3E");
  REQUIRE(wrong);
  CHECK(wrong->status == 401);
  CHECK(wrong->get_header_value("Set-Cookie").empty());
  CHECK(wrong->body == std::string(FindAsset("index.html")->body));
  CHECK(wrong->body.find("alert(1)") == std::string::npos);
  auto bare = client->Get("/api/v1/session");
  CHECK(bare->status == 401);
  auto stale = client->Get("/api/v1/session", {{"Cookie", "kiln_session=old"}});
  CHECK(stale->status == 401);
  CHECK(Body(stale)["error"]["message"] ==
        "the session has ended (signed out, its token removed, or the daemon restarted): sign in "
        "again with /?token=<token>");
}

TEST_CASE("the sign-in form takes a token as JSON, sign-out ends the session at once") {
  TestServer server;
  auto client = server.Client();
  auto in =
      client->Post("/api/v1/session", R"({"token": ")" + kAdminSecret + "\"}", "application/json");
  REQUIRE(in);
  CHECK(in->status == 200);
  CHECK(Body(in) == json{{"name", "root"}, {"role", "admin"}});
  httplib::Headers cookie = {{"Cookie", CookieOf(in)}};
  CHECK(client->Get("/api/v1/session", cookie)->status == 200);

  auto bad = client->Post("/api/v1/session", R"({"token": "guess"})", "application/json");
  CHECK(bad->status == 401);
  CHECK(bad->get_header_value("Set-Cookie").empty());
  CHECK(client->Post("/api/v1/session", R"({})", "application/json")->status == 400);
  CHECK(Body(client->Post("/api/v1/session", R"({"token": 1})", "application/json")) ==
        ErrorBody("invalid_argument", "'token' must be a string: the token's text"));
  CHECK(Body(client->Post("/api/v1/session", R"({"token": ""})", "application/json")) ==
        ErrorBody("invalid_argument", "'token' is required: the token's text"));
  // A cross-site form cannot sign a browser in (or out): it cannot send JSON.
  auto form =
      client->Post("/api/v1/session", "token=" + kAdminSecret, "application/x-www-form-urlencoded");
  CHECK(form->status == 415);
  CHECK(client->Post("/api/v1/session/end", cookie, "", "text/plain")->status == 415);
  CHECK(client->Get("/api/v1/session", cookie)->status == 200);

  auto out = client->Post("/api/v1/session/end", cookie, "{}", "application/json");
  CHECK(out->status == 200);
  CHECK(out->get_header_value("Set-Cookie") ==
        "kiln_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
  // The session value no longer works, also where it was copied.
  CHECK(client->Get("/api/v1/session", cookie)->status == 401);
  CHECK(client->Get("/api/v1/pipelines", cookie)->status == 401);
}

TEST_CASE("the session table keeps at most its limit, dropping the oldest") {
  Token a{"a", Role::kViewer, Sha256Hex("a")}, b{"b", Role::kAdmin, Sha256Hex("b")};
  SessionTable sessions(2);
  std::string first = *sessions.Open(a), second = *sessions.Open(b);
  CHECK(sessions.Find(first) == a.sha256_hex);
  CHECK(sessions.Find(second) == b.sha256_hex);
  CHECK(first.size() == 64);
  std::string third = *sessions.Open(a);
  CHECK(sessions.size() == 2);
  CHECK(sessions.Find(first) == std::nullopt);
  CHECK(sessions.Find(third) == a.sha256_hex);
  sessions.Close(second);
  CHECK(sessions.Find(second) == std::nullopt);
  sessions.Close("not open");
  CHECK(sessions.size() == 1);
}

TEST_CASE(
    "a token allowed one session at a time keeps only its newest, and a token no longer in "
    "effect opens none") {
  Token a{"a", Role::kViewer, Sha256Hex("a")};
  SessionTable sessions(100, 1);
  const std::string first = *sessions.Open(a);
  const std::string second = *sessions.Open(a);
  CHECK(sessions.Find(first) == std::nullopt);
  CHECK(sessions.Find(second) == a.sha256_hex);
  sessions.Close(second);
  CHECK(sessions.size() == 0);
  const std::string third = *sessions.Open(a);
  CHECK(sessions.Find(third) == a.sha256_hex);
  Tokens current({a});
  CHECK(sessions.Open(a, &current).has_value());
  REQUIRE(current.Set({}).ok());
  CHECK(sessions.Open(a, &current) == std::nullopt);
  sessions.CloseUnless(current);
  CHECK(sessions.size() == 0);
}

TEST_CASE("one token signing in again and again ends its own oldest sessions, not others'") {
  Token a{"a", Role::kViewer, Sha256Hex("a")}, b{"b", Role::kAdmin, Sha256Hex("b")};
  SessionTable sessions(100, 3);
  const std::string admin = *sessions.Open(b);
  std::vector<std::string> viewer;
  for (int i = 0; i < 50; ++i) viewer.push_back(*sessions.Open(a));
  CHECK(sessions.size() == 4);
  CHECK(sessions.Find(admin) == b.sha256_hex);
  CHECK(sessions.Find(viewer[46]) == std::nullopt);
  for (int i = 47; i < 50; ++i) CHECK(sessions.Find(viewer[i]) == a.sha256_hex);
  sessions.Close(viewer[49]);
  CHECK(sessions.Find(viewer[47]) == a.sha256_hex);
  CHECK(sessions.size() == 3);
}

TEST_CASE("API responses forbid framing and caching, pages allow only their own files") {
  TestServer server;
  auto client = server.Client();
  auto api = client->Get("/api/v1/pipelines", AsViewer());
  CHECK(api->get_header_value("Content-Security-Policy") ==
        "default-src 'none'; frame-ancestors 'none'");
  CHECK(api->get_header_value("Cache-Control") == "no-store");
  CHECK(api->get_header_value("X-Frame-Options") == "DENY");
  auto file = client->Get("/ui/app.css");
  CHECK(file->get_header_value("Content-Security-Policy") == kPagePolicy);
}
