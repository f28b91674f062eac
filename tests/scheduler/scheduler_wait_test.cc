// Wait tasks (kind = "wait", Execution::kWait) through the scheduler with fakes: they wait
// without a slot or a process, look through SchedulerOptions::probe (answered here by hand), end
// when what they wait for is there, when their instant comes, or at their deadline, and a
// resumed run waits on with the deadline it recorded.
#include "tests/scheduler/scheduler_harness.h"

using namespace scheduler_test;

namespace {

kiln::dag::Value Text(std::string key, std::string value) {
  kiln::dag::Value v;
  v.type = kiln::dag::Value::Type::kString;
  v.key = std::move(key);
  v.string = std::move(value);
  return v;
}

kiln::dag::TaskSpec WaitFor(std::string id, std::string what, std::string key, std::string target,
                            std::vector<std::string> needs = {},
                            kiln::Duration timeout = kiln::Duration(0)) {
  kiln::dag::TaskSpec t;
  t.id = std::move(id);
  t.kind = "wait";
  t.execution = kiln::dag::Execution::kWait;
  t.needs = std::move(needs);
  t.timeout = timeout;
  t.options.items = {Text("for", std::move(what)), Text(std::move(key), std::move(target)),
                     Text("every", "20ms")};
  return t;
}

// A probe whose looks the test answers.
struct Looks {
  std::vector<sch::WaitProbe> asked;
  std::vector<std::function<void(sch::WaitAnswer)>> pending;
  void Answer(bool ready, const std::string& seen) {
    REQUIRE(!pending.empty());
    auto done = std::move(pending.front());
    pending.erase(pending.begin());
    done({ready, seen});
  }
  std::function<void(sch::SchedulerOptions&)> Tweak() {
    return [this](sch::SchedulerOptions& o) {
      o.probe = [this](const sch::WaitProbe& p, std::function<void(sch::WaitAnswer)> done) {
        asked.push_back(p);
        pending.push_back(std::move(done));
      };
    };
  }
};

}  // namespace

