// [[notify]] and sla through `kiln serve`, with a webhook receiver on loopback that records every
// delivery: a failed run (the receiver fails twice, then answers: three tries, each a run event),
// a success in Slack's format from kiln.toml's own [[notify]] with a secret in its URL, a retry,
// and a run that misses its SLA.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

namespace {

struct Delivery {
  std::string path;
  std::string event;     // X-Kiln-Event
  std::string delivery;  // X-Kiln-Delivery
  json body;
};

// Answers 500 to the first `failures` requests of each path, then 200.
struct Receiver {
  explicit Receiver(int failures) : failures(failures) {
    server.Post(".*", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu);
      const int seen = ++tries[req.path];
      if (seen <= this->failures) {
        res.status = 500;
        return;
      }
      deliveries.push_back({req.path, req.get_header_value("X-Kiln-Event"),
                            req.get_header_value("X-Kiln-Delivery"), json::parse(req.body)});
      res.status = 200;
    });
    port = server.bind_to_any_port("127.0.0.1");
    serving = std::thread([this] { server.listen_after_bind(); });
  }
  ~Receiver() {
    server.stop();
    serving.join();
  }
  std::vector<Delivery> Delivered() {
    std::lock_guard lock(mu);
    return deliveries;
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
  int failures;
  httplib::Server server;
  std::mutex mu;
  std::map<std::string, int> tries;
  std::vector<Delivery> deliveries;
  int port = 0;
  std::thread serving;
};

