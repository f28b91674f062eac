// A real web::Server on 127.0.0.1:<free port> over a FakeService, clients for it, and sample
// records. Header-only; every web test includes it.
#pragma once

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "common/sha256.h"
#include "tests/web/fake_service.h"
#include "web/server.h"

namespace kiln::web::testing {

using nlohmann::json;

inline const std::string kViewerSecret = "viewer-secret";
inline const std::string kOperatorSecret = "operator-secret";
inline const std::string kAdminSecret = "admin-secret";

inline ServerOptions TestOptions() {
  ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.tokens = {{"alice", Role::kViewer, Sha256Hex(kViewerSecret)},
              {"ops", Role::kOperator, Sha256Hex(kOperatorSecret)},
              {"root", Role::kAdmin, Sha256Hex(kAdminSecret)}};
  o.threads = 4;
  o.max_streams = 4;
  return o;
}

inline httplib::Headers Bearer(const std::string& secret) {
  return {{"Authorization", "Bearer " + secret}};
}
inline httplib::Headers AsViewer() { return Bearer(kViewerSecret); }
inline httplib::Headers AsOperator() { return Bearer(kOperatorSecret); }
inline httplib::Headers AsAdmin() { return Bearer(kAdminSecret); }

// The server runs on its own thread from construction to destruction.
class TestServer {
 public:
  explicit TestServer(ServerOptions options = TestOptions()) : server_(service, options) {
    // A client writing a body the server refused and closed on gets EPIPE, as in the daemon
    // (which ignores SIGPIPE), instead of the test process being killed by the signal.
    std::signal(SIGPIPE, SIG_IGN);
    Status bound = server_.Bind();
    REQUIRE(bound.ok());
    thread_ = std::thread([this] { server_.Run(); });
    server_.WaitUntilReady();
  }
  ~TestServer() {
    service.Stop();
    server_.Stop();
    thread_.join();
  }
  // Stops the server alone (the service keeps running); the destructor still joins it.
  void StopServer() { server_.Stop(); }
  int port() const { return server_.port(); }
  Status SetTokens(std::vector<Token> tokens) { return server_.SetTokens(std::move(tokens)); }
  std::unique_ptr<httplib::Client> Client() const {
    auto client = std::make_unique<httplib::Client>("127.0.0.1", port());
    client->set_connection_timeout(10, 0);
    client->set_read_timeout(30, 0);  // a safety net against a hang, never reached when correct
    return client;
  }

  FakeService service;  // declared before server_: outlives it

