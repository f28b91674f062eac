#include <future>

#include "tests/web/harness.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

namespace {

const std::string kLog = "/api/v1/runs/12/tasks/train/attempts/1/log";

}  // namespace

TEST_CASE("attempts are listed first to last") {
  TestServer server;
  scheduler::AttemptRecord first;
  first.run = RunId{12};
  first.task_id = "train";
  first.attempt = 1;
  first.state = "failed";
  first.log_path = "/var/lib/kiln/logs/12/train.1.log";
  first.lease_owner = "host:123";
  first.started_at = At(kT0);
  first.ended_at = At(kT0 + 1500);
  first.exit_code = 3;
  first.cpu = std::chrono::milliseconds(120);
  first.max_rss_kb = 20480;
  first.reason = "exit code 3";
  scheduler::AttemptRecord second;
  second.attempt = 2;
  second.state = "running";
  second.lease_owner = "host:123";
  second.started_at = At(kT0 + 11500);
  server.service.attempts = {first, second};
  auto client = server.Client();
  auto r = client->Get("/api/v1/runs/12/tasks/train/attempts", AsViewer());
  CHECK(Body(r) == json{{"attempts",
                         {{{"attempt", 1},
                           {"state", "failed"},
                           {"started_at", "2026-11-29T01:51:15.000Z"},
                           {"ended_at", "2026-11-29T01:51:16.500Z"},
                           {"exit_code", 3},
                           {"signal", nullptr},
                           {"timed_out", false},
                           {"cpu_ms", 120},
                           {"max_rss_kb", 20480},
                           {"reason", "exit code 3"},
                           {"lease_owner", "host:123"},
                           {"worker", nullptr},
                           {"results", nullptr}},
                          {{"attempt", 2},
                           {"state", "running"},
                           {"started_at", "2026-11-29T01:51:26.500Z"},
                           {"ended_at", nullptr},
                           {"exit_code", nullptr},
                           {"signal", nullptr},
                           {"timed_out", false},
                           {"cpu_ms", nullptr},
                           {"max_rss_kb", nullptr},
                           {"reason", ""},
                           {"lease_owner", "host:123"},
                           {"worker", nullptr},
                           {"results", nullptr}}}}});
  CHECK(r->body.find("/var/lib/kiln") == std::string::npos);  // no server paths
  CHECK(server.service.Calls() == std::vector<std::string>{"ListAttempts 12 train"});
}

TEST_CASE("a log is read as a byte range") {
  TestServer server;
  server.service.SetLog(12, "train", 1, "hello world", true);
  auto client = server.Client();
  auto part = client->Get(kLog + "?offset=6&limit=3", AsViewer());
  REQUIRE(part);
  CHECK(part->status == 200);
  CHECK(part->body == "wor");
  CHECK(part->get_header_value("Content-Type") == "text/plain; charset=utf-8");
  CHECK(part->get_header_value("X-Log-Offset") == "6");
  CHECK(part->get_header_value("X-Log-Size") == "11");
  CHECK(part->get_header_value("X-Log-Finished") == "true");
  auto all = client->Get(kLog, AsViewer());
  CHECK(all->body == "hello world");
  CHECK(all->get_header_value("X-Log-Offset") == "0");
  auto capped = client->Get(kLog + "?limit=99999999999999999999", AsViewer());
  CHECK(capped->body == "hello world");
  auto end = client->Get(kLog + "?offset=11", AsViewer());
  CHECK(end->body.empty());
  CHECK(server.service.Calls() ==
        std::vector<std::string>{"ReadLog 12 train 1 6 3", "ReadLog 12 train 1 0 1048576",
                                 "ReadLog 12 train 1 0 1048576", "ReadLog 12 train 1 11 1048576"});
  server.service.SetLog(12, "train", 1, "growing", false);
  CHECK(client->Get(kLog, AsViewer())->get_header_value("X-Log-Finished") == "false");
}

