#include <functional>
#include <future>

#include "tests/web/harness.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

namespace {

scheduler::EventRecord Event(int64_t id, int64_t run = 12) {
  scheduler::EventRecord e;
  e.id = id;
  e.at = At(kT0 + id);
  e.run = RunId{run};
  e.pipeline = "ml";
  e.task_id = "train";
  e.attempt = 1;
  e.kind = "task_state";
  e.from_state = "queued";
  e.to_state = "running";
  e.actor = "host:77";
  e.detail = R"({"reason":""})";
  return e;
}

// Reads the event stream at `target` until `on_message` returns false or the stream ends.
httplib::Result ReadEvents(TestServer& server, const std::string& target,
                           const httplib::Headers& headers,
                           const std::function<bool(const SseMessage&)>& on_message) {
  auto client = server.Client();
  SseReader reader;
  return client->Get(target, headers, [&](const char* data, size_t size) {
    for (const auto& m : reader.Add(data, size)) {
      if (!on_message(m)) return false;
    }
    return true;
  });
}

}  // namespace

TEST_CASE("events arrive in order: those after the given id, then new ones") {
  TestServer server;
  for (int id = 1; id <= 3; ++id) server.service.AddEvent(Event(id));
  std::vector<SseMessage> got;
  auto r = ReadEvents(server, "/api/v1/events?after=0", AsViewer(), [&](const SseMessage& m) {
    if (m.comment == "connected") return true;
    got.push_back(m);
    if (m.id == "3") {
      server.service.AddEvent(Event(4));
      server.service.AddEvent(Event(5));
    }
    return got.size() < 5;
  });
  REQUIRE(got.size() == 5);
  for (int i = 0; i < 5; ++i) CHECK(got[i].id == std::to_string(i + 1));
  CHECK(got[0].event == "task_state");
  CHECK(json::parse(got[0].data) == json{{"id", 1},
                                         {"at", "2026-11-29T01:51:15.001Z"},
                                         {"kind", "task_state"},
                                         {"pipeline", "ml"},
                                         {"run", 12},
                                         {"task", "train"},
                                         {"attempt", 1},
                                         {"from", "queued"},
                                         {"to", "running"},
                                         {"actor", "host:77"},
                                         {"detail", {{"reason", ""}}}});
}

TEST_CASE("a client resumes with Last-Event-ID without loss or repeat") {
  TestServer server;
  for (int id = 1; id <= 5; ++id) server.service.AddEvent(Event(id));
  std::vector<std::string> ids;
  httplib::Headers headers = AsViewer();
  headers.emplace("Last-Event-ID", "3");
  // The header wins over ?after=.
  ReadEvents(server, "/api/v1/events?after=1", headers, [&](const SseMessage& m) {
    if (m.comment == "connected") return true;
    ids.push_back(m.id);
    if (m.id == "5") server.service.AddEvent(Event(6));
    return m.id != "6";
  });
  CHECK(ids == std::vector<std::string>{"4", "5", "6"});
}

TEST_CASE("without a starting point the stream has only new events") {
  TestServer server;
  server.service.AddEvent(Event(5));
  server.service.AddEvent(Event(1000000));
  server.service.AddEvent(Event(1000001));
  std::vector<std::string> ids;
  ReadEvents(server, "/api/v1/events", AsViewer(), [&](const SseMessage& m) {
    if (m.comment == "connected") {
      server.service.AddEvent(Event(1000002));
      return true;
    }
    ids.push_back(m.id);
    return false;
  });
  CHECK(ids == std::vector<std::string>{"1000002"});
}

TEST_CASE("events are filtered by run and pipeline") {
  TestServer server;
  server.service.AddEvent(Event(1, 12));
  server.service.AddEvent(Event(2, 13));
  server.service.AddEvent(Event(3, 12));
  std::vector<std::string> ids;
  ReadEvents(server, "/api/v1/events?run=12&after=0", AsViewer(), [&](const SseMessage& m) {
    if (m.comment == "connected") return true;
    ids.push_back(m.id);
    if (m.id == "3") {
      server.service.AddEvent(Event(4, 13));
      server.service.AddEvent(Event(5, 13));
      server.service.AddEvent(Event(6, 12));
    }
    return m.id != "6";
  });
  CHECK(ids == std::vector<std::string>{"1", "3", "6"});

  auto other = Event(7, 14);
  other.pipeline = "etl";
  server.service.AddEvent(other);
  ids.clear();
  ReadEvents(server, "/api/v1/events?pipeline=etl&after=0", AsViewer(), [&](const SseMessage& m) {
    if (m.comment == "connected") return true;
    ids.push_back(m.id);
    return false;
  });
  CHECK(ids == std::vector<std::string>{"7"});
}

