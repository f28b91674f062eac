// kind = "wait": its keys as `kiln validate` checks them, and the looks of daemon/wait_probe.h at
// real files and a real HTTP server on loopback.
#include "daemon/wait_probe.h"

#include <httplib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "config/pipeline_loader.h"
#include "daemon/as_user.h"
#include "plugins/registry.h"

namespace fs = std::filesystem;
using kiln::daemon::LookOnce;
using kiln::scheduler::WaitProbe;

namespace {

using Strings = std::vector<std::string>;

Strings Errors(const std::string& task) {
  auto r =
      kiln::config::ParsePipeline("[pipeline]\nname = \"p\"\n[tasks.w]\nkind = \"wait\"\n" + task,
                                  "p.toml", kiln::plugins::Builtins());
  Strings out;
  for (const auto& d : r.diagnostics) out.push_back(d.ToString());
  CHECK(static_cast<bool>(r.pipeline) == out.empty());
  return out;
}

}  // namespace

TEST_CASE("a wait's keys are checked when the file is loaded") {
  CHECK(Errors("for = \"file\"\npath = \"/data/{{ run.logical_date }}/_SUCCESS\"\n").empty());
  CHECK(Errors("for = \"http\"\nurl = \"https://feature-store/ready\"\nevery = \"5s\"\n"
               "timeout = \"1h\"\n")
            .empty());
  CHECK(Errors("for = \"time\"\nat = \"{{ run.data_interval_end }}\"\n").empty());
  CHECK(Errors("path = \"x\"\n") ==
        Strings{"p.toml:3:8: tasks.w: a wait needs for = \"file\", \"http\" or \"time\" (what it "
                "waits for)"});
  CHECK(Errors("for = \"s3\"\n") ==
        Strings{"p.toml:5:7: tasks.w.for: unknown wait 's3' (accepted: file, http, time)"});
  CHECK(Errors("for = \"file\"\nurl = \"http://x\"\n") ==
        Strings{"p.toml:3:8: tasks.w: for = \"file\" needs path = "
                "\"/data/{{ run.logical_date }}/_SUCCESS\"",
                "p.toml:6:7: tasks.w.url: url is for a wait with for = \"http\"; this one waits "
                "for file"});
  CHECK(Errors("for = \"http\"\nurl = \"ftp://x\"\nevery = \"10ms\"\n") ==
        Strings{"p.toml:6:7: tasks.w.url: 'ftp://x' is not an http:// or https:// URL",
                "p.toml:7:9: tasks.w.every: must be at least 100ms, got \"10ms\""});
  CHECK(Errors("for = \"time\"\nat = \"tomorrow\"\n") ==
        Strings{"p.toml:6:6: tasks.w.at: invalid time \"tomorrow\": date must be YYYY-MM-DD; "
                "expected RFC 3339, e.g. \"2026-11-29T04:10:45Z\""});
  // A secret in its URL: refused, with no hint of an env it does not have.
  CHECK(Errors("for = \"http\"\nurl = \"https://x/?t={{ secrets.t }}\"\n") ==
        Strings{"p.toml:6:7: tasks.w.url: {{ secrets.t }} is not allowed here: secrets may appear "
                "in env values, argv and notify webhooks only"});
  // A wait runs no process: the keys of one are refused.
  CHECK(Errors("for = \"time\"\nat = \"2026-01-01T00:00:00Z\"\npool = \"gpu\"\n").size() == 1);
}

TEST_CASE("a file look sees a regular file, relative to the pipeline's folder") {
  const fs::path dir = fs::temp_directory_path() / "kiln_wait_probe_test";
  fs::remove_all(dir);
  fs::create_directories(dir / "folder");
  auto file = [](std::string target, fs::path folder) {
    return LookOnce({"file", std::move(target), std::move(folder), {}});
  };
  CHECK(file("_SUCCESS", dir).ready == false);
  CHECK(file("_SUCCESS", dir).seen == "No such file or directory");
  CHECK(file((dir / "folder").string(), {}).seen == "not a regular file");
  std::ofstream(dir / "_SUCCESS") << "";
  CHECK(file("_SUCCESS", dir).ready);
  CHECK(file((dir / "_SUCCESS").string(), "/elsewhere").ready);
  fs::remove_all(dir);
}

