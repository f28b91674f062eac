// Hostile clients against a real daemon: slow heads, header floods, range amplification,
// streams whose clients go away, logs that are FIFOs or hard links. Whatever they do, /healthz
// and an authenticated read answer.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;
namespace fs = std::filesystem;

namespace {

// A TCP connection to the daemon written and read by hand.
class Raw {
 public:
  explicit Raw(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~Raw() { ::close(fd_); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  // False once the server has closed (or reset) the connection.
  bool Send(const std::string& text) {
    size_t sent = 0;
    while (sent < text.size()) {
      ssize_t n = ::send(fd_, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }
  // What arrives until the server closes or `wait` passes without anything new.
  std::string Read(std::chrono::milliseconds wait = std::chrono::milliseconds(5000)) {
    std::string out;
    char buf[8192];
    while (true) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return out;
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        return out;
      }
      out.append(buf, static_cast<size_t>(n));
    }
  }
  // The response's status line, as soon as it has come whole; "" when the server closes or
  // `wait` passes first.
  std::string ReadStatusLine(std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    char buf[8192];
    while (status_.find("\r\n") == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return "";
      status_.append(buf, static_cast<size_t>(n));
    }
    return status_.substr(0, status_.find("\r\n"));
  }
  // True when the server has closed the connection (reading sees its end), waiting up to `wait`.
  bool Closed(std::chrono::milliseconds wait) {
    Read(wait);
    return closed_;
  }

 private:
  int fd_ = -1;
  bool closed_ = false;
  std::string status_;  // what ReadStatusLine() read
};

std::string StatusLine(const std::string& response) {
  return response.substr(0, response.find('\r'));
}

json BodyOf(const std::string& response) {
  size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? json() : json::parse(response.substr(at + 4), nullptr, false);
}

// Resident memory of a process, in KiB.
long RssKib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return -1;
}

// A client that gives up after five seconds: what "answers" means here. Well below what a held
// thread or slot would cost (a head's 10 s deadline, a stream's 15 s keep-alive, a FIFO's open
// for ever), well above an answer's time on a loaded machine.
httplib::Client Quick(const Daemon& daemon, const std::string& token = kViewerToken) {
  httplib::Client c("127.0.0.1", daemon.port());
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(5, 0);
  c.set_write_timeout(5, 0);
  if (!token.empty()) c.set_bearer_token_auth(token.c_str());
  return c;
}

// /healthz and an authenticated read answer (Quick).
void CheckAnswers(const Daemon& daemon) {
  auto healthz = Quick(daemon, "").Get("/healthz");
  CHECK((healthz && healthz->status == 200));
  auto read = Quick(daemon).Get("/api/v1/pipelines");
  CHECK((read && read->status == 200));
}

// The absolute path of an attempt's log.
fs::path LogFile(const Daemon& daemon, int64_t run, const std::string& task) {
  fs::path stored = Sql("select log_path from attempts where run_id = " + std::to_string(run) +
                        " and task_id = '" + task + "' and attempt = 1");
  return stored.is_absolute() ? stored : daemon.data_dir() / "logs" / stored;
}

}  // namespace

TEST_CASE("slow heads hold no thread: /healthz and reads answer, the heads are cut off") {
  TempDir dir;
  WriteFile(dir / "pipelines/p.toml", Pipeline(Unique("slow"), ""));
  Daemon daemon(dir, dir / "pipelines");
  // 90 connections that each send one header line a second and never finish their head.
  std::vector<std::unique_ptr<Raw>> slow;
  for (int i = 0; i < 90; ++i) {
    slow.push_back(std::make_unique<Raw>(daemon.port()));
    slow.back()->Send("GET /api/v1/pipelines HTTP/1.1\r\nHost: x\r\n");
  }
  // Past the 10 s deadline for a whole head.
  for (int second = 0; second < 12; ++second) {
    for (auto& c : slow) c->Send("X-Slow: " + std::to_string(second) + "\r\n");
    CheckAnswers(daemon);
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the attacker's pace
  }
  // Each was closed at its head's deadline.
  int closed = 0;
  for (auto& c : slow) closed += c->Closed(std::chrono::milliseconds(3000)) ? 1 : 0;
  CHECK(closed == 90);
  CheckAnswers(daemon);
}

TEST_CASE("a client past 256 connections loses its longest idle ones, not the service") {
  TempDir dir;
  WriteFile(dir / "pipelines/p.toml", Pipeline(Unique("many"), ""));
  Daemon daemon(dir, dir / "pipelines");
  std::vector<std::unique_ptr<Raw>> idle;
  for (int i = 0; i < 300; ++i) idle.push_back(std::make_unique<Raw>(daemon.port()));
  // Well before the 5 s idle timeout: the 44 oldest are closed to make room, the rest are open.
  for (int i = 0; i < 44; ++i) CHECK(idle[i]->Closed(std::chrono::milliseconds(2000)));
  for (int i = 44; i < 300; ++i) CHECK_FALSE(idle[i]->Closed(std::chrono::milliseconds(0)));
  CheckAnswers(daemon);
  // Those answers took the places of the next oldest.
  CHECK(idle[44]->Closed(std::chrono::milliseconds(2000)));
  CHECK_FALSE(idle[299]->Closed(std::chrono::milliseconds(0)));
}

TEST_CASE("a head over 16 KiB or 100 fields gets 431 and costs no memory") {
  TempDir dir;
  WriteFile(dir / "pipelines/p.toml", Pipeline(Unique("flood"), ""));
  Daemon daemon(dir, dir / "pipelines");
  CheckAnswers(daemon);
  long before = RssKib(daemon.pid());
  // 12,800 lines of 8 KB each (100 MB), without a token: refused after the first 16 KiB.
  Raw flood(daemon.port());
  flood.Send("GET /api/v1/pipelines HTTP/1.1\r\nHost: x\r\n");
  const std::string line = "X-Flood: " + std::string(8000, 'a') + "\r\n";
  int lines = 0;
  while (lines < 12800 && flood.Send(line)) ++lines;
  CHECK(lines < 12800);  // the server stopped reading and closed
  std::string response = flood.Read();
  CHECK(StatusLine(response) == "HTTP/1.1 431 Request Header Fields Too Large");
  CHECK(BodyOf(response)["error"]["message"] == "the request line and headers are over 16 KiB");
  long after = RssKib(daemon.pid());
  INFO("resident memory " << before << " KiB before, " << after << " KiB after");
  CHECK(after - before < 8 * 1024);

  Raw many(daemon.port());
  std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 101; ++i) head += "X-" + std::to_string(i) + ": 1\r\n";
  many.Send(head + "\r\n");
  response = many.Read();
  CHECK(StatusLine(response) == "HTTP/1.1 431 Request Header Fields Too Large");
  CHECK(BodyOf(response)["error"]["message"] == "over 100 header fields");
  CheckAnswers(daemon);
}

