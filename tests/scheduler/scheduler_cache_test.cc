// The result cache through the scheduler with fakes: a cached task's key leaves out what
// differs between runs of the same work, its program is wrapped in `kiln task cache` with the
// earlier successes the store found, and its success keeps the key with the attempt.
#include "tests/scheduler/scheduler_harness.h"

using namespace scheduler_test;

namespace {

kiln::dag::TaskSpec Cached(std::string command) {
  kiln::dag::TaskSpec t = Task("features");
  t.command = std::move(command);
  t.inputs = {"data/{{ params.word }}.csv"};
  t.outputs = {"{{ run.dir }}/features.csv"};
  t.cache = true;
  return t;
}

void WithCache(sch::SchedulerOptions& o) {
  o.cache_dir = "/data/cache";
  o.cache_argv = [](const sch::CacheLaunch& launch) -> kiln::Result<std::vector<std::string>> {
    std::vector<std::string> argv = {"kiln",
                                     "task",
                                     "cache",
                                     launch.candidates,
                                     launch.files.cache_report,
                                     launch.files.cache_store.string()};
    argv.insert(argv.end(), launch.argv.begin(), launch.argv.end());
    return argv;
  };
  o.collect_argv = [](const sch::FilesToCollect& f) -> kiln::Result<std::vector<std::string>> {
    return std::vector<std::string>{"collect", f.cache_report, f.cache_store.string()};
  };
}

// The key a run of `task` with these params looks up.
std::string KeyOf(kiln::dag::TaskSpec task, RunId run, const std::string& word,
                  const std::function<void(sch::SchedulerOptions&)>& tweak = WithCache) {
  Harness h({std::move(task)}, 4, tweak);
  h.store.cached = R"([{"run": 1}])";
  sch::RunContext ctx = h.Context({{"word", word}});
  ctx.id = run;
  ctx.logical_date += std::chrono::hours(Value(run));  // another day: not in the key
  h.scheduler->AddRun(ctx);
  h.SettleReady();
  REQUIRE(h.store.lookups.size() == 1);
  REQUIRE(h.runner.running.count("features") == 1);
  const auto& argv = h.runner.running["features"].request.argv;
  REQUIRE(argv.size() == 9);
  CHECK(argv[3] == R"([{"run": 1}])");
  CHECK(argv[4] == "/data/runs/p/" + std::to_string(Value(run)) + "/.kiln/features/cache.json");
  CHECK(argv[5] == "/data/cache");
  CHECK(argv[6] == "/bin/sh");
  CHECK(h.runner.running["features"].request.collect_argv ==
        std::vector<std::string>{"collect", argv[4], "/data/cache"});
  return h.store.lookups[0];
}

}  // namespace

TEST_CASE("a cached task's key leaves out what differs between runs of the same work") {
  const std::string command = "make-features --out {{ run.dir }}/features.csv --run {{ run.id }}";
  const std::string key = KeyOf(Cached(command), RunId{7}, "a");
  CHECK(key.size() == 64);
  CHECK(KeyOf(Cached(command), RunId{8}, "a") == key);  // another run, folder and date
  CHECK(KeyOf(Cached(command), RunId{7}, "b") != key);  // other params (and input path)
  CHECK(KeyOf(Cached(command + " --fast"), RunId{7}, "a") != key);
  kiln::dag::TaskSpec with_env = Cached(command);
  with_env.env = {{"MODE", "full"}};
  CHECK(KeyOf(with_env, RunId{7}, "a") != key);
  kiln::dag::TaskSpec dated = Cached(command + " --day {{ run.logical_date }}");
  CHECK(KeyOf(dated, RunId{7}, "a") != KeyOf(dated, RunId{8}, "a"));  // its date is its work
}

TEST_CASE("a cached task's success keeps its key with the attempt and other tasks keep none") {
  Harness h({Cached("true"), Task("plain", {"features"})}, 4, WithCache);
  h.Start();
  h.runner.Exit("features", 0);
  h.Settle();
  h.runner.Exit("plain", 0);
  h.Settle();
  const std::string key = h.store.lookups.at(0);
  std::map<std::string, std::string> kept;
  for (const auto& u : h.store.TaskUpdates()) {
    if (u.end) kept[u.task_id] = u.end->cache_key;
  }
  CHECK(kept == std::map<std::string, std::string>{{"features", key}, {"plain", ""}});
  CHECK(h.store.lookups.size() == 1);
}

