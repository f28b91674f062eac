#include "web/auth.h"

#include "tests/web/harness.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

// Signs in with `secret` through /?token= and returns the session cookie the server set.
std::string SessionCookie(httplib::Client& client, const std::string& secret) {
  auto r = client.Get(("/?token=" + secret).c_str());
  REQUIRE(r);
  std::string set = r->get_header_value("Set-Cookie");
  REQUIRE(set.starts_with("kiln_session="));
  return set.substr(0, set.find(';'));
}

TEST_CASE("roles parse and print") {
  for (Role r : {Role::kViewer, Role::kOperator, Role::kAdmin}) CHECK(ParseRole(Name(r)) == r);
  CHECK(Name(Role::kOperator) == "operator");
  CHECK_FALSE(ParseRole("Admin"));
  CHECK_FALSE(ParseRole("root"));
  CHECK_FALSE(ParseRole(""));
}

TEST_CASE("token declarations are checked") {
  std::string hash = Sha256Hex("x");
  CHECK(CheckTokens({{"ci", Role::kOperator, hash}}).ok());
  CHECK(CheckTokens({{"ci", Role::kOperator, "abc"}}).message() ==
        "token 'ci': sha256 must be 64 hex digits (the SHA-256 of the token)");
  CHECK(CheckTokens({{"ci", Role::kOperator, std::string(64, 'g')}}).message() ==
        "token 'ci': sha256 must be 64 hex digits (the SHA-256 of the token)");
  CHECK(CheckTokens({{"", Role::kViewer, hash}}).message() ==
        "token #1: name must be 1-64 printable characters without spaces");
  CHECK(CheckTokens({{"a b", Role::kViewer, hash}}).message() ==
        "token 'a b': name must be 1-64 printable characters without spaces");
  CHECK(CheckTokens({{"ci", Role::kViewer, hash}, {"ci", Role::kAdmin, hash}}).message() ==
        "token 'ci': name is used twice");
}

TEST_CASE("tokens are found by the hash of their secret") {
  std::string upper = Sha256Hex("s2");
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  TokenTable table({{"a", Role::kViewer, Sha256Hex("s1")}, {"b", Role::kAdmin, upper}});
  REQUIRE(table.Find("s1"));
  CHECK(table.Find("s1")->name == "a");
  REQUIRE(table.Find("s2"));
  CHECK(table.Find("s2")->role == Role::kAdmin);
  CHECK_FALSE(table.Find("s3"));
  CHECK_FALSE(table.Find(""));
  CHECK_FALSE(table.Find(Sha256Hex("s1")));  // the hash itself is not a secret
}

TEST_CASE("bearer secrets and cookies are read strictly") {
  CHECK(BearerSecret("Bearer abc") == "abc");
  CHECK(BearerSecret("bearer abc ") == "abc");
  CHECK(BearerSecret("BEARER  abc") == "abc");
  CHECK_FALSE(BearerSecret("Basic abc"));
  CHECK_FALSE(BearerSecret("Bearer"));
  CHECK_FALSE(BearerSecret("Bearer "));
  CHECK_FALSE(BearerSecret("Bearer a b"));
  CHECK_FALSE(BearerSecret("abc"));
  CHECK(CookieValue("a=1; kiln_token=xyz; b=2", "kiln_token") == "xyz");
  CHECK(CookieValue("kiln_token=\"xyz\"", "kiln_token") == "xyz");
  CHECK(CookieValue("xkiln_token=1;kiln_token=2", "kiln_token") == "2");
  CHECK_FALSE(CookieValue("a=1; b=2", "kiln_token"));
  CHECK_FALSE(CookieValue("", "kiln_token"));
  CHECK(IsCookieSafe("kiln_4Jx-._~"));
  CHECK_FALSE(IsCookieSafe(""));
  CHECK_FALSE(IsCookieSafe("a;b"));
  CHECK_FALSE(IsCookieSafe("a b"));
  CHECK_FALSE(IsCookieSafe("a\r\nSet-Cookie: x=1"));
  CHECK_FALSE(IsCookieSafe(std::string(4097, 'a')));
}

