// DaemonService with fakes (tests/daemon/fake_env.h): the run lifecycle, operator actions,
// schedules, reload, backfills, event streams and recovery, each without a database, processes
// or files.
#include <iostream>
#include <mutex>
#include <streambuf>
#include <thread>

#include "tests/daemon/fake_env.h"

using namespace daemon_test;

namespace {

int64_t TriggerOk(Harness& h, const std::string& pipeline,
                  std::vector<std::pair<std::string, std::string>> params = {}) {
  scheduler::TriggerRequest r;
  r.pipeline = pipeline;
  r.params = std::move(params);
  r.actor = "ops";
  auto created = h.service->Trigger(r);
  INFO((created.ok() ? std::string() : created.message()));
  REQUIRE(created.ok());
  return Value(created->id);
}

// std::cout while it lives, for the daemon's start report (written there from the timer's
// thread).
class CapturedCout final : public std::streambuf {
 public:
  CapturedCout() : old_(std::cout.rdbuf(this)) {}
  ~CapturedCout() override { std::cout.rdbuf(old_); }
  CapturedCout(const CapturedCout&) = delete;
  CapturedCout& operator=(const CapturedCout&) = delete;
  std::string Text() {
    std::lock_guard lock(mu_);
    return text_;
  }

 protected:
  int overflow(int c) override {
    if (c != EOF) {
      std::lock_guard lock(mu_);
      text_ += static_cast<char>(c);
    }
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mu_);
    text_.append(s, static_cast<size_t>(n));
    return n;
  }

 private:
  std::streambuf* old_;
  std::mutex mu_;
  std::string text_;
};

}  // namespace