TEST_CASE("a log is served one range at a time") {
  TempDir dir;
  const std::string name = Unique("ranges");
  // 1 MiB of log: "x\n" again and again.
  WriteFile(dir / "pipelines/p.toml", Pipeline(name, "", "yes x | head -c 1048576"));
  Daemon daemon(dir, dir / "pipelines");
  auto viewer = daemon.Client(kViewerToken);
  auto op = daemon.Client(kOperatorToken);
  int64_t id = Trigger(op, name);
  REQUIRE(WaitForRunEnd(daemon, id) == "success");
  std::string log = "/api/v1/runs/" + std::to_string(id) + "/tasks/t/attempts/1/log";

  std::string parts = "bytes=0-";
  for (int i = 1; i < 1000; ++i) parts += ",0-";
  auto many = viewer.Get(log.c_str(), {{"Range", parts}});
  REQUIRE(many);
  CHECK(many->status == 416);
  CHECK(many->body.size() < 1024);
  CHECK(Body(many)["error"]["message"] ==
        "Range: one range per request: several ranges in one Range header are not served");
  CHECK(many->get_header_value("Content-Range") == "bytes */1048576");

  auto one = viewer.Get(log.c_str(), {{"Range", "bytes=1048570-"}});
  REQUIRE(one);
  CHECK(one->status == 206);
  CHECK(one->body == "x\nx\nx\n");
  CHECK(one->get_header_value("Content-Range") == "bytes 1048570-1048575/1048576");
  auto past = viewer.Get(log.c_str(), {{"Range", "bytes=2000000-"}});
  REQUIRE(past);
  CHECK(past->status == 416);
  CheckAnswers(daemon);
}

