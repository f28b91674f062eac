// Hostile and malformed requests: every one gets a JSON 4xx and the server keeps serving.
#include "tests/web/harness.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

namespace {

const std::string kTrigger = "/api/v1/pipelines/ml/runs";

std::string StatusLine(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

std::string ResponseBody(const std::string& response) {
  return response.substr(response.find("\r\n\r\n") + 4);
}

std::string Head(const std::string& request_line, const std::string& headers) {
  return request_line + "\r\nHost: 127.0.0.1\r\n" + headers + "\r\n";
}

}  // namespace

TEST_CASE("bodies that are not the JSON asked for get 400") {
  TestServer server;
  auto client = server.Client();
  struct Case {
    std::string body, code, message;
  };
  for (const auto& c : {
           Case{"{", "invalid_json",
                "body is not valid JSON: parse error at line 1, column 2: syntax error while "
                "parsing object key - unexpected end of input; expected string literal"},
           Case{std::string(33, '[') + std::string(33, ']'), "invalid_json",
                "body nests deeper than 32 levels"},
           Case{R"({"params": {"epochs": 1e400}})", "invalid_json",
                "body is not valid JSON: number overflow parsing '1e400'"},
           Case{R"({"params": {"name": "a\u0000b"}})", "invalid_json",
                "body has a string with a NUL character"},
           Case{R"({"note": "a", "note": "b"})", "invalid_json", "body repeats the key 'note'"},
           Case{"{\"note\": \"\xff\"}", "invalid_json",
                "body is not valid JSON: parse error at line 1, column 11: syntax error while "
                "parsing value - invalid string: ill-formed UTF-8 byte; last read: '\"\xff'"},
       }) {
    INFO(c.body);
    auto r = client->Post(kTrigger, AsOperator(), c.body, "application/json");
    REQUIRE(r);
    CHECK(r->status == 400);
    json body = json::parse(r->body, nullptr, true, false);
    CHECK(body["error"]["code"] == c.code);
    if (c.body.find('\xff') == std::string::npos) CHECK(body["error"]["message"] == c.message);
  }
  CHECK(server.service.Calls().empty());
  CHECK(client->Get("/healthz")->status == 200);
}

TEST_CASE("numbers reach the service as they were written") {
  TestServer server;
  server.service.runs[12] = SampleRun();
  auto client = server.Client();
  auto r = client->Post(kTrigger, AsOperator(),
                        R"({"params": {"epochs": 99999999999999999999, "lr": 1.50, "n": 1e3,
                            "k": -7, "big": 18446744073709551615}})",
                        "application/json");
  CHECK(r->status == 201);
  CHECK(server.service.Calls().front() ==
        "Trigger ml epochs=99999999999999999999 lr=1.50 n=1e3 k=-7 big=18446744073709551615 "
        "actor=ops");
}

TEST_CASE("a body as deep as allowed is read") {
  TestServer server;
  auto client = server.Client();
  std::string deep = R"({"params": {"a": )" + std::string(30, '[') + std::string(30, ']') + "}}";
  auto r = client->Post(kTrigger, AsOperator(), deep, "application/json");
  CHECK(r->status == 400);
  CHECK(Body(r) == ErrorBody("invalid_argument", "param 'a' must be a string, number or boolean"));
}

TEST_CASE("bodies must be sent as JSON") {
  TestServer server;
  auto client = server.Client();
  auto r = client->Post(kTrigger, AsOperator(), "params=1", "application/x-www-form-urlencoded");
  CHECK(r->status == 415);
  CHECK(Body(r) == ErrorBody("unsupported_media_type",
                             "send the body as JSON with Content-Type: application/json"));
  CHECK(client->Post(kTrigger, AsOperator(), "{}", "application/json; charset=utf-8")->status ==
        404);  // read: GetRun has no run 12 in this test
  CHECK(client->Post(kTrigger, AsOperator(), "{}", "Application/JSON")->status == 404);
}