TEST_CASE("a triggered run is created, started by the scheduler and ends with its tasks") {
  Harness h({{"p.toml", TwoTasks("p")}});
  const int64_t run = TriggerOk(h, "p", {{"n", "5"}});
  h.Until([&] { return h.runner.running.count({run, "a"}) == 1; });
  CHECK(h.db.State(run) == "running");
  h.Exit(run, "a", 0);
  h.Until([&] { return h.runner.running.count({run, "b"}) == 1; });
  h.Exit(run, "b", 0);
  h.Until([&] { return h.db.State(run) == "success"; });
  CHECK(h.db.Tasks(run) == "a:success:1,b:success:1");
  CHECK(h.Started() == std::vector<std::string>{"1/a#1", "1/b#1"});
  {
    std::lock_guard lock(h.db.mu);
    CHECK(h.db.runs.at(run).owner == kOwner);
    CHECK(h.db.runs.at(run).supervisors.at("a") == kOwner + "/supervisor");
  }
  // Errors name the subject and say what is accepted.
  scheduler::TriggerRequest bad;
  bad.pipeline = "nope";
  CHECK(h.service->Trigger(bad).message() == "no pipeline named 'nope'");
  bad.pipeline = "p";
  bad.params = {{"n", "x"}};
  auto typed = h.service->Trigger(bad);
  CHECK(typed.status().code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("a cancel is recorded first, then stops the run's attempt, an ended run is refused") {
  Harness h({{"p.toml", TwoTasks("p")}});
  const int64_t run = TriggerOk(h, "p");
  h.Until([&] { return h.runner.running.count({run, "a"}) == 1; });
  REQUIRE(h.service->CancelRun(RunId(run), "ops").ok());
  h.Until([&] { return h.db.State(run) == "cancelled"; });
  CHECK(h.db.Tasks(run) == "a:cancelled:1,b:cancelled:0");
  CHECK(h.OnIo([&] { return h.runner.killed; }) == std::vector<std::string>{"1/a"});
  CHECK(h.db.Events("cancel_requested") == std::vector<std::string>{"cancel_requested p 1 ops"});
  CHECK(h.service->CancelRun(RunId(run), "ops").message() == "run 1 has already ended (cancelled)");
}

TEST_CASE(
    "a failed run is retried from its failed task, a mark of another daemon's run is refused") {
  Harness h({{"p.toml", TwoTasks("p")}});
  const int64_t run = TriggerOk(h, "p");
  h.Until([&] { return h.runner.running.count({run, "a"}) == 1; });
  h.Exit(run, "a", 3);
  h.Until([&] { return h.db.State(run) == "failed"; });
  CHECK(h.db.Tasks(run) == "a:failed:1,b:upstream_failed:0");
  scheduler::RetryRequest retry;
  retry.run = RunId(run);
  retry.failed = true;
  retry.actor = "ops";
  auto retried = h.service->RetryRun(retry);
  REQUIRE(retried.ok());
  CHECK(retried->tasks == std::vector<std::string>{"a", "b"});
  h.Until([&] { return h.runner.running.count({run, "a"}) == 1; });
  h.Exit(run, "a", 0);
  h.Until([&] { return h.runner.running.count({run, "b"}) == 1; });
  h.Exit(run, "b", 0);
  h.Until([&] { return h.db.State(run) == "success"; });
  CHECK(h.db.Tasks(run) == "a:success:2,b:success:1");

  const int64_t other = TriggerOk(h, "p");
  h.Until([&] { return h.runner.running.count({other, "a"}) == 1; });
  {
    // Taken over by another daemon (its lease had expired).
    std::lock_guard lock(h.db.mu);
    h.db.runs.at(other).owner = "other:/data";
  }
  h.OnIo([&] {
    h.sched->Release(RunId(other));
    return 0;
  });
  scheduler::MarkRequest mark;
  mark.run = RunId(other);
  mark.task = "a";
  mark.state = TaskState::kSuccess;
  mark.actor = "admin";
  CHECK(h.service->MarkTask(mark).message() ==
        "run 2 is driven by the daemon other:/data; send the mark to that daemon, or cancel the "
        "run from any");
}

TEST_CASE("a schedule's check fires what is due once, catching up as its policy says") {
  const std::string minutely = "schedule = \"* * * * *\"\ncatchup = \"all\"\nmax_active_runs = 5\n";
  Harness h({{"s.toml", TwoTasks("s", minutely)}});
  const Instant t0 = h.clock.now;  // 2027-01-15T08:00:00Z
  // The first check starts the cursor: nothing was missed.
  h.service->CheckSchedule("s", t0);
  CHECK(h.db.runs.empty());
  // Three minutes later: three fires, each a scheduled run with its own logical date.
  auto next = h.service->CheckSchedule("s", t0 + std::chrono::minutes(3));
  REQUIRE(next.has_value());
  CHECK(*next == t0 + std::chrono::minutes(4));
  {
    std::lock_guard lock(h.db.mu);
    REQUIRE(h.db.runs.size() == 3);
    int minute = 1;
    for (const auto& [id, row] : h.db.runs) {
      CHECK(row.run.trigger == "schedule");
      CHECK(row.run.logical_date == t0 + std::chrono::minutes(minute++));
      CHECK(row.owner == kOwner);
    }
  }
  // Checked again at the same instant: nothing twice.
  h.service->CheckSchedule("s", t0 + std::chrono::minutes(3));
  {
    std::lock_guard lock(h.db.mu);
    CHECK(h.db.runs.size() == 3);
  }
  h.Until([&] { return h.runner.running.size() == 3; });
}

TEST_CASE("only the leader fires, each fire fenced by its term, and a new leader misses nothing") {
  const std::string minutely =
      "schedule = \"* * * * *\"\ncatchup = \"none\"\n"
      "max_active_runs = 5\n";
  auto leadership = std::make_shared<daemon::Leadership>(kOwner);
  Harness h({{"s.toml", TwoTasks("s", minutely)}}, leadership);
  const Instant t0 = h.clock.now;
  auto runs = [&] {
    std::lock_guard lock(h.db.mu);
    std::vector<Instant> out;
    for (const auto& [id, row] : h.db.runs) out.push_back(row.run.logical_date);
    return out;
  };
  // Following: the check fires nothing and does not ask to be looked at again.
  CHECK_FALSE(h.service->CheckSchedule("s", t0 + std::chrono::minutes(1)).has_value());
  CHECK(runs().empty());
  // Leading in term 4: the first check starts the cursor, the next fires.
  leadership->Set(4);
  {
    std::lock_guard lock(h.db.mu);
    h.db.leader = store::LeaderFence{kOwner, 4};
  }
  h.service->CheckSchedule("s", t0);
  CHECK(h.service->CheckSchedule("s", t0 + std::chrono::minutes(1)) ==
        t0 + std::chrono::minutes(2));
  CHECK(runs() == std::vector<Instant>{t0 + std::chrono::minutes(1)});
  // The fence refuses a fire (a renewal running late, which then keeps the term): refused whole,
  // and looked at again shortly, since nothing else would bring the timer back to it.
  {
    std::lock_guard lock(h.db.mu);
    h.db.leader = store::LeaderFence{"other:/data", 5};
  }
  const Instant again = t0 + std::chrono::minutes(2) + std::chrono::seconds(5);
  CHECK(h.service->CheckSchedule("s", t0 + std::chrono::minutes(2)) == again);
  CHECK(runs().size() == 1);
  CHECK(h.db.fences_refused == 1);
  // The lease really went to another daemon: still refused, looked at again, nothing fired.
  CHECK(h.service->CheckSchedule("s", again) == again + std::chrono::seconds(5));
  CHECK(runs().size() == 1);
  CHECK(h.db.fences_refused == 2);
  // Back as the leader in term 6 (the other did not fire meanwhile): the fires since the cursor
  // are on time, catchup = "none" notwithstanding, since this daemon watched all along.
  leadership->Set(6);
  {
    std::lock_guard lock(h.db.mu);
    h.db.leader = store::LeaderFence{kOwner, 6};
  }
  h.service->CheckSchedule("s", t0 + std::chrono::minutes(4));
  CHECK(runs() == std::vector<Instant>{t0 + std::chrono::minutes(1), t0 + std::chrono::minutes(2),
                                       t0 + std::chrono::minutes(3), t0 + std::chrono::minutes(4)});
}

TEST_CASE("a daemon that comes to lead fires at once what fell due while none led") {
  const std::string minutely = "schedule = \"* * * * *\"\nmax_active_runs = 5\n";
  CapturedCout out;
  auto leadership = std::make_shared<daemon::Leadership>(kOwner);
  Harness h({{"s.toml", TwoTasks("s", minutely)}}, leadership);
  const Instant t0 = h.clock.now;
  h.service->StartSchedules();
  // Its first check, as a follower, fires nothing and asks for no other look: only coming to
  // lead brings the timer back to this pipeline.
  for (int i = 0; i < 2000 && !out.Text().ends_with("\n"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  REQUIRE(out.Text() == "kiln: schedules: 1 pipelines checked; 0 runs created, 0 fires skipped\n");
  // The leader before fired up to t0 and died; two fires fell due while no daemon led.
  {
    std::lock_guard lock(h.db.mu);
    h.db.schedules["s"].cursor = t0;
    h.db.leader = store::LeaderFence{kOwner, 9};
  }
  {
    std::lock_guard lock(h.clock.mu);
    h.clock.now = t0 + std::chrono::minutes(2) + std::chrono::seconds(5);
  }
  leadership->Set(9);
  h.service->OnLeading(9);
  h.Until([&] {
    std::lock_guard lock(h.db.mu);
    return h.db.runs.size() == 2;
  });
  std::lock_guard lock(h.db.mu);
  std::vector<Instant> dates;
  for (const auto& [id, row] : h.db.runs) {
    CHECK(row.run.trigger == "schedule");
    CHECK(row.run.note.empty());  // on time, not a catch-up
    dates.push_back(row.run.logical_date);
  }
  CHECK(dates == std::vector<Instant>{t0 + std::chrono::minutes(1), t0 + std::chrono::minutes(2)});
  CHECK(h.db.schedules["s"].cursor == t0 + std::chrono::minutes(2));
}

TEST_CASE(
    "a changed file takes effect, a broken edit keeps the last good version, a deleted one goes") {
  Harness h({{"p.toml", TwoTasks("p")}});
  {
    std::lock_guard lock(h.files.mu);
    h.files.files["/p/p.toml"] = TwoTasks("p", "description = \"v2\"\n");
  }
  h.service->Reload({"/p/p.toml"}, false);
  auto info = h.service->GetPipeline("p");
  REQUIRE(info.ok());
  CHECK(info->pipeline->spec.description == "v2");
  CHECK_FALSE(info->load_error.has_value());
  {
    std::lock_guard lock(h.files.mu);
    h.files.files["/p/p.toml"] =
        "[pipeline]\nname = \"p\"\n[tasks.a]\nneeds = [\"zz\"]\ncommand = \"true\"\n";
  }
  h.service->Reload({"/p/p.toml"}, false);
  info = h.service->GetPipeline("p");
  REQUIRE(info.ok());
  CHECK(info->pipeline->spec.description == "v2");  // still runs
  REQUIRE(info->load_error.has_value());
  CHECK_THAT(*info->load_error, Catch::Contains("/p/p.toml:4:"));
  CHECK(h.db.Events("pipeline_load_failed").size() == 1);
  {
    std::lock_guard lock(h.files.mu);
    h.files.files.erase("/p/p.toml");
  }
  h.service->Reload({"/p/p.toml"}, false);
  CHECK(h.service->GetPipeline("p").message() == "no pipeline named 'p'");
  CHECK(h.db.Events("pipeline_removed").size() == 1);
}

TEST_CASE("at start, a broken file gets its last good version unless it would close a cycle") {
  boost::asio::io_context io;
  FakeDb db(io);
  auto entry = [](const std::string& file, const std::string& text) {
    daemon::PipelineEntry e;
    e.file = file;
    auto loaded = config::ParsePipeline(text, file);
    e.pipeline = loaded.pipeline;
    if (!loaded.pipeline) e.load_error = "broken";
    return e;
  };
  const std::string x = "[pipeline]\nname = \"x\"\ntrigger_on_success = [\"y\"]\n" +
                        TwoTasks("x").substr(TwoTasks("x").find("[tasks"));
  const std::string y_loops = TwoTasks("y", "trigger_on_success = [\"x\"]\n");
  std::map<std::string, daemon::PipelineEntry> entries;
  entries["x"] = entry("/p/x.toml", x);
  entries["y"] = entry("/p/y.toml", "[pipeline]\nname = \"y\"\n");
  entries["z.toml"] = entry("/p/z.toml", "[pipeline\n");
  entries["z.toml"].named = false;
  REQUIRE(
      db.RecordLoaded(std::vector<store::LoadedVersion>{{"y", "hy", y_loops, "/p/y.toml"},
                                                        {"z", "hz", TwoTasks("z"), "/p/z.toml"}})
          .ok());
  daemon::KeepLastLoaded(db, entries);
  // y's last good version triggers x, which triggers y: it stays broken.
  CHECK(entries.at("y").pipeline == nullptr);
  // z, too broken to name itself, is found by its file and listed under its name.
  CHECK(entries.count("z.toml") == 0);
  REQUIRE(entries.at("z").pipeline != nullptr);
  CHECK(entries.at("z").load_error == "broken");
  CHECK(entries.at("z").pipeline->spec.file == "/p/z.toml");
  // A broken file whose path held a pipeline that moved on (its newest version is elsewhere)
  // or was deleted does not bring it back.
  std::map<std::string, daemon::PipelineEntry> moved;
  moved["m.toml"] = entry("/p/m.toml", "[pipeline\n");
  moved["m.toml"].named = false;
  moved["d.toml"] = entry("/p/d.toml", "[pipeline\n");
  moved["d.toml"].named = false;
  REQUIRE(db.RecordLoaded(std::vector<store::LoadedVersion>{
                              {"m", "m1", TwoTasks("m"), "/p/m.toml"},
                              {"m", "m2", TwoTasks("m", "description = \"2\"\n"), "/p/n.toml"},
                              {"d", "d1", TwoTasks("d"), "/p/d.toml"}})
              .ok());
  REQUIRE(db.ForgetLoadedFiles(std::vector<std::string>{"/p/d.toml"}).ok());
  daemon::KeepLastLoaded(db, moved);
  CHECK(moved.count("m") == 0);
  CHECK(moved.at("m.toml").pipeline == nullptr);
  CHECK(moved.count("d") == 0);
  CHECK(moved.at("d.toml").pipeline == nullptr);
  // What loaded is recorded for the next start.
  auto kept = db.LastLoadedVersion("x", "");
  REQUIRE(kept.ok());
  REQUIRE(kept->has_value());
  CHECK((*kept)->hash == entries.at("x").pipeline->spec.content_hash);
}

TEST_CASE("a backfill creates a run per fire and runs them oldest first under its limit") {
  Harness h({{"s.toml", TwoTasks("s", "schedule = \"0 * * * *\"\n")}});
  h.service->StartSchedules();  // a run that ends frees a place through the timer's thread
  scheduler::BackfillRequest b;
  b.pipeline = "s";
  b.from = *ParseRfc3339("2027-01-01T00:00:00Z");
  b.to = *ParseRfc3339("2027-01-01T02:00:00Z");
  b.max_active_runs = 1;
  b.actor = "ops";
  auto created = h.service->CreateBackfill(b);
  INFO((created.ok() ? std::string() : created.message()));
  REQUIRE(created.ok());
  CHECK(created->total == 3);
  // One at a time: the oldest runs, the others wait queued.
  h.Until([&] { return h.runner.running.count({1, "a"}) == 1; });
  CHECK(h.db.State(2) == "queued");
  CHECK(h.db.State(3) == "queued");
  h.Exit(1, "a", 0);
  h.Until([&] { return h.runner.running.count({1, "b"}) == 1; });
  h.Exit(1, "b", 0);
  h.Until([&] { return h.runner.running.count({2, "a"}) == 1; });
  CHECK(h.db.State(3) == "queued");
  CHECK(h.service->CancelBackfill(1, "ops").ok());
  h.Until([&] { return h.db.State(2) == "cancelled" && h.db.State(3) == "cancelled"; });
}

TEST_CASE("runs this daemon drove resume at start: attempts adopted, the rest goes on") {
  Harness h({{"p.toml", TwoTasks("p")}});
  int64_t run = 0;
  {
    // Left by this daemon before its restart: a running (attempt 1 under its supervisor), b
    // pending.
    std::lock_guard lock(h.db.mu);
    auto info = h.service->GetPipeline("p");
    REQUIRE(info.ok());
    store::NewRun n;
    n.pipeline = "p";
    n.version_hash = info->pipeline->spec.content_hash;
    n.trigger = "manual";
    n.params = {{"n", int64_t{1}}};
    n.lease_owner = kOwner;
    n.tasks = {{"a", "default", 0}, {"b", "default", 0}};
    run = Value(h.db.CreateRun(n)->id);
    auto& row = h.db.runs.at(run);
    row.run.state = RunState::kRunning;
    row.run.tasks[0].state = TaskState::kRunning;
    row.run.tasks[0].attempt = 1;
    row.supervisors["a"] = kOwner + "/supervisor";
  }
  REQUIRE(h.service->Recover().ok());
  h.Until([&] { return h.runner.running.count({run, "a"}) == 1; });
  CHECK(h.OnIo([&] { return h.runner.adopted; }) ==
        std::vector<std::string>{"1/a#1@" + kOwner + "/supervisor"});
  CHECK(h.Started().empty());
  h.Exit(run, "a", 0);
  h.Until([&] { return h.runner.running.count({run, "b"}) == 1; });
  h.Exit(run, "b", 0);
  h.Until([&] { return h.db.State(run) == "success"; });
  CHECK(h.db.Tasks(run) == "a:success:1,b:success:1");
  CHECK(h.Started() == std::vector<std::string>{"1/b#1"});
}

TEST_CASE("runs taken over by another daemon are let go of, a fenced run is read again") {
  Harness h({{"p.toml", TwoTasks("p")}});
  const int64_t run = TriggerOk(h, "p");
  h.Until([&] { return h.runner.running.count({run, "a"}) == 1; });
  {
    std::lock_guard lock(h.db.mu);
    h.db.runs.at(run).owner = "other:/data";
  }
  h.service->OnLapsed();
  h.Until([&] { return !h.sched->IsActive(RunId(run)); });
  CHECK(h.sched->Metrics().runs_released == 1);
  // The attempt's end reaches this daemon late: nothing is recorded for a run it let go of.
  h.Exit(run, "a", 0);
  h.OnIo([] { return 0; });
  CHECK(h.db.Tasks(run) == "a:running:1,b:pending:0");
}

TEST_CASE("streams end when the daemon stops accepting, readiness follows the database") {
  Harness h({{"p.toml", TwoTasks("p")}});
  CHECK(h.service->Ready().ok());
  {
    std::lock_guard lock(h.db.mu);
    h.db.down = true;
  }
  auto ready = h.service->Ready();
  CHECK(ready.code() == ErrorCode::kUnavailable);
  CHECK(ready.message() == "database: down");
  {
    std::lock_guard lock(h.db.mu);
    h.db.down = false;
  }
  h.service->SetHealthy(false);
  CHECK(h.service->Ready().message() == "the daemon's lease cannot be renewed");
  h.service->SetHealthy(true);
  CHECK(h.service->WaitForEvents(0, std::chrono::milliseconds(1)));
  h.service->StopAccepting();
  CHECK_FALSE(h.service->WaitForEvents(0, std::chrono::milliseconds(1)));
  scheduler::TriggerRequest r;
  r.pipeline = "p";
  CHECK(h.service->Trigger(r).message() == "the daemon is stopping");
}