std::vector<json> Notifications(int64_t run) {
  std::vector<json> out;
  const std::string rows = Sql(
      "select coalesce(string_agg(detail::text, E'\\n' order by id), '') from events where kind = "
      "'notification' and run_id = " +
      std::to_string(run));
  size_t start = 0;
  while (start < rows.size()) {
    size_t end = rows.find('\n', start);
    if (end == std::string::npos) end = rows.size();
    out.push_back(json::parse(rows.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

// Waits for `count` deliveries and checks that no more came; on a timeout the failure says what
// the database queued and how each one went, and what the receiver was asked.
void WaitForDeliveries(Receiver& receiver, size_t count, const std::string& what) {
  try {
    WaitFor([&] { return receiver.Delivered().size() >= count; }, what);
    CHECK(receiver.Delivered().size() == count);
  } catch (const std::exception& e) {
    int asked = 0;
    {
      std::lock_guard lock(receiver.mu);
      for (const auto& [path, tries] : receiver.tries) asked += tries;
    }
    FAIL(std::string(e.what()) + "; the receiver was asked " + std::to_string(asked) +
         " times; queued: " +
         Sql("select coalesce(string_agg(run_id || ' ' || event || ' ' || webhook || ' ' || state "
             "|| ' tries=' || tries || ' next_at=' || next_at, '; ' order by id), 'none') from "
             "notifications") +
         "; notification events: " +
         Sql("select coalesce(string_agg(detail::text, '; ' order by id), 'none') from events "
             "where kind = 'notification'"));
  }
}

}  // namespace

TEST_CASE("a failed run is delivered after two failed tries, each try a run event") {
  TempDir dir;
  Receiver receiver(2);
  WriteFile(dir / "pipelines/churn.toml", R"([pipeline]
name = "churn"
[params]
region = "eu"
[tasks.prepare]
command = "true"
[tasks.train]
needs = ["prepare"]
command = "exit 3"
[[notify]]
on = ["failed"]
webhook = ")" + receiver.Url("/hooks/{{ pipeline.name }}") +
                                              R"("
)");
  Daemon daemon(dir, dir / "pipelines");
  auto client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, "churn");
  CHECK(WaitForRunEnd(daemon, run) == "failed");
  WaitFor([&] { return receiver.Delivered().size() == 1; }, "the delivery");
  const Delivery d = receiver.Delivered()[0];
  CHECK(d.path == "/hooks/churn");
  CHECK(d.event == "failed");
  CHECK_FALSE(d.delivery.empty());
  CHECK(d.body["event"] == "failed");
  CHECK(d.body["pipeline"] == "churn");
  CHECK(d.body["run"]["id"] == run);
  CHECK(d.body["run"]["state"] == "failed");
  CHECK(d.body["run"]["params"] == json{{"region", "eu"}});
  CHECK(d.body["run"]["failed_tasks"] ==
        json::array({{{"task", "train"}, {"state", "failed"}, {"exit_code", 3}}}));
  CHECK(d.body["run"]["url"] ==
        "http://127.0.0.1:" + std::to_string(daemon.port()) + "/#/runs/" + std::to_string(run));
  CHECK(d.body["run"]["logical_date"].is_string());
  WaitFor([&] { return Notifications(run).size() == 3; }, "three notification events");
  const auto tries = Notifications(run);
  CHECK(tries[0]["outcome"] == "retrying");
  CHECK(tries[0]["status"] == 500);
  CHECK(tries[0]["try"] == 1);
  CHECK(tries[1]["outcome"] == "retrying");
  CHECK(tries[1]["try"] == 2);
  CHECK(tries[2]["outcome"] == "delivered");
  CHECK(tries[2]["status"] == 200);
  CHECK(tries[2]["webhook"] == receiver.Url("/hooks/{{ pipeline.name }}"));
  CHECK(Sql("select state || ':' || tries from notifications where run_id = " +
            std::to_string(run)) == "delivered:3");
  // The event stream carries them too (the run page lists them).
  const auto streamed = ReadEvents(daemon, "run=" + std::to_string(run), [](const json& e) {
    return e["kind"] == "notification" && e["detail"]["outcome"] == "delivered";
  });
  CHECK(streamed.back()["detail"]["try"] == 3);
}

TEST_CASE("kiln.toml's notify with a secret, a retry, and a run past its SLA") {
  TempDir dir;
  Receiver receiver(0);
  WriteFile(dir / "secrets/hook", "T000-secret-path\n");
  WriteFile(dir / "pipelines/nightly.toml", R"([pipeline]
name = "nightly"
sla = "1s"
[tasks.flaky]
command = "test -f )" + (dir / "second").string() +
                                                R"( || { touch )" + (dir / "second").string() +
                                                R"(; exit 1; }"
retries = 1
retry_delay = "100ms"
[tasks.slow]
needs = ["flaky"]
command = "while ! test -f )" + (dir / "release").string() +
                                                R"(; do sleep 0.05; done"
[[notify]]
on = ["retry", "sla_missed"]
webhook = ")" + receiver.Url("/pipeline") + R"("
)");
  DaemonOptions options(dir / "pipelines");
  options.extra_config = "[secrets]\nhook = { file = \"" + (dir / "secrets/hook").string() +
                         "\" }\n[[notify]]\non = [\"success\"]\nformat = \"slack\"\nwebhook = \"" +
                         receiver.Url("/services/{{ secrets.hook }}") + "\"\n";
  Daemon daemon(dir, options);
  auto client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, "nightly");
  // The retry and the SLA: the run is still going 1 s after its logical date.
  WaitFor([&] { return receiver.Delivered().size() == 2; }, "the retry and the SLA");
  CHECK(Sql("select count(*) from events where kind = 'sla_missed' and run_id = " +
            std::to_string(run)) == "1");
  WriteFile(dir / "release", "");
  CHECK(WaitForRunEnd(daemon, run) == "success");
  WaitFor([&] { return receiver.Delivered().size() == 3; }, "the success");
  const auto d = receiver.Delivered();
  // The two come in either order: on a slow machine the first attempt's end can take past 1 s.
  const bool retry_first = d[0].event == "retry";
  const auto& retry = d[retry_first ? 0 : 1];
  const auto& sla = d[retry_first ? 1 : 0];
  CHECK(retry.path == "/pipeline");
  CHECK(retry.event == "retry");
  CHECK(retry.body["task"] == json{{"id", "flaky"}, {"attempt", 1}});
  CHECK(sla.path == "/pipeline");
  CHECK(sla.event == "sla_missed");
  CHECK(sla.body["run"]["state"] == "running");
  CHECK(d[2].path == "/services/T000-secret-path");
  CHECK(d[2].event == "success");
  CHECK(d[2].body == json{{"text", "kiln: run " + std::to_string(run) +
                                       " of nightly succeeded <http://127.0.0.1:" +
                                       std::to_string(daemon.port()) + "/#/runs/" +
                                       std::to_string(run) + "|open the run>"}});
  // The secret is used, never written: the event names the webhook as configured.
  WaitFor([&] { return Notifications(run).size() == 3; }, "three notification events");
  CHECK(Notifications(run)[2]["webhook"] == receiver.Url("/services/{{ secrets.hook }}"));
  CHECK(Sql("select count(*) from events where detail::text like '%T000-secret-path%'") == "0");
  CHECK(Sql("select count(*) from notifications where webhook like '%T000-secret-path%'") == "0");
}

TEST_CASE("a run that waits queued, never started here, is marked past its SLA") {
  // Nothing wakes the notifier for a run this daemon does not start (held by a pause): it looks
  // again within the shortest SLA, so the run is found when it is due.
  TempDir dir;
  Receiver receiver(0);
  WriteFile(dir / "pipelines/held.toml", R"([pipeline]
name = "held"
sla = "1s"
[tasks.t]
command = "true"
[[notify]]
on = ["sla_missed"]
webhook = ")" + receiver.Url("/held") + R"("
)");
  Daemon daemon(dir, dir / "pipelines");
  auto client = daemon.Client(kOperatorToken);
  auto paused = client.Post("/api/v1/pipelines/held/pause", "", "application/json");
  REQUIRE(paused);
  REQUIRE(paused->status == 200);
  const int64_t run = Trigger(client, "held");
  WaitFor([&] { return receiver.Delivered().size() == 1; }, "the SLA's notification");
  const auto d = receiver.Delivered();
  CHECK(d[0].event == "sla_missed");
  CHECK(d[0].body["run"]["id"] == run);
  CHECK(d[0].body["run"]["state"] == "queued");
  CHECK(Sql("select count(*) from events where kind = 'sla_missed' and run_id = " +
            std::to_string(run)) == "1");
}

TEST_CASE("a notification queued before a SIGKILL is delivered by the next daemon") {
  TempDir dir;
  // A port with nobody on it yet: the first tries cannot connect.
  int port = 0;
  {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
    ::close(fd);  // free, and nobody listens on it
  }
  WriteFile(dir / "pipelines/p.toml", R"([pipeline]
name = "p"
[tasks.a]
command = "exit 1"
[[notify]]
on = ["failed"]
webhook = "http://127.0.0.1:)" + std::to_string(port) +
                                          R"(/hook"
)");
  DaemonOptions o(dir / "pipelines");
  o.on_stop = "leave";
  int64_t run = 0;
  {
    Daemon first(dir, o);
    auto client = first.Client(kOperatorToken);
    run = Trigger(client, "p");
    CHECK(WaitForRunEnd(first, run) == "failed");
    WaitFor([&] { return Notifications(run).size() >= 1; }, "a failed try");
    CHECK(Notifications(run)[0]["outcome"] == "retrying");
    CHECK(Notifications(run)[0]["error"] == "cannot connect");
    first.Signal(SIGKILL);
    CHECK(first.Wait() == 128 + SIGKILL);
  }
  // The receiver comes up on that port; the next daemon finds the row and delivers it.
  std::mutex mu;
  std::vector<json> got;
  httplib::Server receiver;
  receiver.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    got.push_back(json::parse(req.body));
    res.status = 200;
  });
  REQUIRE(receiver.bind_to_port("127.0.0.1", port));
  std::thread serving([&] { receiver.listen_after_bind(); });
  {
    Daemon second(dir, o);
    WaitFor(
        [&] {
          std::lock_guard lock(mu);
          return got.size() == 1;
        },
        "the delivery by the next daemon");
    WaitFor([&] { return Notifications(run).back()["outcome"] == "delivered"; }, "its event");
  }
  receiver.stop();
  serving.join();
  CHECK(got[0]["run"]["id"] == run);
  CHECK(Sql("select state from notifications where run_id = " + std::to_string(run)) ==
        "delivered");
}