TEST_CASE("unknown routes, wrong methods, bad ids and traversal get JSON errors") {
  TestServer server;
  server.service.runs[12] = SampleRun();
  auto client = server.Client();
  struct Case {
    std::string method, target;
    int status;
    std::string code, message, allow = "";
  };
  for (const auto& c : {
           Case{"GET", "/api/v1/nothing", 404, "not_found", "no such route: GET '/api/v1/nothing'"},
           Case{"GET", "/api/v1/pipelines/", 404, "not_found",
                "no such route: GET '/api/v1/pipelines/'"},
           Case{"GET", "/api/v2/runs", 404, "not_found", "no such route: GET '/api/v2/runs'"},
           Case{"GET", kTrigger, 405, "method_not_allowed",
                "'/api/v1/pipelines/ml/runs' does not answer 'GET'; it answers POST", "POST"},
           Case{"POST", "/api/v1/runs/12", 405, "method_not_allowed",
                "'/api/v1/runs/12' does not answer 'POST'; it answers GET, HEAD", "GET, HEAD"},
           Case{"DELETE", "/api/v1/runs/12", 405, "method_not_allowed",
                "'/api/v1/runs/12' does not answer 'DELETE'; it answers GET, HEAD", "GET, HEAD"},
           Case{"PUT", "/api/v1/runs/12/cancel", 405, "method_not_allowed",
                "'/api/v1/runs/12/cancel' does not answer 'PUT'; it answers POST", "POST"},
           Case{"GET", "/api/v1/pipelines/ML", 400, "invalid_argument",
                "pipeline name 'ML' must match ^[a-z0-9][a-z0-9_.-]{0,63}$"},
           Case{"GET", "/api/v1/pipelines/..", 400, "invalid_argument",
                "pipeline name '..' must match ^[a-z0-9][a-z0-9_.-]{0,63}$"},
           Case{"GET", "/api/v1/pipelines/a%00b", 400, "invalid_argument",
                "pipeline name 'a?b' must match ^[a-z0-9][a-z0-9_.-]{0,63}$"},
           // An encoded '/' stays inside its segment: the name is refused as a name.
           Case{"GET", "/api/v1/pipelines/..%2F..%2Fetc%2Fpasswd", 400, "invalid_argument",
                "pipeline name '../../etc/passwd' must match ^[a-z0-9][a-z0-9_.-]{0,63}$"},
           Case{"GET", "/api/v1/runs/12/tasks/..%2F..%2Fetc/attempts/1/log", 400,
                "invalid_argument",
                "task id '../../etc' must match ^[a-z0-9][a-z0-9_-]{0,63}$, or name an instance: "
                "train[3]"},
           Case{
               "GET", "/api/v1/runs/12/tasks/%2e%2e/attempts/1/log", 400, "invalid_argument",
               "task id '..' must match ^[a-z0-9][a-z0-9_-]{0,63}$, or name an instance: train[3]"},
           Case{"GET", "/api/v1/runs/0", 400, "invalid_argument",
                "run id '0' must be a positive integer"},
           Case{"GET", "/api/v1/runs/-3", 400, "invalid_argument",
                "run id '-3' must be a positive integer"},
           Case{"GET", "/api/v1/runs/1e3", 400, "invalid_argument",
                "run id '1e3' must be a positive integer"},
           Case{"GET", "/api/v1/runs/99999999999999999999", 400, "invalid_argument",
                "run id '99999999999999999999' must be a positive integer"},
           Case{"GET", "/api/v1/runs/12?verbose=1", 400, "invalid_argument",
                "query parameter 'verbose': unknown; this route takes no query parameters"},
       }) {
    INFO(c.method << " " << c.target);
    httplib::Request req;
    req.method = c.method;
    req.path = c.target;
    req.headers = AsViewer();
    auto r = client->send(req);
    REQUIRE(r);
    CHECK(r->status == c.status);
    CHECK(r->get_header_value("Content-Type") == "application/json");
    CHECK(Body(r) == ErrorBody(c.code, c.message));
    CHECK(r->get_header_value("Allow") == c.allow);
  }
  CHECK(client->Get("/healthz")->status == 200);
  CHECK(client->Get("/api/v1/runs/12", AsViewer())->status == 200);
}

