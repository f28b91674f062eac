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

#include "harness.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

// A daemon on a free port; stopped with SIGTERM when the object dies.
class Daemon {
 public:
  Daemon(const TempDir& dir, const fs::path& pipelines) {
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    std::string url = "KILN_DATABASE_URL=" + DatabaseUrl();
    std::string path = std::string("PATH=") + getenv("PATH");
    std::vector<std::string> args = {
        KilnBinary(), "serve",       "--pipelines", pipelines.string(),
        "--listen",   "127.0.0.1:0", "--data-dir",  (dir / "data").string()};
    std::vector<char*> argv, envp = {url.data(), path.data(), nullptr};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    REQUIRE(posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data()) == 0);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    // The daemon prints its URL once it listens: read up to that line.
    std::string line;
    char c;
    while (read(fds[0], &c, 1) == 1 && c != '\n') line += c;
    close(fds[0]);
    auto at = line.find("http://127.0.0.1:");
    REQUIRE(at != std::string::npos);
    port_ = std::stoi(line.substr(at + 17));
  }
  ~Daemon() { Stop(); }
  int Stop() {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  int exit_code_ = -1;
};

// Waits until the run has ended (the run's row is the event we wait for), at most 60 s.
std::string WaitForRun(const std::string& id) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string state = Sql("select state from runs where id = " + id);
    if (state != "queued" && state != "running") return state;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return "timeout";
}

}  // namespace

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
  httplib::Client client("127.0.0.1", daemon.port());

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
  CHECK(WaitForRun(id) == "success");
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
    CHECK(bad_name->status == 404);
    CHECK(json::parse(bad_name->body)["error"]["code"] == "not_found");
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
  httplib::Client client("127.0.0.1", daemon.port());
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