TEST_CASE("a file look and an item file's read take the rights of the run's tasks") {
  // A path may come from a param: a daemon running as root tells nothing of a file the run's
  // tasks could not see.
  const fs::path dir = fs::temp_directory_path() / "kiln_wait_probe_private";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_all);
  std::ofstream(dir / "_SUCCESS") << "[1]";
  const std::string path = (dir / "_SUCCESS").string();
  const kiln::Identity task{"nobody", 65534, 65534, {65534}, true};
  auto look = [&](const kiln::Identity& who) { return LookOnce({"file", path, {}, who}); };
  auto readable = [&](const kiln::Identity& who) {
    bool read = false;
    const bool ran = kiln::daemon::AsUser(who, [&] { read = std::ifstream(path).good(); });
    return std::to_string(ran) + " " + std::to_string(read);
  };
  CHECK(look({}).ready);
  CHECK(readable({}) == "1 1");
  if (::geteuid() == 0) {
    CHECK(look(task).seen == "Permission denied");
    CHECK(readable(task) == "1 0");
    // The thread has its own rights again after each.
    CHECK(look({}).ready);
    CHECK(::syscall(SYS_setfsuid, static_cast<uid_t>(-1)) == 0);
    // Where the task's user may look, it sees what is there.
    fs::permissions(dir, fs::perms::owner_all | fs::perms::others_exec);
    fs::permissions(dir / "_SUCCESS", fs::perms::owner_read | fs::perms::others_read);
    CHECK(look(task).ready);
    CHECK(readable(task) == "1 1");
  } else {
    // Not root: no other user's rights can be taken, and nothing is looked at.
    CHECK(look(task).seen == "cannot look as user 65534");
    CHECK(readable(task) == "0 0");
  }
  fs::remove_all(dir);
}

TEST_CASE("an HTTP look is ready on a 2xx answer only") {
  httplib::Server server;
  std::atomic<int> status{503};
  server.Get("/ready", [&](const httplib::Request&, httplib::Response& res) {
    res.status = status;
    res.set_content("state", "text/plain");
  });
  server.Get("/moved",
             [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/ready"); });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { server.listen_after_bind(); });
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto look = [](const std::string& url) { return LookOnce({"http", url, {}, {}}); };
  CHECK(look(base + "/ready").seen == "HTTP 503");
  CHECK_FALSE(look(base + "/ready").ready);
  status = 204;
  CHECK(look(base + "/ready").ready);
  CHECK(look(base + "/ready").seen == "HTTP 204");
  CHECK(look(base + "/moved").seen == "HTTP 302");  // redirects are not followed
  CHECK(look(base + "/missing").seen == "HTTP 404");
  server.stop();
  serving.join();
  const auto refused = look(base + "/ready");
  CHECK_FALSE(refused.ready);
  CHECK(refused.seen == "cannot connect");

  // Through the prober's threads.
  kiln::daemon::WaitProber prober(2);
  std::promise<kiln::scheduler::WaitAnswer> answer;
  prober.Probe({"http", base + "/ready", {}, {}},
               [&](kiln::scheduler::WaitAnswer a) { answer.set_value(std::move(a)); });
  CHECK(answer.get_future().get().seen == "cannot connect");
}

TEST_CASE("for_each is refused on kinds that decide once per run or run no process") {
  auto errors = [](const std::string& kind, const std::string& keys) {
    std::vector<std::string> out;
    auto result = kiln::config::ParsePipeline(
        "[pipeline]\nname = \"p\"\n[tasks.t]\nkind = \"" + kind + "\"\nfor_each = [1, 2]\n" + keys,
        "p.toml", kiln::plugins::Builtins());
    for (const auto& d : result.diagnostics) {
      if (d.field == "tasks.t.for_each") out.push_back(d.message);
    }
    return out;
  };
  CHECK(errors("gate", "metrics = \"m.json\"\nmodel = \"m\"\nrequire = [\"a > 1\"]\n") ==
        std::vector<std::string>{"for_each is for tasks of kind \"shell\" or \"check\"; a task of "
                                 "kind 'gate' decides once per run"});
  CHECK(errors("wait", "for = \"time\"\nat = \"2026-01-01T00:00:00Z\"\n") ==
        std::vector<std::string>{
            "for_each runs a process per item; a task of kind 'wait' runs none"});
  CHECK(errors("check", "data = \"d{{ item }}.csv\"\n").empty());
}