TEST_CASE("a body over 1 MiB is refused before it is sent") {
  ServerOptions options = TestOptions();
  options.io_timeout = std::chrono::seconds(120);  // a server that waited for the body would hang
  TestServer server(options);
  RawConnection conn(server.port());
  conn.Send(Head("POST /api/v1/pipelines/ml/runs HTTP/1.1",
                 "Authorization: Bearer " + kOperatorSecret +
                     "\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n"));
  std::string response = conn.ReadResponse();  // the body was never sent
  CHECK(StatusLine(response) == "HTTP/1.1 413 Payload Too Large");
  CHECK(json::parse(ResponseBody(response)) == ErrorBody("too_large", "request body over 1 MiB"));
  CHECK(response.find("Connection: close\r\n") != std::string::npos);
  CHECK(conn.ClosedByServer());
  CHECK(server.service.Calls().empty());
  CHECK(server.Client()->Get("/healthz")->status == 200);
}

TEST_CASE("a body over 1 MiB announced with Expect: 100-continue gets 413, not 100") {
  TestServer server;
  RawConnection conn(server.port());
  conn.Send(Head("POST /api/v1/pipelines/ml/runs HTTP/1.1",
                 "Authorization: Bearer " + kOperatorSecret +
                     "\r\nContent-Type: application/json\r\nContent-Length: "
                     "2097152\r\nExpect: 100-continue\r\n"));
  std::string response = conn.ReadResponse();
  CHECK(StatusLine(response) == "HTTP/1.1 413 Payload Too Large");
  CHECK(conn.ClosedByServer());
  // A length past what 64 bits hold cannot be read at all.
  RawConnection huge(server.port());
  huge.Send(Head("POST /api/v1/pipelines/ml/runs HTTP/1.1",
                 "Authorization: Bearer " + kOperatorSecret +
                     "\r\nContent-Type: application/json\r\nContent-Length: "
                     "99999999999999999999999\r\nExpect: 100-continue\r\n"));
  response = huge.ReadResponse();
  CHECK(StatusLine(response) == "HTTP/1.1 400 Bad Request");
  CHECK(json::parse(ResponseBody(response)) ==
        ErrorBody("invalid_argument", "Content-Length must be one decimal number"));
  CHECK(huge.ClosedByServer());
  CHECK(server.service.Calls().empty());
}

TEST_CASE("a request with Content-Type twice is refused before anything reads it") {
  TestServer server;
  RawConnection conn(server.port());
  conn.Send(Head("POST /api/v1/pipelines/ml/runs HTTP/1.1",
                 "Authorization: Bearer " + kOperatorSecret +
                     "\r\nContent-Type: application/json\r\nContent-Type: text/plain\r\n"
                     "Content-Length: 2\r\n") +
            "{}");
  std::string response = conn.ReadResponse();
  CHECK(StatusLine(response) == "HTTP/1.1 400 Bad Request");
  CHECK(json::parse(ResponseBody(response)) ==
        ErrorBody("invalid_argument", "send Content-Type once"));
  CHECK(server.service.Calls().empty());
}

TEST_CASE("bodies of exactly 1 MiB are read") {
  TestServer server;
  auto client = server.Client();
  std::string prefix = R"({"params": {"p": ")";
  std::string body = prefix + std::string((1 << 20) - prefix.size() - 3, 'n') + "\"}}";
  REQUIRE(body.size() == 1 << 20);
  CHECK(client->Post(kTrigger, AsOperator(), body, "application/json")->status == 404);
  CHECK(server.service.Calls().size() == 2);  // Trigger, then GetRun (no run 12 here)
  // The client sends the body at once; the server answers 413 and closes without reading it, so
  // the client may see the connection reset before it reads the answer.
  auto over = client->Post(kTrigger, AsOperator(), body + " ", "application/json");
  if (over) CHECK(over->status == 413);
  CHECK(server.service.Calls().size() == 2);
}