 private:
  Server server_;
  std::thread thread_;
};

inline json Body(const httplib::Result& r) {
  REQUIRE(r);
  return json::parse(r->body);
}

// {"error": {"code": code, "message": message}}
inline json ErrorBody(const std::string& code, const std::string& message) {
  return {{"error", {{"code", code}, {"message", message}}}};
}

// A raw TCP connection, for requests httplib::Client will not send. Every read gives up after
// 30 s (a safety net: a correct server answers at once).
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    timeval tv{30, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~RawConnection() { close(fd_); }
  void Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      REQUIRE(n > 0);
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
  // One response: status line and headers, then Content-Length bytes of body.
  std::string ReadResponse() {
    while (buffer_.find("\r\n\r\n") == std::string::npos) REQUIRE(Fill());
    size_t head_end = buffer_.find("\r\n\r\n") + 4;
    std::string head = buffer_.substr(0, head_end);
    size_t length = 0;
    if (auto at = Lower(head).find("\r\ncontent-length: "); at != std::string::npos) {
      length = std::stoul(head.substr(at + 18));
    }
    while (buffer_.size() < head_end + length) REQUIRE(Fill());
    std::string response = buffer_.substr(0, head_end + length);
    buffer_.erase(0, head_end + length);
    return response;
  }
  // True once the server has closed the connection (after everything it sent was read).
  bool ClosedByServer() {
    while (Fill()) {
    }
    return eof_;
  }

 private:
  static std::string Lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  bool Fill() {
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n == 0) eof_ = true;
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

// Server-Sent Events split out of a stream as it arrives.
struct SseMessage {
  std::string id, event, data, comment;
};
class SseReader {
 public:
  // Adds received bytes; returns the messages they complete.
  std::vector<SseMessage> Add(const char* data, size_t size) {
    buffer_.append(data, size);
    std::vector<SseMessage> out;
    for (size_t end; (end = buffer_.find("\n\n")) != std::string::npos;) {
      std::string block = buffer_.substr(0, end);
      buffer_.erase(0, end + 2);
      SseMessage m;
      size_t start = 0;
      while (start <= block.size()) {
        size_t nl = block.find('\n', start);
        std::string line = block.substr(start, nl == std::string::npos ? nl : nl - start);
        if (line.starts_with(": ")) m.comment = line.substr(2);
        if (line.starts_with("id: ")) m.id = line.substr(4);
        if (line.starts_with("event: ")) m.event = line.substr(7);
        if (line.starts_with("data: ")) m.data = line.substr(6);
        if (nl == std::string::npos) break;
        start = nl + 1;
      }
      out.push_back(std::move(m));
    }
    return out;
  }

 private:
  std::string buffer_;
};

// A pipeline that never loaded: just a name and a file.
inline scheduler::PipelineInfo NamedPipeline(const std::string& name) {
  scheduler::PipelineInfo info;
  info.name = name;
  info.file = name + ".toml";
  return info;
}

inline Instant At(int64_t ms) { return Instant(std::chrono::milliseconds(ms)); }

// 2026-11-29T01:51:15.000Z and later instants.
inline constexpr int64_t kT0 = 1795917075000;

inline scheduler::RunRecord SampleRun(int64_t id = 12) {
  scheduler::RunRecord run;
  run.id = RunId{id};
  run.pipeline = "ml";
  run.version_hash = "3f2a";
  run.trigger = "manual";
  run.logical_date = At(kT0);
  run.data_interval_start = At(kT0 - 86400000);
  run.data_interval_end = At(kT0);
  run.params = {{"epochs", int64_t{10}},
                {"dataset", std::string("data/churn.csv")},
                {"lr", 0.5},
                {"dry", false}};
  run.state = dag::RunState::kRunning;
  run.created_by = "ops";
  run.note = "more epochs";
  run.triggered_by = RunId{7};
  run.created_at = At(kT0 + 5);
  run.started_at = At(kT0 + 250);
  scheduler::TaskInstanceRecord prepare;
  prepare.task_id = "prepare";
  prepare.state = dag::TaskState::kSuccess;
  prepare.attempt = 1;
  prepare.pool = "default";
  prepare.exit_code = 0;
  prepare.started_at = At(kT0 + 250);
  prepare.ended_at = At(kT0 + 1250);
  prepare.duration = std::chrono::milliseconds(1000);
  scheduler::TaskInstanceRecord train;
  train.task_id = "train";
  train.state = dag::TaskState::kRunning;
  train.attempt = 2;
  train.pool = "gpu";
  train.priority = 5;
  train.started_at = At(kT0 + 2000);
  run.tasks = {prepare, train};
  return run;
}

// SampleRun() as the API shows it.
inline json SampleRunJson(bool with_tasks = true) {
  json run = {
      {"id", 12},
      {"pipeline", "ml"},
      {"version", "3f2a"},
      {"state", "running"},
      {"trigger", "manual"},
      {"created_by", "ops"},
      {"note", "more epochs"},
      {"idempotency_key", nullptr},
      {"triggered_by", 7},
      {"backfill", nullptr},
      {"params", {{"epochs", 10}, {"dataset", "data/churn.csv"}, {"lr", 0.5}, {"dry", false}}},
      {"logical_date", "2026-11-29T01:51:15.000Z"},
      {"data_interval_start", "2026-11-28T01:51:15.000Z"},
      {"data_interval_end", "2026-11-29T01:51:15.000Z"},
      {"created_at", "2026-11-29T01:51:15.005Z"},
      {"started_at", "2026-11-29T01:51:15.250Z"},
      {"ended_at", nullptr}};
  if (with_tasks) {
    run["tasks"] = json::array({{{"id", "prepare"},
                                 {"state", "success"},
                                 {"attempt", 1},
                                 {"pool", "default"},
                                 {"priority", 0},
                                 {"exit_code", 0},
                                 {"signal", nullptr},
                                 {"started_at", "2026-11-29T01:51:15.250Z"},
                                 {"ended_at", "2026-11-29T01:51:16.250Z"},
                                 {"retry_at", nullptr},
                                 {"waiting_for", nullptr},
                                 {"deadline", nullptr},
                                 {"duration_ms", 1000}},
                                {{"id", "train"},
                                 {"state", "running"},
                                 {"attempt", 2},
                                 {"pool", "gpu"},
                                 {"priority", 5},
                                 {"exit_code", nullptr},
                                 {"signal", nullptr},
                                 {"started_at", "2026-11-29T01:51:17.000Z"},
                                 {"ended_at", nullptr},
                                 {"retry_at", nullptr},
                                 {"waiting_for", nullptr},
                                 {"deadline", nullptr},
                                 {"duration_ms", nullptr}}});
  }
  return run;
}

}  // namespace kiln::web::testing