TEST_CASE("streams whose clients went away give their slots back at once") {
  TempDir dir;
  const std::string name = Unique("quiet");
  WriteFile(dir / "pipelines/p.toml", Pipeline(name, "", "echo started; sleep 600"));
  Daemon daemon(dir, dir / "pipelines");
  auto op = daemon.Client(kOperatorToken);
  int64_t id = Trigger(op, name);
  const std::string follow = "GET /api/v1/runs/" + std::to_string(id) +
                             "/tasks/t/attempts/1/log?follow=true HTTP/1.1\r\nHost: x\r\n"
                             "Authorization: Bearer " +
                             std::string(kViewerToken) + "\r\n\r\n";
  const std::string events = std::string("GET /api/v1/events HTTP/1.1\r\nHost: x\r\n") +
                             "Authorization: Bearer " + kViewerToken + "\r\n\r\n";
  WaitFor(
      [&] {
        return Sql("select state from attempts where run_id = " + std::to_string(id)) == "running";
      },
      "the task to run");
  // All 64 stream slots taken by followers of a task that prints nothing more.
  std::vector<std::unique_ptr<Raw>> followers;
  for (int i = 0; i < 64; ++i) {
    followers.push_back(std::make_unique<Raw>(daemon.port()));
    followers.back()->Send(follow);
    CHECK(followers.back()->ReadStatusLine(std::chrono::seconds(5)) == "HTTP/1.1 200 OK");
  }
  Raw refused(daemon.port());
  refused.Send(events);
  CHECK(StatusLine(refused.Read(std::chrono::milliseconds(2000))) ==
        "HTTP/1.1 503 Service Unavailable");
  CheckAnswers(daemon);
  // They go away; a new stream is served as soon as a slot is back (not at the keep-alive's
  // 15 s).
  followers.clear();
  auto gone = std::chrono::steady_clock::now();
  std::string status;
  while (std::chrono::steady_clock::now() - gone < std::chrono::seconds(5)) {
    Raw next(daemon.port());
    next.Send(events);
    status = next.ReadStatusLine(std::chrono::seconds(1));
    if (status == "HTTP/1.1 200 OK") break;
  }
  CHECK(status == "HTTP/1.1 200 OK");
  CHECK(op.Post(("/api/v1/runs/" + std::to_string(id) + "/cancel").c_str(), "", kJson)->status ==
        202);
}

TEST_CASE("a log that is a FIFO or a hard link is not served and blocks nothing") {
  TempDir dir;
  const std::string name = Unique("planted");
  WriteFile(dir / "pipelines/p.toml", Pipeline(name, "", "echo mine"));
  Daemon daemon(dir, dir / "pipelines");
  auto op = daemon.Client(kOperatorToken);
  int64_t first = Trigger(op, name);
  REQUIRE(WaitForRunEnd(daemon, first) == "success");
  int64_t second = Trigger(op, name);
  REQUIRE(WaitForRunEnd(daemon, second) == "success");
  auto viewer = daemon.Client(kViewerToken);
  auto log_of = [](int64_t run) {
    return "/api/v1/runs/" + std::to_string(run) + "/tasks/t/attempts/1/log";
  };
  CHECK(viewer.Get(log_of(first).c_str())->body == "mine\n");

  // The first run's log becomes a FIFO: 80 readers at once each get 404, none waits.
  fs::path fifo = LogFile(daemon, first, "t");
  fs::remove(fifo);
  REQUIRE(mkfifo(fifo.c_str(), 0644) == 0);
  std::vector<std::thread> readers;
  std::atomic<int> not_found = 0;
  for (int i = 0; i < 80; ++i) {
    readers.emplace_back([&] {
      auto r = Quick(daemon).Get(log_of(first).c_str());
      if (r && r->status == 404) ++not_found;
    });
  }
  for (auto& t : readers) t.join();
  CHECK(not_found == 80);
  CheckAnswers(daemon);

  // The second run's log becomes a hard link to a file that is not its: not served either.
  WriteFile(dir / "secret.txt", "not for viewers\n");
  fs::path linked = LogFile(daemon, second, "t");
  fs::remove(linked);
  fs::create_hard_link(dir / "secret.txt", linked);
  auto r = viewer.Get(log_of(second).c_str());
  REQUIRE(r);
  CHECK(r->status == 404);
  CHECK(r->body.find("not for viewers") == std::string::npos);
}