TEST_CASE("refused requests with a body are refused before the body is read") {
  TestServer server;
  RawConnection conn(server.port());
  conn.Send(Head("POST /api/v1/pipelines/ml/runs HTTP/1.1",
                 "Content-Type: application/json\r\nContent-Length: 1000\r\n"));
  std::string response = conn.ReadResponse();
  CHECK(StatusLine(response) == "HTTP/1.1 401 Unauthorized");
  CHECK(response.find("WWW-Authenticate: Bearer\r\n") != std::string::npos);
  CHECK(conn.ClosedByServer());
}

TEST_CASE("request framing that cannot be bounded is refused") {
  TestServer server;
  struct Case {
    std::string request, status, code;
  };
  std::string auth = "Authorization: Bearer " + kOperatorSecret + "\r\n";
  for (const auto& c : {
           Case{Head("POST /api/v1/pipelines/ml/runs HTTP/1.1",
                     auth + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"),
                "HTTP/1.1 411 Length Required", "length_required"},
           Case{Head("POST /api/v1/pipelines/ml/runs HTTP/1.1",
                     auth + "Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
                            "Content-Length: 10\r\n"),
                "HTTP/1.1 415 Unsupported Media Type", "unsupported_media_type"},
           Case{Head("POST /api/v1/pipelines/ml/runs HTTP/1.1", auth + "Content-Length: ten\r\n"),
                "HTTP/1.1 400 Bad Request", "invalid_argument"},
           Case{Head("POST /api/v1/pipelines/ml/runs HTTP/1.1",
                     auth + "Content-Length: 2\r\nContent-Length: 3\r\n"),
                "HTTP/1.1 400 Bad Request", "invalid_argument"},
           Case{Head("GET /api/v1/pipelines HTTP/1.1", auth + "Content-Length: 5\r\n"),
                "HTTP/1.1 400 Bad Request", "invalid_argument"},
           Case{Head("PUT /api/v1/runs/12 HTTP/1.1", auth + "Content-Length: 5\r\n"),
                "HTTP/1.1 405 Method Not Allowed", "method_not_allowed"},
       }) {
    INFO(c.request);
    RawConnection conn(server.port());
    conn.Send(c.request);
    std::string response = conn.ReadResponse();
    CHECK(StatusLine(response) == c.status);
    CHECK(json::parse(ResponseBody(response))["error"]["code"] == c.code);
    CHECK(conn.ClosedByServer());
  }
  CHECK(server.service.Calls().empty());
}

TEST_CASE("a POST without Content-Length has no body") {
  TestServer server;
  server.service.pipelines = {NamedPipeline("ml")};
  RawConnection conn(server.port());
  conn.Send(Head("POST /api/v1/pipelines/ml/pause HTTP/1.1",
                 "Authorization: Bearer " + kOperatorSecret + "\r\n"));
  std::string response = conn.ReadResponse();
  CHECK(StatusLine(response) == "HTTP/1.1 200 OK");
  CHECK(server.service.Calls().front() == "SetPaused ml true ops");
  // The connection stays usable.
  conn.Send(Head("GET /healthz HTTP/1.1", ""));
  CHECK(StatusLine(conn.ReadResponse()) == "HTTP/1.1 200 OK");
}

TEST_CASE("garbage request lines get JSON errors") {
  TestServer server;
  for (std::string request :
       {std::string("G@T /healthz HTTP/1.1\r\n\r\n"), std::string("GET /healthz HTTP/9.9\r\n\r\n"),
        "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n"}) {
    RawConnection conn(server.port());
    conn.Send(request);
    std::string response = conn.ReadResponse();
    CHECK(StatusLine(response).starts_with("HTTP/1.1 4"));
    CHECK(json::parse(ResponseBody(response))["error"]["code"] == "invalid_argument");
  }
  CHECK(server.Client()->Get("/healthz")->status == 200);
}
