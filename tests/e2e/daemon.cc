#include "daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "common/sha256.h"

namespace kiln::e2e {

namespace fs = std::filesystem;
using nlohmann::json;

Daemon::Daemon(const TempDir& dir, DaemonOptions options) {
  data_dir_ = dir / "data";
  std::string config = "[daemon]\non_stop = \"" + options.on_stop + "\"\nlease = \"" +
                       options.lease + "\"\n" + options.extra_config;
  if (options.tokens) {
    for (auto [name, role, token] : {std::tuple{"viewer", "viewer", kViewerToken},
                                     std::tuple{"operator", "operator", kOperatorToken},
                                     std::tuple{"admin", "admin", kAdminToken}}) {
      config += std::string("\n[[auth.tokens]]\nname = \"") + name + "\"\nrole = \"" + role +
                "\"\nsha256 = \"" + Sha256Hex(token) + "\"\n";
    }
  }
  WriteFile(dir / "kiln.toml", config);
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  std::vector<std::string> env = {std::string("PATH=") + getenv("PATH")};
  if (!options.embedded) {
    env.push_back("KILN_DATABASE_URL=" +
                  (options.database_url.empty() ? DatabaseUrl() : options.database_url));
  }
  for (const auto& [name, value] : options.env) env.push_back(name + "=" + value);
  std::vector<std::string> args = {KilnBinary(),  "serve",
                                   "--config",    (dir / "kiln.toml").string(),
                                   "--pipelines", options.pipelines.string(),
                                   "--listen",    options.listen,
                                   "--data-dir",  data_dir_.string()};
  std::vector<char*> argv, envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  REQUIRE(posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data()) == 0);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  out_ = fds[0];
  // The daemon prints its URL once it listens.
  first_line_ = ReadLine();
  auto at = first_line_.find("http://127.0.0.1:");
  if (at != std::string::npos) port_ = std::stoi(first_line_.substr(at + 17));
}

Daemon::~Daemon() {
  Stop();
  if (out_ >= 0) close(out_);
}

std::string Daemon::ReadLine() {
  std::string line;
  char c;
  while (read(out_, &c, 1) == 1 && c != '\n') line += c;
  return line;
}

void Daemon::Signal(int signal) {
  if (pid_ <= 0) return;
  kill(pid_, signal);
  if (signal == SIGKILL) Wait();
}

int Daemon::Wait() {
  if (pid_ <= 0) return exit_code_;
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

int Daemon::Stop() {
  if (pid_ <= 0) return exit_code_;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

httplib::Client Daemon::Client(const std::string& token) const {
  httplib::Client client("127.0.0.1", port_);
  if (!token.empty()) client.set_bearer_token_auth(token.c_str());
  client.set_read_timeout(120, 0);
  return client;
}

std::vector<json> ReadEvents(const Daemon& daemon, const std::string& query,
                             const std::function<bool(const json&)>& done, int64_t after) {
  httplib::Client client = daemon.Client(kViewerToken);
  std::vector<json> events;
  std::string pending;
  bool finished = false;
  // Keep-alive comments keep the connection busy: the deadline is ours.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::string path =
      "/api/v1/events?after=" + std::to_string(after) + (query.empty() ? "" : "&" + query);
  auto result = client.Get(path.c_str(), [&](const char* data, size_t size) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    pending.append(data, size);
    size_t end;
    // One event per blank-line-terminated block; its JSON is on the "data:" line.
    while ((end = pending.find("\n\n")) != std::string::npos) {
      std::string block = pending.substr(0, end);
      pending.erase(0, end + 2);
      size_t at = block.find("data: ");
      if (at == std::string::npos) continue;
      size_t line_end = block.find('\n', at);
      events.push_back(json::parse(block.substr(at + 6, line_end - at - 6)));
      if (done(events.back())) {
        finished = true;
        return false;
      }
    }
    return true;
  });
  INFO("events read: " << json(events).dump());
  REQUIRE(finished);
  return events;
}

std::string WaitForRunEnd(const Daemon& daemon, int64_t run, int64_t after) {
  auto events = ReadEvents(
      daemon, "run=" + std::to_string(run),
      [](const json& e) {
        if (e["kind"] != "run_state") return false;
        std::string to = e["to"];
        return to == "success" || to == "failed" || to == "cancelled";
      },
      after);
  return events.back()["to"];
}

int64_t Trigger(httplib::Client& client, const std::string& pipeline, const std::string& body) {
  auto res = client.Post(("/api/v1/pipelines/" + pipeline + "/runs").c_str(), body, kJson);
  REQUIRE(res);
  INFO(res->body);
  REQUIRE(res->status == 201);
  return json::parse(res->body)["id"].get<int64_t>();
}

int64_t LastEventId() {
  std::string id = Sql("select coalesce(max(id), 0) from events");
  return std::stoll(id);
}

json Body(const httplib::Result& result) {
  REQUIRE(result);
  INFO(result->body);
  return json::parse(result->body);
}

json GetJson(httplib::Client& client, const std::string& path, int status) {
  auto res = client.Get(path);
  REQUIRE(res);
  INFO(path << " -> " << res->body);
  REQUIRE(res->status == status);
  return json::parse(res->body);
}

}  // namespace kiln::e2e