TEST_CASE("the stream ends when the service stops") {
  TestServer server;
  std::vector<std::string> comments;
  auto r = ReadEvents(server, "/api/v1/events", AsViewer(), [&](const SseMessage& m) {
    comments.push_back(m.comment);
    server.service.Stop();
    return true;
  });
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "text/event-stream");
  CHECK(comments == std::vector<std::string>{"connected"});
}

TEST_CASE("stopping the server ends its open streams") {
  TestServer server;
  server.service.SetLog(12, "train", 1, "abc", false);
  std::promise<void> connected;
  std::thread events([&] {
    ReadEvents(server, "/api/v1/events", AsViewer(), [&](const SseMessage& m) {
      if (m.comment == "connected") connected.set_value();
      return true;
    });
  });
  connected.get_future().wait();
  auto client = server.Client();
  std::string log;
  // The streams are cut off (httplib ends a response without its last chunk when it stops);
  // what matters is that they end and the server stops.
  client->Get("/api/v1/runs/12/tasks/train/attempts/1/log?follow=true", AsViewer(),
              [&](const char* data, size_t size) {
                log.append(data, size);
                server.StopServer();
                return true;
              });
  events.join();
  CHECK(log == "abc");
}

TEST_CASE("a silent stream gets keep-alive comments") {
  ServerOptions options = TestOptions();
  options.stream_keep_alive = std::chrono::milliseconds(20);
  TestServer server(options);
  std::vector<std::string> comments;
  ReadEvents(server, "/api/v1/events", AsViewer(), [&](const SseMessage& m) {
    comments.push_back(m.comment);
    return comments.size() < 3;
  });
  CHECK(comments == std::vector<std::string>{"connected", "keep-alive", "keep-alive"});
}

TEST_CASE("event stream parameters are checked") {
  TestServer server;
  auto client = server.Client();
  struct Case {
    std::string target;
    httplib::Headers headers;
    std::string message;
  };
  for (const auto& c : {
           Case{"/api/v1/events",
                {{"Last-Event-ID", "abc"}},
                "header Last-Event-ID must be an event id, not 'abc'"},
           Case{"/api/v1/events?after=-1",
                {},
                "query parameter 'after': must be an event id, not '-1'"},
           Case{"/api/v1/events?run=0",
                {},
                "query parameter 'run': must be a run id (a positive integer), not '0'"},
           Case{"/api/v1/events?pipeline=A",
                {},
                "query parameter 'pipeline': pipeline name 'A' must match "
                "^[a-z0-9][a-z0-9_.-]{0,63}$"},
           Case{"/api/v1/events?task=x",
                {},
                "query parameter 'task': unknown; accepted: pipeline, run, after"},
       }) {
    INFO(c.target);
    httplib::Headers headers = AsViewer();
    headers.insert(c.headers.begin(), c.headers.end());
    auto r = client->Get(c.target, headers);
    CHECK(r->status == 400);
    CHECK(Body(r) == ErrorBody("invalid_argument", c.message));
  }
}

TEST_CASE("a stream ends once its token is removed, and others go on") {
  TestServer server;
  server.service.SetLog(12, "train", 1, "abc", false);
  std::vector<std::string> comments;
  auto r = ReadEvents(server, "/api/v1/events", AsViewer(), [&](const SseMessage& m) {
    comments.push_back(m.comment);
    if (m.comment == "connected") {
      // alice's token goes; ops keeps hers.
      REQUIRE(server
                  .SetTokens({{"ops", Role::kOperator, Sha256Hex(kOperatorSecret)},
                              {"root", Role::kAdmin, Sha256Hex(kAdminSecret)}})
                  .ok());
    }
    return true;
  });
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(comments == std::vector<std::string>{"connected"});
  // A followed log of a token still in effect is read as before.
  auto client = server.Client();
  std::string log;
  auto followed = client->Get(
      "/api/v1/runs/12/tasks/train/attempts/1/log?follow=true", AsOperator(),
      [&](const char* data, size_t size) {
        log.append(data, size);
        // Now hers goes too: the follow ends instead of waiting for
        // more (for minutes: past the client's 30 s read timeout).
        REQUIRE(server.SetTokens({{"root", Role::kAdmin, Sha256Hex(kAdminSecret)}}).ok());
        return true;
      });
  REQUIRE(followed);
  CHECK(followed->status == 200);
  CHECK(log == "abc");
}