TEST_CASE("a frozen PostgreSQL: /healthz answers, the API says 503 soon, and recovers") {
  TempDir dir;
  // A server of its own: the test's fixture server is shared with other tests.
  char pg_tmpl[] = "/tmp/kpg-XXXXXX";
  REQUIRE(mkdtemp(pg_tmpl) != nullptr);
  const std::string pg = pg_tmpl;
  const std::string script = (SourceDir() / "tests/support/pg_cluster.sh").string();
  REQUIRE(Exec({script, "start", pg}).code == 0);
  struct Cleanup {
    std::string script, pg, action;
    ~Cleanup() { Exec({script, action, pg}); }
  } cleanup{script, pg, "stop"};
  WriteFile(dir / "pipelines/p.toml", Pipeline(Unique("frozen"), ""));
  DaemonOptions o(dir / "pipelines");
  o.database_url = "postgresql:///kiln_test?host=" + pg + "&user=kiln";
  Daemon daemon(dir, o);
  CheckAnswers(daemon);

  REQUIRE(Exec({script, "freeze", pg}).code == 0);
  Cleanup thaw{script, pg, "thaw"};  // before the daemon stops, whatever fails below
  // 20 reads at once: the 16 on pooled connections are cut off at their 10 s deadline (the
  // others wait for a worker meanwhile); each gets 503, none hangs.
  auto reads = [&](int n, int timeout_s, std::atomic<int>& unavailable, std::atomic<int>& quick) {
    std::vector<std::thread> readers;
    for (int i = 0; i < n; ++i) {
      readers.emplace_back([&, timeout_s] {
        httplib::Client c("127.0.0.1", daemon.port());
        c.set_read_timeout(timeout_s, 0);
        c.set_bearer_token_auth(kViewerToken);
        auto r = c.Get("/api/v1/runs");
        if (!r) return;  // (no Catch2 assertion off the test's thread)
        json body = json::parse(r->body, nullptr, false);
        if (r->status == 503 && body["error"]["code"] == "unavailable") ++unavailable;
        if (body["error"]["message"] ==
            "the database is not answering: a call was abandoned after 10 s; one request at a "
            "time finds out whether it answers again") {
          ++quick;
        }
      });
    }
    return readers;
  };
  std::atomic<int> unavailable = 0;
  std::atomic<int> quick = 0;
  auto first = reads(20, 30, unavailable, quick);
  // Meanwhile the process answers.
  auto healthz = Quick(daemon, "").Get("/healthz");
  CHECK((healthz && healthz->status == 200));
  for (auto& t : first) t.join();
  CHECK(unavailable == 20);
  // Now that the database is known not to answer, one request at a time looks (and waits), the
  // rest are told at once.
  std::atomic<int> later = 0;
  std::atomic<int> told = 0;
  auto second = reads(5, 3, later, told);
  for (auto& t : second) t.join();
  CHECK(told >= 4);
  healthz = Quick(daemon, "").Get("/healthz");
  CHECK((healthz && healthz->status == 200));

  REQUIRE(Exec({script, "thaw", pg}).code == 0);
  auto viewer = daemon.Client(kViewerToken);
  WaitFor([&] { return viewer.Get("/readyz")->status == 200; }, "/readyz to say ready again");
  CHECK(viewer.Get("/api/v1/runs")->status == 200);
}