TEST_CASE("a file wait holds no slot, looks again every `every`, and succeeds once it is there") {
  Looks looks;
  Harness h({WaitFor("wait_data", "file", "path", "data/{{ params.word }}/_SUCCESS"), Task("other"),
             Task("train", {"wait_data"})},
            1, looks.Tweak());
  h.Start();
  // The only slot went to `other`: the wait holds none.
  CHECK(h.runner.running.count("other") == 1);
  const sch::TaskUpdate* waiting = LastUpdate(h, "wait_data");
  REQUIRE(waiting != nullptr);
  CHECK(waiting->state == TaskState::kWaiting);
  CHECK(waiting->waiting_for == "file");
  CHECK(waiting->reason == "waiting for file 'data/a b/_SUCCESS'");
  CHECK_FALSE(waiting->retry_at.has_value());
  REQUIRE(looks.asked.size() == 1);
  CHECK(looks.asked[0].what == "file");
  CHECK(looks.asked[0].target == "data/a b/_SUCCESS");
  CHECK(looks.asked[0].dir == "/pipelines");
  looks.Answer(false, "No such file or directory");
  h.Settle();  // the next look comes after `every`
  REQUIRE(looks.asked.size() == 2);
  looks.Answer(true, "there");
  h.SettleReady();
  CHECK(LastUpdate(h, "wait_data")->state == TaskState::kSuccess);
  CHECK(LastUpdate(h, "wait_data")->reason == "file 'data/a b/_SUCCESS' is there");
  h.runner.Exit("other", 0);
  h.SettleReady();
  CHECK(h.runner.running.count("train") == 1);
  h.runner.Exit("train", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
  CHECK(h.runner.order == std::vector<std::string>{"other", "train"});
}

TEST_CASE("a wait fails at its deadline with what its last look saw") {
  Looks looks;
  Harness h(
      {WaitFor("up", "http", "url", "http://127.0.0.1:9/ready", {}, std::chrono::milliseconds(60)),
       Task("use", {"up"})},
      4, looks.Tweak());
  h.scheduler->AddRun(h.Context());
  h.SettleReady();  // not past the deadline yet
  const sch::TaskUpdate* waiting = LastUpdate(h, "up");
  REQUIRE(waiting != nullptr);
  CHECK(waiting->retry_at == h.clock.now + std::chrono::milliseconds(60));
  CHECK(waiting->reason == "waiting for GET http://127.0.0.1:9/ready; fails if not done by " +
                               kiln::FormatRfc3339(h.clock.now + std::chrono::milliseconds(60)));
  looks.Answer(false, "HTTP 503");
  h.Settle();
  CHECK(LastUpdate(h, "up")->state == TaskState::kFailed);
  CHECK(LastUpdate(h, "up")->reason ==
        "gave up waiting: GET http://127.0.0.1:9/ready did not answer 2xx within its timeout of "
        "60ms (last look: HTTP 503)");
  CHECK(LastUpdate(h, "use")->state == TaskState::kUpstreamFailed);
  CHECK(h.recorder.state == RunState::kFailed);
}

TEST_CASE("a time wait needs no look: it succeeds when its instant comes") {
  Looks looks;
  // 40 ms after the harness's fixed clock.
  const std::string later = kiln::FormatRfc3339(FixedClock().now + std::chrono::milliseconds(40));
  Harness h({WaitFor("past", "time", "at", "{{ run.data_interval_start }}"),
             WaitFor("later", "time", "at", later)},
            4, looks.Tweak());
  h.Start();
  CHECK(looks.asked.empty());
  CHECK(LastUpdate(h, "past")->state == TaskState::kSuccess);
  CHECK(LastUpdate(h, "past")->reason ==
        "the time " + kiln::FormatRfc3339(h.clock.now - std::chrono::hours(24)) + " has come");
  CHECK(LastUpdate(h, "later")->state == TaskState::kSuccess);
  CHECK(LastUpdate(h, "later")->reason == "the time " + later + " has come");
  CHECK(h.recorder.state == RunState::kSuccess);
}

TEST_CASE("a wait that cannot render or has no prober fails with the reason") {
  Harness h({WaitFor("w", "time", "at", "not an instant"), WaitFor("f", "file", "path", "/x")});
  h.Start();
  CHECK(LastUpdate(h, "w")->reason ==
        "cannot wait: at: invalid time \"not an instant\": date must be YYYY-MM-DD; expected RFC "
        "3339, e.g. \"2026-11-29T04:10:45Z\"");
  CHECK(LastUpdate(h, "f")->reason ==
        "cannot wait: this runner cannot look at files or URLs for a wait");
  CHECK(h.recorder.state == RunState::kFailed);
}

TEST_CASE("a cancelled wait ignores the answer of its look") {
  Looks looks;
  Harness h({WaitFor("w", "file", "path", "/x"), Task("after", {"w"})}, 4, looks.Tweak());
  h.Start();
  REQUIRE(looks.pending.size() == 1);
  h.scheduler->CancelRun(RunId{7});
  h.SettleReady();
  looks.Answer(true, "there");
  h.Settle();
  CHECK(LastUpdate(h, "w")->state == TaskState::kCancelled);
  CHECK(h.recorder.state == RunState::kCancelled);
}

TEST_CASE("a resumed run's wait looks again and keeps the deadline it recorded") {
  SECTION("a deadline to come: it looks at once and succeeds") {
    Looks looks;
    Harness h({WaitFor("w", "file", "path", "/x", {}, std::chrono::hours(1)), Task("after", {"w"})},
              4, looks.Tweak());
    sch::RunContext ctx = h.Context();
    ctx.resumed = true;
    ctx.initial_states = {TaskState::kWaiting, TaskState::kPending};
    ctx.retry_at = {h.clock.now + std::chrono::minutes(10), std::nullopt};
    h.scheduler->AddRun(ctx);
    h.SettleReady();
    CHECK(h.store.TaskUpdates().empty());  // nothing written again
    REQUIRE(looks.pending.size() == 1);
    looks.Answer(true, "there");
    h.SettleReady();
    CHECK(LastUpdate(h, "w")->state == TaskState::kSuccess);
    CHECK(h.runner.running.count("after") == 1);
  }
  SECTION("a deadline passed while no daemon ran: failed at once, without a look") {
    Looks looks;
    Harness h({WaitFor("w", "file", "path", "/x", {}, std::chrono::hours(1))}, 4, looks.Tweak());
    sch::RunContext ctx = h.Context();
    ctx.resumed = true;
    ctx.initial_states = {TaskState::kWaiting};
    ctx.retry_at = {h.clock.now - std::chrono::minutes(1)};
    h.scheduler->AddRun(ctx);
    h.Settle();
    CHECK(looks.asked.empty());
    CHECK(LastUpdate(h, "w")->state == TaskState::kFailed);
    CHECK(LastUpdate(h, "w")->reason ==
          "gave up waiting: file '/x' did not appear within its timeout of 1h");
  }
}