namespace {

// The role docs/api.md gives each route; nullopt: no token needed.
// The routes served without a token: the page, its files, health, signing in and out.
bool Open(const std::string& method, const std::string& path) {
  return path == "/" || path == "/healthz" || path == "/ui/{file}" ||
         (method == "POST" && path.starts_with("/api/v1/session"));
}

std::optional<Role> DocumentedRole(const std::string& method, const std::string& path) {
  if (Open(method, path)) return std::nullopt;
  if (method == "GET") return Role::kViewer;
  if (path.ends_with("/mark")) return Role::kAdmin;
  return Role::kOperator;
}

std::string SamplePath(std::string path) {
  for (auto [from, to] : {std::pair{"{name}", "ml"}, std::pair{"{id}", "12"},
                          std::pair{"{task}", "train"}, std::pair{"{n}", "1"}}) {
    if (auto at = path.find(from); at != std::string::npos) path.replace(at, strlen(from), to);
  }
  return path;
}

}  // namespace

TEST_CASE("every route enforces its role: no token, a wrong one, each role") {
  TestServer server;
  server.service.runs[12] = SampleRun();
  server.service.pipelines = {NamedPipeline("ml")};
  server.service.SetLog(12, "train", 1, "log", true);
  server.service.Stop();  // event streams end at once
  auto client = server.Client();
  struct Credential {
    std::string name;
    std::optional<std::string> secret;
    std::optional<Role> role;
  };
  std::vector<Credential> credentials = {{"none", std::nullopt, std::nullopt},
                                         {"wrong", "not-a-token", std::nullopt},
                                         {"viewer", kViewerSecret, Role::kViewer},
                                         {"operator", kOperatorSecret, Role::kOperator},
                                         {"admin", kAdminSecret, Role::kAdmin}};
  int checked = 0, skipped = 0;
  for (const auto& [method, path] : Server::Routes()) {
    // The page, its files and signing in and out: their own tests (tests/web/page_test.cc).
    if (path == "/" || path == "/ui/{file}" || path.starts_with("/api/v1/session/") ||
        (method == "POST" && path == "/api/v1/session")) {
      ++skipped;
      continue;
    }
    auto need = DocumentedRole(method, path);
    for (const auto& cred : credentials) {
      INFO(method << " " << path << " as " << cred.name);
      httplib::Headers headers;
      if (cred.secret) headers = Bearer(*cred.secret);
      std::string target = SamplePath(path);
      auto r = method == "GET" ? client->Get(target.c_str(), headers)
                               : client->Post(target.c_str(), headers, "", "application/json");
      REQUIRE(r);
      if (!need) {
        CHECK(r->status == 200);
      } else if (!cred.role) {
        CHECK(r->status == 401);
        CHECK(r->get_header_value("WWW-Authenticate") == "Bearer");
        CHECK(Body(r)["error"]["code"] == "unauthenticated");
      } else if (*cred.role < *need) {
        CHECK(r->status == 403);
        CHECK(Body(r)["error"]["code"] == "forbidden");
      } else {
        CHECK(r->status != 401);
        CHECK(r->status != 403);
        CHECK(r->status < 500);
      }
      ++checked;
    }
  }
  CHECK(skipped == 4);
  CHECK(checked == 5 * (static_cast<int>(Server::Routes().size()) - skipped));
}