TEST_CASE(
    "a [[notify]] and public_url added by a reload are told of the next run end, one "
    "removed is not") {
  TempDir dir;
  Receiver receiver(0);
  const std::string p = kiln::e2e::Unique("notify-reload");
  WriteFile(dir / "pipelines/p.toml", Pipeline(p, ""));
  Daemon daemon(dir, DaemonOptions(dir / "pipelines"));
  auto client = daemon.Client(kOperatorToken);
  // No run ends before the reload: the notifier queues an end with the hooks in effect when it
  // takes the end up, which may be just after a reload that the end preceded.
  const std::string base = ReadFile(dir / "kiln.toml");
  WriteFile(dir / "kiln.toml", "public_url = \"https://kiln.example/\"\n" + base +
                                   "\n[[notify]]\non = [\"success\"]\nwebhook = \"" +
                                   receiver.Url("/hook") + "\"\n");
  auto asked = client.Post("/api/v1/reload", "{}", kJson);
  REQUIRE(asked);
  CHECK(Body(asked)["config"]["applied"] == json{"notify", "public_url"});
  const int64_t after = Trigger(client, p);
  CHECK(WaitForRunEnd(daemon, after) == "success");
  WaitForDeliveries(receiver, 1, "the success of the run after");
  const auto told = receiver.Delivered()[0];
  CHECK(told.body["run"]["id"] == after);
  CHECK(told.body["run"]["url"] == "https://kiln.example/#/runs/" + std::to_string(after));

  // Replaced by another webhook, and public_url back to the daemon's own address.
  WriteFile(dir / "kiln.toml", base + "\n[[notify]]\non = [\"success\"]\nwebhook = \"" +
                                   receiver.Url("/other") + "\"\n");
  asked = client.Post("/api/v1/reload", "{}", kJson);
  REQUIRE(asked);
  CHECK(Body(asked)["config"]["applied"] == json{"notify", "public_url"});
  const int64_t last = Trigger(client, p);
  CHECK(WaitForRunEnd(daemon, last) == "success");
  // Both hooks of an end are queued together: once the new one is told, the old one is not.
  WaitForDeliveries(receiver, 2, "the success of the last run");
  const auto other = receiver.Delivered()[1];
  CHECK(other.path == "/other");
  CHECK(other.body["run"]["url"] ==
        "http://127.0.0.1:" + std::to_string(daemon.port()) + "/#/runs/" + std::to_string(last));
  CHECK(Sql("select count(*) from notifications where run_id = " + std::to_string(last)) == "1");
}
