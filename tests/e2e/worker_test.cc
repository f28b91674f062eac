// Remote workers (`kiln worker`) as real processes beside a real daemon, on the test database:
// claims, logs shipped to the API, ends decided by the daemon, a worker machine that dies (the
// worker, its supervisor and its tasks killed) and pool slots across two daemons.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;
using namespace std::chrono_literals;

namespace {

// `kiln worker` on the test database, stopped with SIGTERM when the object dies.
class Worker {
 public:
  Worker(const TempDir& dir, const std::string& name, const std::string& pools, int slots,
         const std::string& lease = "30s")
      : name_(name) {
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    std::vector<std::string> env = {std::string("PATH=") + getenv("PATH"),
                                    "KILN_DATABASE_URL=" + DatabaseUrl()};
    std::vector<std::string> args = {KilnBinary(), "worker",
                                     "--pools",    pools,
                                     "--slots",    std::to_string(slots),
                                     "--name",     name,
                                     "--data-dir", (dir / name).string(),
                                     "--lease",    lease};
    std::vector<char*> argv, envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    REQUIRE(posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data()) == 0);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    out_ = fds[0];
    std::string line;
    char c;
    while (read(out_, &c, 1) == 1 && c != '\n') line += c;
    REQUIRE(line == "kiln worker: " + name + " runs pools " + pools + " with " +
                        std::to_string(slots) + " slots");
  }
  ~Worker() {
    Stop();
    if (out_ >= 0) close(out_);
  }
  int Stop() {
    if (pid_ <= 0) return code_;
    kill(pid_, SIGTERM);
    return Reap();
  }
  // The worker and its supervisor, as when their machine stops.
  void KillWithSupervisor() {
    const std::string sup = Sql("select pid from daemons where name = '" + name_ + "/supervisor'");
    REQUIRE(!sup.empty());
    kill(std::stoi(sup), SIGKILL);
    kill(pid_, SIGKILL);
    Reap();
  }
  const std::string& name() const { return name_; }

 private:
  int Reap() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return code_;
  }
  std::string name_;
  pid_t pid_ = -1;
  int out_ = -1;
  int code_ = -1;
};

DaemonOptions OnWorkers(const fs::path& pipelines, const std::string& pool, int slots,
                        const std::string& lease = "30s") {
  DaemonOptions o(pipelines);
  o.lease = lease;
  o.extra_config = "[executor]\nmode = \"both\"\nworker_pools = [\"" + pool + "\"]\n[pools]\n\"" +
                   pool + "\" = " + std::to_string(slots) + "\n";
  return o;
}

}  // namespace

TEST_CASE("a worker runs the tasks of its pool, ships their logs and the daemon decides them",
          "[e2e][worker]") {
  TempDir dir;
  fs::create_directories(dir / "pipelines");
  const std::string name = Unique("ml");
  const std::string pool = Unique("gpu");
  WriteFile(dir / "pipelines" / "ml.toml",
            "[pipeline]\nname = \"" + name +
                "\"\n[tasks.prep]\ncommand = \"echo prep\"\n[tasks.train]\nneeds = [\"prep\"]\n"
                "pool = \"" +
                pool +
                "\"\ncommand = \"echo epoch 1; echo epoch 2 >&2; echo done\"\n[tasks.eval]\n"
                "needs = [\"train\"]\ncommand = \"echo eval\"\n");
  Daemon daemon(dir, OnWorkers(dir / "pipelines", pool, 2));
  REQUIRE(daemon.port() > 0);
  Worker worker(dir, Unique("w"), pool, 2);
  auto client = daemon.Client();
  const int64_t run = Trigger(client, name);
  REQUIRE(WaitForRunEnd(daemon, run) == "success");
  const std::string id = std::to_string(run);
  // Only the pool's task went to the worker; the others ran under the daemon's supervisor.
  CHECK(Sql("select string_agg(task_id || ':' || coalesce(worker, '-') || ':' || state, ' ' "
            "order by task_id) from attempts where run_id = " +
            id) == "eval:-:success prep:-:success train:" + worker.name() + ":success");
  CHECK(Sql("select lease_owner from attempts where run_id = " + id + " and task_id = 'train'") ==
        worker.name() + "/supervisor");
  // The log, from the database, through the API and the CLI.
  auto log = client.Get(("/api/v1/runs/" + id + "/tasks/train/attempts/1/log").c_str());
  REQUIRE(log);
  CHECK(log->status == 200);
  CHECK(log->body == "epoch 1\nepoch 2\ndone\n");
  auto cli = Kiln({"logs", "--server", "http://127.0.0.1:" + std::to_string(daemon.port()),
                   "--token", kViewerToken, id, "train"});
  CHECK(cli.code == 0);
  CHECK(cli.out == "epoch 1\nepoch 2\ndone\n");
  // Its history: the claim and the end of attempt 1, nothing refused.
  CHECK(Sql("select string_agg(kind, ' ' order by id) from worker_history where run_id = " + id) ==
        "claim end");
  CHECK(Sql("select launch is null from attempts where run_id = " + id +
            " and task_id = 'train'") == "t");
  worker.Stop();
  CHECK(Sql("select count(*) from daemons where name = '" + worker.name() + "'") == "0");
}

