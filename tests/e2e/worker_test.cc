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
#include <sstream>

#include "daemon.h"
#include "harness.h"
#include "netns.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;
using namespace std::chrono_literals;

namespace {

// `kiln worker` on the test database, stopped with SIGTERM when the object dies.
class Worker {
 public:
  // `prefix` runs it elsewhere (Netns::Prefix), with the database at `url`.
  Worker(const TempDir& dir, const std::string& name, const std::string& pools, int slots,
         const std::string& lease = "30s", std::vector<std::string> prefix = {},
         const std::string& url = "", const std::string& crash_at = "")
      : name_(name) {
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    std::vector<std::string> env = {std::string("PATH=") + getenv("PATH"),
                                    "KILN_DATABASE_URL=" + (url.empty() ? DatabaseUrl() : url)};
    if (!crash_at.empty()) env.push_back("KILN_CRASH_AT=" + crash_at);
    std::vector<std::string> args = std::move(prefix);
    for (std::string a :
         {KilnBinary(), std::string("worker"), std::string("--pools"), pools,
          std::string("--slots"), std::to_string(slots), std::string("--name"), name,
          std::string("--data-dir"), (dir / name).string(), std::string("--lease"), lease}) {
      args.push_back(std::move(a));
    }
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
    // The worker first: one that outlived its supervisor for an instant would start another on
    // its folder, which would take the attempts over and end them itself (not what a machine
    // that stops does).
    kill(pid_, SIGKILL);
    Reap();
    kill(std::stoi(sup), SIGKILL);
  }
  const std::string& name() const { return name_; }
  int pid() const { return pid_; }
  int SupervisorPid() const {
    const std::string sup = Sql("select pid from daemons where name = '" + name_ + "/supervisor'");
    REQUIRE(!sup.empty());
    return std::stoi(sup);
  }
  // Waits for it to end by itself (a crash point); its exit code.
  int Wait() { return Reap(); }

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
    "a worker's task that prints only after a while has no log file until then, and its "
    "log is shipped live once it prints",
    "[e2e][worker]") {
  TempDir dir;
  fs::create_directories(dir / "pipelines");
  const std::string d = dir.path().string();
  const std::string name = Unique("late");
  const std::string pool = Unique("gpu");
  WriteFile(dir / "pipelines" / "p.toml",
            "[pipeline]\nname = \"" + name + "\"\n[tasks.train]\npool = \"" + pool +
                "\"\ncommand = \"touch " + d + "/silent; while [ ! -e " + d +
                "/speak ]; do sleep 0.05; done; echo epoch 1; while [ ! -e " + d +
                "/go ]; do sleep 0.05; done; echo done\"\n");
  Daemon daemon(dir, OnWorkers(dir / "pipelines", pool, 1));
  REQUIRE(daemon.port() > 0);
  Worker worker(dir, Unique("w"), pool, 1);
  auto client = daemon.Client();
  const int64_t run = Trigger(client, name);
  const std::string id = std::to_string(run);
  WaitFor([&] { return fs::exists(dir / "silent"); }, "the task to start");
  // Silent so far: its folder is there, its file is not.
  const fs::path folder = dir / worker.name() / "logs" / id;
  CHECK(fs::is_directory(folder));
  // Not listable by the machine's other users, as the daemon's logs.
  CHECK((fs::status(folder).permissions() & fs::perms::all) ==
        (fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec));
  CHECK((fs::status(folder.parent_path()).permissions() & fs::perms::others_all) ==
        fs::perms::none);
  CHECK_FALSE(fs::exists(folder / "train.1.log"));
  const std::string url = "/api/v1/runs/" + id + "/tasks/train/attempts/1/log";
  auto log = client.Get(url.c_str());
  REQUIRE(log);
  CHECK(log->body.empty());
  // Its first line makes the file; the folder's watch sees it, and it is shipped while it runs.
  WriteFile(dir / "speak", "");
  WaitFor(
      [&] {
        auto got = client.Get(url.c_str());
        return got && got->body == "epoch 1\n";
      },
      "the first line's shipping");
  CHECK(Sql("select state from attempts where run_id = " + id) == "running");
  WriteFile(dir / "go", "");
  REQUIRE(WaitForRunEnd(daemon, run) == "success");
  log = client.Get(url.c_str());
  REQUIRE(log);
  CHECK(log->body == "epoch 1\ndone\n");
  // Whole in the database: the file on the worker goes (after the end is recorded).
  WaitFor([&] { return !fs::exists(folder / "train.1.log"); }, "the log file's removal");
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

TEST_CASE(
    "a worker killed with its supervisor, its machine up: the supervisor's guard stops the task, "
    "which never runs beside its retry",
    "[e2e][worker]") {
  TempDir dir;
  fs::create_directories(dir / "pipelines");
  const std::string d = dir.path().string();
  const std::string name = Unique("guarded");
  const std::string pool = Unique("gpu");
  // The task, a process of its group in the background and one waiting in the foreground.
  WriteFile(dir / "pipelines" / "p.toml",
            "[pipeline]\nname = \"" + name + "\"\n[tasks.train]\npool = \"" + pool +
                "\"\nretries = 1\nretry_delay = \"0s\"\ncommand = \"echo attempt $KILN_ATTEMPT; "
                "if [ $KILN_ATTEMPT = 1 ]; then sleep 600 & echo $$ $! > " +
                d + "/first; wait; fi; echo finished\"\n");
  Daemon daemon(dir, OnWorkers(dir / "pipelines", pool, 1, "3s"));
  REQUIRE(daemon.port() > 0);
  auto first = std::make_unique<Worker>(dir, Unique("w1"), pool, 1, "3s");
  auto client = daemon.Client();
  const int64_t run = Trigger(client, name);
  const std::string id = std::to_string(run);
  WaitFor([&] { return ReadFile(dir / "first").ends_with("\n"); }, "attempt 1 to start");
  std::istringstream pids(ReadFile(dir / "first"));
  int task = 0, background = 0;
  pids >> task >> background;
  REQUIRE(ProcessAlive(task));
  REQUIRE(ProcessAlive(background));
  const fs::path log = dir / first->name() / "supervisor" / "supervisor.log";
  const std::string supervisor = std::to_string(first->SupervisorPid());
  first->KillWithSupervisor();
  // Stopped by the guard the moment the supervisor is gone, not left running until a
  // supervisor starts again on that folder (none does here).
  WaitFor([&] { return !ProcessAlive(task) && !ProcessAlive(background); },
          "the task's processes to be stopped");
  WaitFor([&] { return ReadFile(log).find("kiln guard: ") != std::string::npos; },
          "the guard's line in the supervisor's log");
  CHECK_THAT(ReadFile(log), Catch::Contains("kiln guard: the supervisor of " + first->name() +
                                            " (pid " + supervisor +
                                            ") is gone; stopped the processes of its 1 running "
                                            "task(s)"));
  // The guard too is gone once its work is done.
  WaitFor([&] { return ProcessesMentioning(first->name()).empty(); }, "the guard to end");
  // Lost after the lease, as when the machine stops; the retry runs alone on another worker.
  Worker second(dir, Unique("w2"), pool, 1, "3s");
  REQUIRE(WaitForRunEnd(daemon, run) == "success");
  CHECK(Sql("select string_agg(attempt || ':' || state || ':' || worker, ' ' order by attempt) "
            "from attempts where run_id = " +
            id) == "1:failed:" + first->name() + " 2:success:" + second.name());
  auto got = client.Get(("/api/v1/runs/" + id + "/tasks/train/attempts/2/log").c_str());
  REQUIRE(got);
  CHECK(got->body == "attempt 2\nfinished\n");
}

TEST_CASE("cancelling a run stops its task on the worker at once", "[e2e][worker]") {
  TempDir dir;
  fs::create_directories(dir / "pipelines");
  const std::string d = dir.path().string();
  const std::string name = Unique("long");
  const std::string pool = Unique("gpu");
  WriteFile(dir / "pipelines" / "p.toml",
            "[pipeline]\nname = \"" + name + "\"\n[tasks.train]\npool = \"" + pool +
                "\"\ncommand = \"echo $$ > " + d + "/started; exec sleep 600\"\n");
  Daemon daemon(dir, OnWorkers(dir / "pipelines", pool, 1));
  REQUIRE(daemon.port() > 0);
  Worker worker(dir, Unique("w"), pool, 1);
  auto client = daemon.Client();
  const int64_t run = Trigger(client, name);
  const std::string id = std::to_string(run);
  WaitFor([&] { return ReadFile(dir / "started").ends_with("\n"); }, "the task to start");
  const int pid = std::stoi(ReadFile(dir / "started"));
  auto cancelled = client.Post(("/api/v1/runs/" + id + "/cancel").c_str(), "", kJson);
  REQUIRE(cancelled);
  CHECK(cancelled->status == 202);
  REQUIRE(WaitForRunEnd(daemon, run) == "cancelled");
  CHECK_FALSE(ProcessAlive(pid));
  CHECK(Sql("select state || ':' || worker from attempts where run_id = " + id) ==
        "cancelled:" + worker.name());
  CHECK(Sql("select string_agg(kind, ' ' order by id) from worker_history where run_id = " + id) ==
        "claim end");
}

TEST_CASE("two daemons and two workers share a pool's slots", "[e2e][worker]") {
  TempDir a_dir, b_dir;
  fs::create_directories(a_dir / "pipelines");
  const std::string name = Unique("wide");
  const std::string pool = Unique("gpu");
  std::string text = "[pipeline]\nname = \"" + name + "\"\n";
  for (int i = 0; i < 6; ++i) {
    text +=
        "[tasks.t" + std::to_string(i) + "]\npool = \"" + pool + "\"\ncommand = \"sleep 0.3\"\n";
  }
  WriteFile(a_dir / "pipelines" / "p.toml", text);
  // Each daemon alone would run 2 at once: together they still may not exceed 2.
  Daemon a(a_dir, OnWorkers(a_dir / "pipelines", pool, 2));
  Daemon b(b_dir, OnWorkers(a_dir / "pipelines", pool, 2));
  REQUIRE(a.port() > 0);
  REQUIRE(b.port() > 0);
  Worker w1(a_dir, Unique("w1"), pool, 4);
  Worker w2(b_dir, Unique("w2"), pool, 4);
  auto ca = a.Client();
  auto cb = b.Client();
  const int64_t ra = Trigger(ca, name);
  const int64_t rb = Trigger(cb, name);
  REQUIRE(WaitForRunEnd(a, ra) == "success");
  REQUIRE(WaitForRunEnd(b, rb) == "success");
  // From its claim to its end, an attempt holds a slot: never more than 2 at any claim.
  const std::string most = Sql(
      "select max(n) from (select (select count(*) from attempts b where b.pool = '" + pool +
      "' and b.claimed_at <= a.claimed_at and b.ended_at > a.claimed_at) n from attempts a where "
      "a.pool = '" +
      pool + "') x");
  CHECK(most == "2");
  CHECK(Sql("select count(*) from attempts where pool = '" + pool + "' and worker is not null") ==
        "12");
  CHECK(Sql("select count(*) from worker_history h join attempts a using (run_id, task_id, "
            "attempt) where a.pool = '" +
            pool + "' and h.kind = 'claim'") == "12");
}

TEST_CASE("a worker on another host whose link is cut fences itself, and its task runs elsewhere",
          "[e2e][worker][netns]") {
  REQUIRE(geteuid() == 0);  // network namespaces; CI runs as root
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
  Netns host;
  Relay relay(host.host_ip(), DatabaseSocket());
  // The remote worker reaches the database over TCP through its link only.
  auto remote = std::make_unique<Worker>(dir, Unique("remote"), pool, 1, "3s", host.Prefix(),
                                         TcpDatabaseUrl(host.host_ip(), relay.port()));
  auto client = daemon.Client();
  const int64_t run = Trigger(client, name);
  const std::string id = std::to_string(run);
  WaitFor([&] { return ReadFile(dir / "started").ends_with("\n"); }, "attempt 1 to start");
  const int pid = std::stoi(ReadFile(dir / "started"));
  // Its log comes over the wire while it runs.
  WaitFor(
      [&] {
        auto log = client.Get(("/api/v1/runs/" + id + "/tasks/train/attempts/1/log").c_str());
        return log && log->body == "attempt 1\n";
      },
      "attempt 1's log");
  host.Down();
  // Its supervisor cannot renew: it kills the task itself (nothing else could reach it).
  WaitFor([&] { return !ProcessAlive(pid); }, "the cut-off worker to stop its task");
  // The daemon declares the attempt lost once the lease expired; another worker runs it.
  Worker local(dir, Unique("local"), pool, 1, "3s");
  WriteFile(dir / "go", "");
  REQUIRE(WaitForRunEnd(daemon, run) == "success");
  CHECK(Sql("select string_agg(attempt || ':' || state || ':' || worker, ' ' order by attempt) "
            "from attempts where run_id = " +
            id) == "1:failed:" + remote->name() + " 2:success:" + local.name());
  // Back online, the cut-off worker reports attempt 1's end: refused, it is no longer its own.
  host.Up();
  WaitFor(
      [&] {
        return Sql("select count(*) from worker_history where run_id = " + id +
                   " and attempt = 1 and kind = 'refused'") == "1";
      },
      "the late end to be refused", std::chrono::seconds(90));
  CHECK(Sql("select string_agg(attempt || ':' || kind || ':' || (worker = '" + remote->name() +
            "'), ' ' order by id) from worker_history where run_id = " + id) ==
        "1:claim:true 2:claim:false 2:end:false 1:refused:true");
  CHECK(Sql("select state from attempts where run_id = " + id + " and attempt = 1") == "failed");
  remote->Stop();
}

TEST_CASE("a worker killed between a claim and its start starts the attempt when it is back",
          "[e2e][worker]") {
  TempDir dir;
  fs::create_directories(dir / "pipelines");
  const std::string d = dir.path().string();
  const std::string name = Unique("once");
  const std::string pool = Unique("gpu");
  WriteFile(dir / "pipelines" / "p.toml", "[pipeline]\nname = \"" + name +
                                              "\"\n[tasks.train]\npool = \"" + pool +
                                              "\"\ncommand = \"echo ran >> " + d + "/ran\"\n");
  Daemon daemon(dir, OnWorkers(dir / "pipelines", pool, 1));
  REQUIRE(daemon.port() > 0);
  const std::string worker = Unique("w");
  Worker first(dir, worker, pool, 1, "30s", {}, "", "worker.claimed");
  auto client = daemon.Client();
  const int64_t run = Trigger(client, name);
  const std::string id = std::to_string(run);
  CHECK(first.Wait() == 128 + SIGKILL);
  // Claimed (its supervisor's), never started.
  CHECK(Sql("select lease_owner || ':' || state from attempts where run_id = " + id) ==
        worker + "/supervisor:running");
  CHECK_FALSE(fs::exists(dir / "ran"));
  // Back on the same folder: what it holds and does not run is started, once.
  Worker again(dir, worker, pool, 1);
  REQUIRE(WaitForRunEnd(daemon, run) == "success");
  CHECK(ReadFile(dir / "ran") == "ran\n");
  CHECK(Sql("select string_agg(attempt || ':' || state, ' ') from attempts where run_id = " + id) ==
        "1:success");
  CHECK(Sql("select string_agg(kind, ' ' order by id) from worker_history where run_id = " + id) ==
        "claim end");
}

TEST_CASE("a daemon restarted while its task runs on a worker adopts it, and a mark stops it there",
          "[e2e][worker]") {
  TempDir dir;
  fs::create_directories(dir / "pipelines");
  const std::string d = dir.path().string();
  const std::string name = Unique("adopt");
  const std::string pool = Unique("gpu");
  WriteFile(dir / "pipelines" / "p.toml", "[pipeline]\nname = \"" + name +
                                              "\"\n[tasks.train]\npool = \"" + pool +
                                              "\"\ncommand = \"echo $$ > " + d +
                                              "/started; exec sleep 600\"\n[tasks.after]\n"
                                              "needs = [\"train\"]\ncommand = \"echo after > " +
                                              d + "/after\"\n");
  Worker worker(dir, Unique("w"), pool, 1);
  int64_t run = 0;
  {
    Daemon first(dir, OnWorkers(dir / "pipelines", pool, 1));
    auto client = first.Client();
    run = Trigger(client, name);
    WaitFor([&] { return ReadFile(dir / "started").ends_with("\n"); }, "train to start");
    first.Signal(SIGKILL);
  }
  const int pid = std::stoi(ReadFile(dir / "started"));
  const std::string id = std::to_string(run);
  Daemon second(dir, OnWorkers(dir / "pipelines", pool, 1));
  REQUIRE(second.port() > 0);
  auto client = second.Client();
  auto marked = client.Post(("/api/v1/runs/" + id + "/tasks/train/mark").c_str(),
                            R"({"state": "success", "reason": "good enough"})", kJson);
  REQUIRE(marked);
  CHECK(marked->status == 200);
  REQUIRE(WaitForRunEnd(second, run) == "success");
  CHECK_FALSE(ProcessAlive(pid));
  CHECK(ReadFile(dir / "after") == "after\n");
  CHECK(Sql("select string_agg(task_id || ':' || state, ' ' order by task_id) from "
            "task_instances where run_id = " +
            id) == "after:success train:success");
  CHECK(Sql("select string_agg(kind, ' ' order by id) from worker_history where run_id = " + id +
            " and task_id = 'train'") == "claim end");
}

TEST_CASE(
    "a worker frozen past its lease is fenced when it wakes: its task is stopped, its end "
    "refused",
    "[e2e][worker]") {
  TempDir dir;
  fs::create_directories(dir / "pipelines");
  const std::string d = dir.path().string();
  const std::string name = Unique("frozen");
  const std::string pool = Unique("gpu");
  // Attempt 1 runs until stopped; attempt 2 ends at once.
  WriteFile(dir / "pipelines" / "p.toml",
            "[pipeline]\nname = \"" + name + "\"\n[tasks.train]\npool = \"" + pool +
                "\"\nretries = 1\nretry_delay = \"0s\"\ncommand = \"if [ $KILN_ATTEMPT = 1 ]; "
                "then echo $$ > " +
                d + "/started; exec sleep 600; fi; echo second\"\n");
  Daemon daemon(dir, OnWorkers(dir / "pipelines", pool, 1, "3s"));
  REQUIRE(daemon.port() > 0);
  Worker first(dir, Unique("w1"), pool, 1, "3s");
  auto client = daemon.Client();
  const int64_t run = Trigger(client, name);
  const std::string id = std::to_string(run);
  WaitFor([&] { return ReadFile(dir / "started").ends_with("\n"); }, "attempt 1 to start");
  const int task = std::stoi(ReadFile(dir / "started"));
  // The whole machine freezes: the worker, its supervisor and the task.
  const std::vector<int> frozen = {first.pid(), first.SupervisorPid(), -task};
  for (int pid : frozen) kill(pid, SIGSTOP);
  Worker second(dir, Unique("w2"), pool, 1, "3s");
  REQUIRE(WaitForRunEnd(daemon, run) == "success");
  CHECK(Sql("select string_agg(attempt || ':' || state || ':' || worker, ' ' order by attempt) "
            "from attempts where run_id = " +
            id) == "1:failed:" + first.name() + " 2:success:" + second.name());
  // It wakes: its supervisor finds its lease gone by and stops the task itself; the end it
  // reports is refused.
  for (int pid : frozen) kill(pid, SIGCONT);
  WaitFor([&] { return !ProcessAlive(task); }, "the woken worker to stop attempt 1");
  WaitFor(
      [&] {
        return Sql("select count(*) from worker_history where run_id = " + id +
                   " and attempt = 1 and kind = 'refused'") == "1";
      },
      "attempt 1's late end to be refused");
  CHECK(Sql("select state from attempts where run_id = " + id + " and attempt = 1") == "failed");
  CHECK(Sql("select string_agg(attempt || ':' || kind, ' ' order by id) from worker_history "
            "where run_id = " +
            id) == "1:claim 2:claim 2:end 1:refused");
}

TEST_CASE(
    "three daemons and four workers on one pool: each attempt claimed once, the pool never "
    "over its slots, every run ends",
    "[e2e][worker]") {
  TempDir a_dir, b_dir, c_dir;
  fs::create_directories(a_dir / "pipelines");
  const std::string name = Unique("many");
  const std::string pool = Unique("gpu");
  std::string text = "[pipeline]\nname = \"" + name + "\"\n";
  for (int i = 0; i < 40; ++i) {
    text += "[tasks.t" + std::to_string(i) + "]\npool = \"" + pool + "\"\ncommand = \"true\"\n";
  }
  WriteFile(a_dir / "pipelines" / "p.toml", text);
  std::vector<std::unique_ptr<Daemon>> daemons;
  for (const TempDir* dir : {&a_dir, &b_dir, &c_dir}) {
    daemons.push_back(std::make_unique<Daemon>(*dir, OnWorkers(a_dir / "pipelines", pool, 3)));
    REQUIRE(daemons.back()->port() > 0);
  }
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < 4; ++i) {
    workers.push_back(std::make_unique<Worker>(a_dir, Unique("w"), pool, 2));
  }
  std::vector<int64_t> runs;
  for (auto& d : daemons) {
    auto client = d->Client();
    runs.push_back(Trigger(client, name));
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    REQUIRE(WaitForRunEnd(*daemons[i], runs[i]) == "success");
  }
  const std::string p = "'" + pool + "'";
  CHECK(Sql("select count(*) from attempts where pool = " + p) == "120");
  // No attempt claimed twice, none ended twice, none refused.
  CHECK(Sql("select count(*) from (select 1 from worker_history h join attempts a using (run_id, "
            "task_id, attempt) where a.pool = " +
            p + " group by h.run_id, h.task_id, h.attempt, h.kind having count(*) > 1) x") == "0");
  CHECK(Sql("select count(*) from worker_history h join attempts a using (run_id, task_id, "
            "attempt) where a.pool = " +
            p + " and h.kind = 'refused'") == "0");
  // The pool's 3 slots held at every claim (from a claim to the daemon's end), across everyone.
  CHECK(std::stoi(
            Sql("select max(n) from (select (select count(*) from attempts b where b.pool = " + p +
                " and b.claimed_at <= a.claimed_at and b.ended_at > a.claimed_at) n "
                "from attempts a where a.pool = " +
                p + ") x")) <= 3);
  // Each worker never held more than its 2 slots: at each of its claims, what it had claimed
  // minus the ends it had recorded (its own rows are written in order by one connection).
  CHECK(std::stoi(Sql("select max(n) from (select (select count(*) from worker_history c where "
                      "c.worker = h.worker and c.kind = 'claim' and c.id <= h.id) - (select "
                      "count(*) from worker_history e where e.worker = h.worker and e.kind in "
                      "('end', 'refused') and e.id < h.id) n from worker_history h join attempts "
                      "a using (run_id, task_id, attempt) where h.kind = 'claim' and a.pool = " +
                      p + ") x")) <= 2);
}

TEST_CASE("PostgreSQL restarted while workers run a pool's tasks: every run ends, nothing twice",
          "[e2e][worker]") {
  TempDir dir;
  // A server of its own, stopped and started again in the middle of the load.
  char pg_tmpl[] = "/tmp/kpg-XXXXXX";
  REQUIRE(mkdtemp(pg_tmpl) != nullptr);
  const std::string pg = pg_tmpl;
  const std::string script = (SourceDir() / "tests/support/pg_cluster.sh").string();
  REQUIRE(Exec({script, "start", pg}).code == 0);
  struct Cleanup {
    std::string script, pg;
    ~Cleanup() { Exec({script, "stop", pg}); }
  } cleanup{script, pg};
  const std::string url = "postgresql:///kiln_test?host=" + pg + "&user=kiln";
  fs::create_directories(dir / "pipelines");
  const std::string name = Unique("pgrestart");
  const std::string pool = Unique("gpu");
  // No retries: an attempt lost to the restart would fail its run.
  std::string text = "[pipeline]\nname = \"" + name + "\"\n";
  for (int i = 0; i < 12; ++i) {
    text += "[tasks.t" + std::to_string(i) + "]\npool = \"" + pool +
            "\"\ncommand = \"sleep 0.2\"\nretries = 0\n";
  }
  WriteFile(dir / "pipelines" / "p.toml", text);
  DaemonOptions o = OnWorkers(dir / "pipelines", pool, 4);
  o.database_url = url;
  Daemon daemon(dir, o);
  Worker w1(dir, Unique("w"), pool, 2, "30s", {}, url);
  Worker w2(dir, Unique("w"), pool, 2, "30s", {}, url);
  auto client = daemon.Client();
  std::vector<int64_t> runs;
  for (int i = 0; i < 3; ++i) runs.push_back(Trigger(client, name));
  WaitFor(
      [&] {
        return std::stoi(SqlAt(url, "select count(*) from attempts where state = 'success'")) >= 6;
      },
      "six tasks to end on the workers");
  REQUIRE(Exec({script, "halt", pg}).code == 0);
  REQUIRE(Exec({script, "resume", pg}).code == 0);
  for (int64_t run : runs) CHECK(WaitForRunEnd(daemon, run) == "success");
  const std::string p = "'" + pool + "'";
  // Each task ran once, on a worker, and each claim and end was recorded once.
  CHECK(SqlAt(url,
              "select count(*), count(*) filter (where state = 'success' and worker is not "
              "null and attempt = 1) from attempts where pool = " +
                  p) == "36|36");
  CHECK(SqlAt(url,
              "select count(*) from (select 1 from worker_history h where h.kind in "
              "('claim', 'end') group by h.run_id, h.task_id, h.attempt, h.kind having "
              "count(*) > 1) x") == "0");
  CHECK(SqlAt(url, "select count(*) from worker_history where kind = 'refused'") == "0");
  CHECK(w1.Stop() == 0);
  CHECK(w2.Stop() == 0);
  CHECK(daemon.Stop() == 0);
}

TEST_CASE(
    "the ML example with its training on a worker in another namespace: logs in the CLI, the "
    "worker's machine stops, training runs again on another worker",
    "[e2e][worker][netns]") {
  REQUIRE(geteuid() == 0);  // network namespaces; CI runs as root
  TempDir dir;
  fs::copy(SourceDir() / "examples/ml-lifecycle", dir / "pipelines", fs::copy_options::recursive);
  fs::remove(dir / "pipelines/monitor.toml");
  fs::remove(dir / "pipelines/sweep.toml");
  const std::string d = dir.path().string();
  // The interpreter, through the example's `python` param: the first attempt of the training says
  // where it is and goes on until its machine stops; everything else is Python as usual.
  WriteFile(dir / "python",
            "#!/bin/sh\ncase \" $* \" in *\" train.py \"*)\n  if [ \"$KILN_ATTEMPT\" = 1 ]; then\n"
            "    echo \"training, attempt 1\"; echo $$ > " +
                d +
                "/train.pid\n    while :; do sleep 0.05; done\n  fi;;\nesac\n"
                "exec /usr/bin/python3 \"$@\"\n");
  fs::permissions(dir / "python", fs::perms::owner_all | fs::perms::group_read |
                                      fs::perms::group_exec | fs::perms::others_read |
                                      fs::perms::others_exec);
  // Every task goes to workers; a worker's lease of 3 s, so that a stopped machine counts soon.
  DaemonOptions o(dir / "pipelines");
  o.lease = "3s";
  o.extra_config = "[executor]\nmode = \"workers\"\n";
  Daemon daemon(dir, o);
  Netns host;
  Relay relay(host.host_ip(), DatabaseSocket());
  auto remote = std::make_unique<Worker>(dir, Unique("remote"), "default", 1, "3s", host.Prefix(),
                                         TcpDatabaseUrl(host.host_ip(), relay.port()));
  auto client = daemon.Client();
  const int64_t run =
      Trigger(client, "ml-lifecycle", R"({"params": {"python": ")" + d + R"(/python"}})");
  const std::string id = std::to_string(run);
  WaitFor([&] { return ReadFile(dir / "train.pid").ends_with("\n"); }, "training to start");
  CHECK(Sql("select worker from attempts where run_id = " + id + " and task_id = 'train'") ==
        remote->name());
  // Its log, live, through the command line.
  const std::map<std::string, std::string> env = {
      {"KILN_SERVER", "http://127.0.0.1:" + std::to_string(daemon.port())},
      {"KILN_TOKEN", kAdminToken}};
  WaitFor(
      [&] {
        return Kiln({"logs", id, "train"}, {}, env).out == "training, attempt 1\n";
      },
      "the training's log in the CLI");
  // The worker's machine stops: the worker, its supervisor and the training, all at once.
  const int train = std::stoi(ReadFile(dir / "train.pid"));
  const int supervisor = remote->SupervisorPid();
  kill(-train, SIGKILL);
  kill(train, SIGKILL);
  kill(supervisor, SIGKILL);
  remote->KillWithSupervisor();
  // Lost after the worker's lease; its retry goes to the worker that is left.
  Worker local(dir, Unique("local"), "default", 1, "3s");
  REQUIRE(WaitForRunEnd(daemon, run) == "success");
  CHECK(Sql("select string_agg(attempt || ':' || state || ':' || worker, ' ' order by attempt) "
            "from attempts where run_id = " +
            id + " and task_id = 'train'") ==
        "1:failed:" + remote->name() + " 2:success:" + local.name());
  CHECK(Sql("select string_agg(task_id || ':' || state, ' ' order by position) from "
            "task_instances where run_id = " +
            id) ==
        "prepare:success check_data:success train:success evaluate:success gate:success "
        "alert:skipped");
  // Every attempt ran on a worker; the gate's model was registered as the champion.
  CHECK(Sql("select count(*) from attempts where run_id = " + id + " and worker is null") == "0");
  WaitFor([&] { return Sql("select count(*) from model_versions where run_id = " + id) == "1"; },
          "the gate's model to be registered");
  CHECK(local.Stop() == 0);
  CHECK(daemon.Stop() == 0);
}
