// kind = "wait" through `kiln serve`: waits for a file that appears later, for an HTTP endpoint
// that turns 200 and for an instant, none holding a slot or running a process; the daemon is
// killed while they wait and the next one waits on with the deadlines they recorded. A wait
// whose timeout passes fails with what it last saw.
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/time.h"
#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

namespace {

std::string EndReason(int64_t run, const std::string& task) {
  return Sql("select detail->>'reason' from events where kind = 'task_state' and run_id = " +
             std::to_string(run) + " and task_id = '" + task +
             "' and to_state in ('success', 'failed')");
}

// An HTTP server on loopback whose /ready answers `status`.
struct Endpoint {
  Endpoint() {
    server.Get("/ready", [this](const httplib::Request&, httplib::Response& res) {
      ++requests;
      res.status = status;
    });
    port = server.bind_to_any_port("127.0.0.1");
    serving = std::thread([this] { server.listen_after_bind(); });
  }
  ~Endpoint() {
    server.stop();
    serving.join();
  }
  httplib::Server server;
  std::atomic<int> status{503};
  std::atomic<int> requests{0};
  int port = 0;
  std::thread serving;
};

}  // namespace

TEST_CASE("waits for a file, a URL and an instant survive a daemon restart") {
  TempDir dir;
  Endpoint endpoint;
  // An instant far enough ahead to still be ahead after the restart.
  const auto instant = kiln::NowUtc() + std::chrono::seconds(8);
  const std::string at = kiln::FormatRfc3339(instant);
  const std::string flag = (dir / "landing/_SUCCESS").string();
  WriteFile(dir / "pipelines/nightly.toml", R"([pipeline]
name = "nightly"
[tasks.wait_file]
kind = "wait"
for = "file"
path = ")" + flag + R"("
every = "100ms"
timeout = "1h"
[tasks.wait_http]
kind = "wait"
for = "http"
url = "http://127.0.0.1:)" + std::to_string(endpoint.port) +
                                                R"(/ready"
every = "100ms"
timeout = "1h"
[tasks.wait_time]
kind = "wait"
for = "time"
at = ")" + at + R"("
[tasks.train]
needs = ["wait_file", "wait_http", "wait_time"]
command = "echo trained"
)");
  int64_t run = 0;
  // Every wait still waits; the instant's only while it is ahead (read after the states: a
  // machine slow enough to start two daemons in 8 s may see it ended, and rightly).
  auto all_waiting = [&] {
    const std::string states = States(run);
    const std::string waiting_for =
        Sql("select string_agg(waiting_for, ',' order by position) from task_instances where "
            "run_id = " +
            std::to_string(run));
    if (kiln::NowUtc() < instant) {
      CHECK(states == "wait_file:waiting wait_http:waiting wait_time:waiting train:pending");
      CHECK(waiting_for == "file,http,time");
    } else {
      CHECK_THAT(states, Catch::Matches("wait_file:waiting wait_http:waiting "
                                        "wait_time:(waiting|success) train:pending"));
      CHECK_THAT(waiting_for, Catch::Matches("file,http(,time)?"));
    }
  };
  std::string deadlines;
  const std::string deadline_query =
      "select string_agg(task_id || '=' || coalesce(retry_at::text, '-'), ' ' order by position) "
      "from task_instances where task_id like 'wait%' and run_id = ";
  {
    DaemonOptions o(dir / "pipelines");
    o.on_stop = "leave";
    o.extra_config = "[pools]\ndefault = 1\n";
    Daemon first(dir, o);
    auto client = first.Client(kOperatorToken);
    run = Trigger(client, "nightly");
    WaitFor([&] { return endpoint.requests >= 2; }, "the URL to be looked at twice");
    all_waiting();
    deadlines = Sql(deadline_query + std::to_string(run));
    CHECK(deadlines.find("wait_time=-") != std::string::npos);  // no timeout: no deadline
    // The task record tells what it waits for.
    const json task = Body(client.Get("/api/v1/runs/" + std::to_string(run)))["tasks"][0];
    CHECK(task["waiting_for"] == "file");
    first.Signal(SIGKILL);
    CHECK(first.Wait() == 128 + SIGKILL);
  }
  DaemonOptions o(dir / "pipelines");
  o.on_stop = "leave";
  Daemon second(dir, o);
  const int before = endpoint.requests;
  WaitFor([&] { return endpoint.requests > before; }, "the next daemon to look at the URL");
  all_waiting();
  CHECK(Sql(deadline_query + std::to_string(run)) == deadlines);  // not restarted
  WriteFile(flag, "");
  endpoint.status = 200;
  CHECK(WaitForRunEnd(second, run) == "success");
  CHECK(EndReason(run, "wait_file") == "file '" + flag + "' is there");
  CHECK(EndReason(run, "wait_http") ==
        "GET http://127.0.0.1:" + std::to_string(endpoint.port) + "/ready answered HTTP 200");
  CHECK(EndReason(run, "wait_time") == "the time " + at + " has come");
  CHECK(kiln::NowUtc() >= kiln::ParseRfc3339(at).value());
  // No process ran for a wait: the only attempt is train's.
  CHECK(Sql("select string_agg(task_id, ',') from attempts where run_id = " +
            std::to_string(run)) == "train");
}

TEST_CASE(
    "a wait whose timeout passes fails with what it last saw, and its downstream does not run") {
  TempDir dir;
  WriteFile(dir / "pipelines/late.toml", R"([pipeline]
name = "late"
[tasks.wait_data]
kind = "wait"
for = "file"
path = "landing/{{ run.logical_date }}.csv"
every = "200ms"
timeout = "1s"
[tasks.train]
needs = ["wait_data"]
command = "echo trained"
)");
  Daemon daemon(dir, dir / "pipelines");
  auto client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, "late");
  CHECK(WaitForRunEnd(daemon, run) == "failed");
  CHECK(States(run) == "wait_data:failed train:upstream_failed");
  const std::string reason = EndReason(run, "wait_data");
  CHECK(reason.starts_with("gave up waiting: file 'landing/"));
  CHECK(
      reason.ends_with(".csv' did not appear within its timeout of 1s (last look: No such file "
                       "or directory)"));
}
