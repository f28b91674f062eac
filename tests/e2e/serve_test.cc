// `kiln serve` as a real process, driven over HTTP on loopback.
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

TEST_CASE("kiln serve triggers runs over HTTP") {
  TempDir dir;
  WriteFile(dir / "pipelines/hello.toml", R"([pipeline]
name = "hello"
[params]
who = "world"
count = 1
[tasks.greet]
command = "echo hello {{ params.who }} > {{ run.dir }}/greeting"
)");
  Daemon daemon(dir, dir / "pipelines");
  httplib::Client client = daemon.Client(kOperatorToken);

  auto health = client.Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body) == json{{"status", "ok"}});

  auto created =
      client.Post("/api/v1/pipelines/hello/runs",
                  R"({"params": {"who": "kiln; rm -rf /", "count": 2}})", "application/json");
  REQUIRE(created);
  CHECK(created->status == 201);
  json body = json::parse(created->body);
  std::string id = body["id"].dump();
  CHECK(body["pipeline"] == "hello");
  CHECK(WaitForRunEnd(daemon, std::stoll(id)) == "success");
  CHECK(ReadFile(dir / ("data/runs/hello/" + id + "/greeting")) == "hello kiln; rm -rf /\n");
  CHECK(Sql("select p->>'value' from runs, jsonb_array_elements(params) p where id = " + id +
            " and p->>'name' = 'count'") == "2");

  SECTION("errors are JSON with a code and a message") {
    auto missing = client.Post("/api/v1/pipelines/nope/runs", "{}", "application/json");
    REQUIRE(missing);
    CHECK(missing->status == 404);
    CHECK(json::parse(missing->body)["error"]["message"] == "no pipeline named 'nope'");
    auto undeclared =
        client.Post("/api/v1/pipelines/hello/runs", R"({"params": {"x": 1}})", "application/json");
    REQUIRE(undeclared);
    CHECK(undeclared->status == 400);
    CHECK(json::parse(undeclared->body)["error"]["message"] ==
          "undeclared param 'x' (declared: who, count)");
    auto typed = client.Post("/api/v1/pipelines/hello/runs", R"({"params": {"count": "two"}})",
                             "application/json");
    REQUIRE(typed);
    CHECK(typed->status == 400);
    auto garbage = client.Post("/api/v1/pipelines/hello/runs", "{not json", "application/json");
    REQUIRE(garbage);
    CHECK(garbage->status == 400);
    CHECK(json::parse(garbage->body)["error"]["code"] == "invalid_json");
    // A form post from a web page is not JSON: refused before anything is created.
    auto form = client.Post("/api/v1/pipelines/hello/runs", R"({"params": {}})", "text/plain");
    REQUIRE(form);
    CHECK(form->status == 415);
    std::string deep = "{\"params\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
    auto nested = client.Post("/api/v1/pipelines/hello/runs", deep, "application/json");
    REQUIRE(nested);
    CHECK(nested->status == 400);
    CHECK(json::parse(nested->body)["error"]["message"] == "body nests deeper than 32 levels");
    auto nul = client.Post("/api/v1/pipelines/hello/runs", R"({"params": {"who": "a\u0000b"}})",
                           "application/json");
    REQUIRE(nul);
    CHECK(nul->status == 400);
    auto bad_name = client.Post("/api/v1/pipelines/%FF/runs", "{}", "application/json");
    REQUIRE(bad_name);
    CHECK(bad_name->status == 400);
    CHECK(json::parse(bad_name->body)["error"]["code"] == "invalid_argument");
    // The daemon is still serving.
    auto again = client.Get("/healthz");
    REQUIRE(again);
    CHECK(again->status == 200);
  }
  CHECK(daemon.Stop() == 0);
}

TEST_CASE("stopping the daemon cancels its active runs and leaves no task running") {
  TempDir dir;
  WriteFile(dir / "pipelines/slow.toml", R"([pipeline]
name = "slow"
[tasks.wait]
command = "echo $$ > {{ run.dir }}/pid; touch {{ run.dir }}/started; exec sleep 60"
[tasks.after]
needs = ["wait"]
command = "true"
)");
  Daemon daemon(dir, dir / "pipelines");
  httplib::Client client = daemon.Client(kOperatorToken);
  auto created = client.Post("/api/v1/pipelines/slow/runs", "{}", "application/json");
  REQUIRE(created);
  REQUIRE(created->status == 201);
  std::string id = json::parse(created->body)["id"].dump();
  fs::path run_dir = dir / ("data/runs/slow/" + id);
  // The task has started once its marker exists (written before it sleeps).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!fs::exists(run_dir / "started") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(fs::exists(run_dir / "started"));
  int pid = std::stoi(ReadFile(run_dir / "pid"));
  CHECK(daemon.Stop() == 0);
  CHECK_FALSE(ProcessAlive(pid));
  CHECK(Sql("select state from runs where id = " + id) == "cancelled");
  CHECK(Sql("select string_agg(task_id || ':' || state, ',' order by task_id) from "
            "task_instances where run_id = " +
            id) == "after:cancelled,wait:cancelled");
  CHECK(Sql("select state || ':' || reason from attempts where run_id = " + id) ==
        "cancelled:cancelled");
}