TEST_CASE(
    "a worker's machine that stops: its attempt is lost after the lease and runs again "
    "on another worker",
    "[e2e][worker]") {
  TempDir dir;
  fs::create_directories(dir / "pipelines");
  const std::string d = dir.path().string();
  const std::string name = Unique("train");
  const std::string pool = Unique("gpu");
  WriteFile(dir / "pipelines" / "p.toml",
            "[pipeline]\nname = \"" + name + "\"\n[tasks.train]\npool = \"" + pool +
                "\"\nretries = 1\nretry_delay = \"0s\"\ncommand = \"echo $$ >> " + d +
                "/started; echo attempt $KILN_ATTEMPT; while [ ! -e " + d +
                "/go ]; do sleep 0.05; done; echo finished\"\n");
  Daemon daemon(dir, OnWorkers(dir / "pipelines", pool, 1, "3s"));
  REQUIRE(daemon.port() > 0);
  auto first = std::make_unique<Worker>(dir, Unique("w1"), pool, 1, "3s");
  auto client = daemon.Client();
  const int64_t run = Trigger(client, name);
  const std::string id = std::to_string(run);
  WaitFor([&] { return ReadFile(dir / "started").ends_with("\n"); }, "attempt 1 to start");
  const int pid = std::stoi(ReadFile(dir / "started"));
  // The machine stops: the worker, its supervisor and the task, all at once.
  first->KillWithSupervisor();
  kill(-pid, SIGKILL);
  WriteFile(dir / "go", "");
  Worker second(dir, Unique("w2"), pool, 1, "3s");
  REQUIRE(WaitForRunEnd(daemon, run) == "success");
  CHECK(Sql("select string_agg(attempt || ':' || state || ':' || worker, ' ' order by attempt) "
            "from attempts where run_id = " +
            id) == "1:failed:" + first->name() + " 2:success:" + second.name());
  CHECK_THAT(Sql("select reason from attempts where run_id = " + id + " and attempt = 1"),
             Catch::Contains("stopped renewing its lease"));
  // Claimed once each; the dead worker recorded no end.
  CHECK(Sql("select string_agg(attempt || ':' || kind || ':' || (worker = '" + first->name() +
            "'), ' ' order by id) from worker_history where run_id = " + id) ==
        "1:claim:true 2:claim:false 2:end:false");
  auto log = client.Get(("/api/v1/runs/" + id + "/tasks/train/attempts/2/log").c_str());
  REQUIRE(log);
  CHECK(log->body == "attempt 2\nfinished\n");
  // No task ever had two attempts running at once.
  CHECK(Sql("select count(*) from attempts a join attempts b on a.run_id = b.run_id and "
            "a.task_id = b.task_id and a.attempt < b.attempt where a.run_id = " +
            id + " and b.started_at < a.ended_at") == "0");
}