TEST_CASE("a cached task cancelled or released while its lookup is in flight never starts") {
  SECTION("cancelled: it ends cancelled without a process") {
    Harness h({Cached("true")}, 4, WithCache);
    h.store.hold_lookups = true;
    h.scheduler->AddRun(h.Context());
    h.SettleReady();
    REQUIRE(h.store.held_lookups.size() == 1);
    h.scheduler->CancelRun(RunId{7}, "run cancelled");
    h.SettleReady();
    h.store.held_lookups[0]();
    h.Settle();
    CHECK(h.runner.order.empty());
    CHECK(h.recorder.state == RunState::kCancelled);
  }
  SECTION("released and added again: the adopted attempt is not started a second time") {
    Harness h({Cached("true")}, 4, WithCache);
    h.store.hold_lookups = true;
    h.scheduler->AddRun(h.Context());
    h.SettleReady();
    REQUIRE(h.store.held_lookups.size() == 1);
    h.scheduler->Release(RunId{7});
    sch::RunContext ctx = h.Context();
    ctx.resumed = true;
    ctx.initial_states = {TaskState::kRunning};
    ctx.initial_attempts = {1};
    ctx.supervisors = {"test:1"};
    h.scheduler->AddRun(ctx);
    h.SettleReady();
    h.store.held_lookups[0]();
    h.SettleReady();
    CHECK(h.runner.order.empty());  // adopted, never started again
  }
  SECTION("a shutdown that leaves attempts waits for the lookup and starts the attempt") {
    Harness h({Cached("true")}, 4, WithCache);
    h.store.hold_lookups = true;
    h.scheduler->AddRun(h.Context());
    h.SettleReady();
    bool stopped = false;
    h.scheduler->Shutdown(sch::StopMode::kLeave, "stopping", [&] { stopped = true; });
    h.SettleReady();
    CHECK_FALSE(stopped);
    h.store.held_lookups[0]();
    h.SettleReady();
    CHECK(stopped);
    CHECK(h.runner.order == std::vector<std::string>{"features"});
  }
}

TEST_CASE("secrets are read at each launch, masked, and never part of the cache key") {
  int reads = 0;
  auto with_secrets = [&](sch::SchedulerOptions& o) {
    WithCache(o);
    o.secret = [&reads](std::string_view name) -> kiln::Result<std::string> {
      ++reads;
      if (name == "gone") return kiln::Status::Error("secret 'gone': file '/s/gone': missing");
      return "value-" + std::to_string(reads);
    };
  };
  kiln::dag::TaskSpec t = Task("load");
  t.command.reset();
  t.argv = std::vector<std::string>{"psql", "--password={{ secrets.pw }}"};
  t.env = {{"TOKEN", "Bearer {{ secrets.token }}"}};
  Harness h({t}, 4, with_secrets);
  h.Start();
  REQUIRE(h.runner.running.count("load") == 1);
  const auto& req = h.runner.running["load"].request;
  CHECK(req.argv == std::vector<std::string>{"psql", "--password=value-1"});
  CHECK(std::find(req.env.begin(), req.env.end(),
                  std::pair<std::string, std::string>{"TOKEN", "Bearer value-2"}) != req.env.end());
  CHECK(req.mask == std::vector<std::string>{"value-1", "value-2"});

  // A cached task's key is the same whatever its secrets read (and reads none).
  kiln::dag::TaskSpec cached = Cached("fetch --key \"$KEY\"");
  cached.env = {{"KEY", "{{ secrets.pw }}"}};
  reads = 100;
  const std::string first = KeyOf(cached, RunId{7}, "a", with_secrets);
  reads = 200;
  CHECK(KeyOf(cached, RunId{7}, "a", with_secrets) == first);
  CHECK(first != KeyOf(Cached("fetch --key \"$KEY\""), RunId{7}, "a"));

  // One that cannot be read fails the attempt with the reason, before anything runs.
  kiln::dag::TaskSpec broken = Task("broken");
  broken.env = {{"X", "{{ secrets.gone }}"}};
  Harness b({broken}, 4, with_secrets);
  b.Start();
  CHECK(b.runner.order.empty());
  auto updates = b.store.TaskUpdates();
  REQUIRE(!updates.empty());
  CHECK(updates.back().state == TaskState::kFailed);
  CHECK(updates.back().reason == "could not start: secret 'gone': file '/s/gone': missing");
}