TEST_CASE("log requests are checked") {
  TestServer server;
  server.service.SetLog(12, "train", 1, "x", true);
  auto client = server.Client();
  struct Case {
    std::string target, message;
  };
  for (const auto& c : {
           Case{kLog + "?offset=-1",
                "query parameter 'offset': must be a byte offset (a whole "
                "number), not '-1'"},
           Case{kLog + "?offset=x",
                "query parameter 'offset': must be a byte offset (a whole "
                "number), not 'x'"},
           Case{kLog + "?limit=0",
                "query parameter 'limit': must be a number of bytes from 1 "
                "to 1048576, not '0'"},
           Case{kLog + "?follow=yes", "query parameter 'follow': must be true or false, not 'yes'"},
           Case{kLog + "?tail=1",
                "query parameter 'tail': unknown; accepted: offset, limit, follow"},
           Case{"/api/v1/runs/12/tasks/train/attempts/0/log",
                "attempt '0' must be a positive integer"},
           Case{"/api/v1/runs/12/tasks/train/attempts/4294967296/log",
                "attempt '4294967296' must be a positive integer"},
           Case{"/api/v1/runs/12/tasks/Train/attempts/1/log",
                "task id 'Train' must match ^[a-z0-9][a-z0-9_-]{0,63}$, or name an instance: "
                "train[3]"},
       }) {
    INFO(c.target);
    auto r = client->Get(c.target, AsViewer());
    CHECK(r->status == 400);
    CHECK(Body(r) == ErrorBody("invalid_argument", c.message));
  }
  auto missing = client->Get("/api/v1/runs/12/tasks/train/attempts/2/log", AsViewer());
  CHECK(missing->status == 404);
  CHECK(Body(missing) == ErrorBody("not_found", "task 'train' of run 12 has no attempt 2"));
  auto follow_missing =
      client->Get("/api/v1/runs/12/tasks/train/attempts/2/log?follow=true", AsViewer());
  CHECK(follow_missing->status == 404);
}

TEST_CASE("a followed log streams as it grows and ends when the attempt has ended") {
  TestServer server;
  server.service.SetLog(12, "train", 1, "abc", false);
  auto client = server.Client();
  httplib::Headers headers = AsViewer();
  headers.emplace("Accept-Encoding", "gzip, deflate");  // must not hold the stream back
  std::string received;
  bool appended = false;
  auto r = client->Get(
      kLog + "?follow=true", headers,
      [&](const httplib::Response& res) {
        CHECK(res.get_header_value("X-Log-Offset") == "0");
        CHECK(res.get_header_value("X-Log-Size") == "3");
        CHECK(res.get_header_value("X-Log-Finished") == "false");
        CHECK(res.get_header_value("Content-Encoding").empty());
        return true;
      },
      [&](const char* data, size_t size) {
        received.append(data, size);
        if (!appended && received == "abc") {
          appended = true;
          server.service.AppendLog(12, "train", 1, "def", false);
        } else if (received == "abcdef") {
          server.service.AppendLog(12, "train", 1, "\nend\n", true);
        }
        return true;
      });
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(received == "abcdef\nend\n");
}

TEST_CASE("a followed log starts at the offset and ends at once when complete") {
  TestServer server;
  server.service.SetLog(12, "train", 1, "0123456789", true);
  auto client = server.Client();
  auto r = client->Get(kLog + "?follow=true&offset=4", AsViewer());
  REQUIRE(r);
  CHECK(r->body == "456789");
  CHECK(r->get_header_value("X-Log-Offset") == "4");
  CHECK(r->get_header_value("X-Log-Finished") == "true");
}

TEST_CASE("a followed log ends when the service stops") {
  TestServer server;
  server.service.SetLog(12, "train", 1, "abc", false);
  auto client = server.Client();
  std::string received;
  auto r = client->Get(kLog + "?follow=true", AsViewer(), [&](const char* data, size_t size) {
    received.append(data, size);
    server.service.Stop();
    return true;
  });
  REQUIRE(r);
  CHECK(received == "abc");
}

TEST_CASE("streams are capped and never starve the rest of the API") {
  ServerOptions options = TestOptions();
  options.threads = 1;
  options.max_streams = 2;
  TestServer server(options);
  server.service.SetLog(12, "train", 1, "x", false);
  server.service.pipelines = {NamedPipeline("ml")};
  // Two followed logs, open until the log ends.
  std::promise<void> open[2];
  std::vector<std::thread> streams;
  for (int i = 0; i < 2; ++i) {
    streams.emplace_back([&, i] {
      auto client = server.Client();
      bool first = true;
      auto r = client->Get(kLog + "?follow=true", AsViewer(), [&](const char*, size_t) {
        if (first) open[i].set_value();
        first = false;
        return true;
      });
      CHECK(r);
    });
  }
  for (auto& p : open) p.get_future().wait();
  auto client = server.Client();
  auto third = client->Get(kLog + "?follow=true", AsViewer());
  CHECK(third->status == 503);
  CHECK(Body(third) ==
        ErrorBody("unavailable", "too many streams are open; close one or try again later"));
  CHECK(client->Get("/api/v1/events", AsViewer())->status == 503);
  CHECK(client->Get("/api/v1/pipelines", AsViewer())->status == 200);
  CHECK(client->Get(kLog, AsViewer())->status == 200);  // a plain range is no stream
  server.service.AppendLog(12, "train", 1, "y", true);
  for (auto& t : streams) t.join();

  // Slots come back: one connection follows a finished log more often than there are slots.
  auto again = server.Client();
  again->set_keep_alive(true);
  for (int i = 0; i < 4; ++i) {
    auto r = again->Get(kLog + "?follow=true", AsViewer());
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "xy");
  }
}