TEST_CASE("refusals say why") {
  TestServer server;
  auto client = server.Client();
  auto none = client->Get("/api/v1/pipelines");
  CHECK(none->status == 401);
  CHECK(Body(none) ==
        ErrorBody("unauthenticated", "sign in: send the header Authorization: Bearer <token>"));
  auto wrong = client->Get("/api/v1/pipelines", Bearer("nope"));
  CHECK(Body(wrong) ==
        ErrorBody("unauthenticated",
                  "the token is not known: check it, or ask an admin for a new one"));
  // Two credentials are refused, whichever comes first (not the first one taken).
  auto twice = client->Get("/api/v1/pipelines", {{"Authorization", "Bearer " + kViewerSecret},
                                                 {"Authorization", "Bearer " + kAdminSecret}});
  CHECK(twice->status == 401);
  CHECK(Body(twice) ==
        ErrorBody("unauthenticated", "the header Authorization is sent more than once; send one"));
  auto basic = client->Get("/api/v1/pipelines", {{"Authorization", "Basic " + kViewerSecret}});
  CHECK(basic->status == 401);
  auto low = client->Post("/api/v1/runs/12/cancel", AsViewer(), "", "application/json");
  CHECK(low->status == 403);
  CHECK(Body(low) ==
        ErrorBody("forbidden", "token 'alice' has the role viewer; this needs operator"));
  CHECK(server.service.Calls().empty());
}

TEST_CASE("a bad Authorization header is not rescued by a good cookie") {
  TestServer server;
  auto client = server.Client();
  std::string session = SessionCookie(*client, kViewerSecret);
  auto r =
      client->Get("/api/v1/pipelines", {{"Authorization", "Bearer nope"}, {"Cookie", session}});
  CHECK(r->status == 401);
}

TEST_CASE("without configured tokens only /healthz answers") {
  ServerOptions options = TestOptions();
  options.tokens.clear();
  TestServer server(options);
  auto client = server.Client();
  CHECK(client->Get("/healthz")->status == 200);
  CHECK(client->Get("/api/v1/pipelines", AsAdmin())->status == 401);
  CHECK(client->Get("/metrics")->status == 401);
}

TEST_CASE("bind refuses bad token declarations") {
  FakeService service;
  ServerOptions options = TestOptions();
  options.tokens.push_back({"bad", Role::kAdmin, "1234"});
  Server server(service, options);
  CHECK(server.Bind().message() ==
        "token 'bad': sha256 must be 64 hex digits (the SHA-256 of the token)");
}

TEST_CASE("changes signed in by cookie must be JSON requests") {
  TestServer server;
  server.service.pipelines = {NamedPipeline("ml")};
  auto client = server.Client();
  httplib::Headers cookie = {{"Cookie", SessionCookie(*client, kOperatorSecret)}};
  auto plain = client->Post("/api/v1/pipelines/ml/pause", cookie, "", "text/plain");
  CHECK(plain->status == 403);
  CHECK(Body(plain) == ErrorBody("forbidden",
                                 "requests signed in by cookie must send Content-Type: "
                                 "application/json to change anything (so that no other site can "
                                 "make a browser send them)"));
  auto form = client->Post("/api/v1/pipelines/ml/pause", cookie, "a=1",
                           "application/x-www-form-urlencoded");
  CHECK(form->status == 403);
  CHECK(server.service.Calls().empty());
  auto json_post = client->Post("/api/v1/pipelines/ml/pause", cookie, "{}", "application/json");
  CHECK(json_post->status == 200);
  CHECK(server.service.Calls() ==
        std::vector<std::string>{"SetPaused ml true ops", "GetPipeline ml"});
  // Bearer requests need no Content-Type without a body.
  CHECK(client->Post("/api/v1/pipelines/ml/unpause", AsOperator(), "", "text/plain")->status ==
        200);
}

TEST_CASE("a session cookie is valid only for the server that issued it") {
  TestServer first;
  auto client = first.Client();
  std::string session = SessionCookie(*client, kOperatorSecret);
  CHECK(client->Get("/api/v1/pipelines", {{"Cookie", session}})->status == 200);
  TestServer second;  // the same tokens, another key: as after a restart
  auto other = second.Client();
  CHECK(other->Get("/api/v1/pipelines", {{"Cookie", session}})->status == 401);
}
