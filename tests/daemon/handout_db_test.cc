// The daemon's side of a hand-out in the start's own commit, against a real PostgreSQL: the
// watch of an attempt whose start is still committing (ForeignAttempts, unsettled), and a kill
// that comes before that commit is over (DispatchRunner: held, then the attempt is taken back
// through the dispatcher's thread once its row is there).
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "daemon/dispatch.h"
#include "daemon/foreign_attempts.h"
#include "tests/store/run_fixtures.h"

namespace {

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;
namespace sch = kiln::scheduler;

constexpr const char* kHandoutDaemon = "h:/d";
constexpr const char* kHandoutSupervisor = "h:/d/supervisor";

// Stands for the daemon's own supervisor: nothing of these tests reaches it.
struct UnusedRunner final : sch::TaskRunner {
  void Start(sch::LaunchRequest, std::function<void(sch::AttemptOutcome)>) override { ++calls; }
  void Kill(RunId, TaskId) override { ++calls; }
  void Adopt(const sch::AdoptRequest&, std::function<void(sch::AttemptOutcome)>) override {
    ++calls;
  }
  int calls = 0;
};

// A run of task `a` driven by kHandoutDaemon, and a live worker `w1` of pool gpu.
struct HandoutDb {
  HandoutDb() : db(t.Open()) {
    REQUIRE(db->RenewLease("w1/supervisor", "supervisor", "w1", std::chrono::minutes(5)).ok());
    REQUIRE(
        db->RenewWorker("w1", std::vector<std::string>{"gpu"}, 8, std::chrono::minutes(5)).ok());
    NewRun r = SimpleRun({"a"});
    r.lease_owner = kHandoutDaemon;
    run = CreateOrFail(*db, r);
  }
  // Commits a's start, handed out with `handout`, as the scheduler's batch does.
  void CommitStart(const sch::Handout& handout) {
    auto u = StartUpdate(run, "a", 1, At(1));
    u.start->lease_owner = kHandoutSupervisor;
    u.start->handout = handout;
    sch::Batch batch;
    batch.tasks.push_back(u);
    const sch::Batch* group[] = {&batch};
    auto fenced = db->CommitBatches(group, kHandoutDaemon, std::chrono::minutes(5));
    REQUIRE(fenced.ok());
    REQUIRE(fenced->empty());
  }
  std::vector<Claimed> ClaimAll() {
    auto claimed = db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 8);
    REQUIRE(claimed.ok());
    return *claimed;
  }
  // Runs the loop until `outcome` is set (what the other threads post to it), for at most a
  // minute; the deadline only ends a test that would otherwise hang.
  void RunUntil(const std::optional<sch::AttemptOutcome>& outcome) {
    auto guard = boost::asio::make_work_guard(io);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    while (!outcome && std::chrono::steady_clock::now() < deadline) {
      io.run_one_for(std::chrono::milliseconds(100));
    }
  }
  sch::AttemptKey Key() const { return {run, "a", 1}; }

  TestDatabase t;
  std::unique_ptr<Database> db;
  RunId run{0};
  boost::asio::io_context io;
};

sch::AdoptRequest WatchOf(const sch::AttemptKey& key) {
  sch::AdoptRequest w;
  w.run = key.run;
  w.task_id = key.task_id;
  w.attempt = key.attempt;
  w.supervisor = std::string(kDispatchedOwner);
  return w;
}

}  // namespace

TEST_CASE("a watch of a hand-out whose start is committing waits for its row, then for its end") {
  HandoutDb f;
  kiln::daemon::ForeignAttempts foreign(f.io);
  std::optional<sch::AttemptOutcome> outcome;
  foreign.Watch(
      WatchOf(f.Key()), [&](sch::AttemptOutcome o) { outcome = o; }, false);
  // No row yet: the commit is not over, so the missing row says nothing.
  foreign.Check(*f.db);
  f.io.poll();
  CHECK_FALSE(outcome.has_value());
  CHECK(foreign.watched() == 1);
  f.CommitStart(sch::Handout{"gpu", 0, 1, "launch"});
  foreign.Settle(f.Key());
  // Handed out and not claimed yet: still running.
  foreign.Check(*f.db);
  f.io.restart();
  f.io.poll();
  CHECK_FALSE(outcome.has_value());
  auto claimed = f.ClaimAll();
  REQUIRE(claimed.size() == 1);
  sch::AttemptOutcome ended;
  ended.started = true;
  ended.exit_code = 3;
  ended.started_at = At(2);
  ended.ended_at = At(3);
  auto refused =
      f.db->RecordWorkerEnds("w1", "w1/supervisor", std::vector<RecordedOutcome>{{f.Key(), ended}});
  REQUIRE(refused.ok());
  CHECK(refused->empty());
  foreign.Check(*f.db);
  f.io.restart();
  f.RunUntil(outcome);
  REQUIRE(outcome.has_value());
  CHECK(outcome->started);
  CHECK(outcome->exit_code == 3);
  CHECK_FALSE(outcome->lost);
  CHECK(foreign.watched() == 0);
}

TEST_CASE("a settled watch whose row is missing is lost, an unsettled one only by a recorded end") {
  HandoutDb f;
  kiln::daemon::ForeignAttempts foreign(f.io);
  std::optional<sch::AttemptOutcome> settled_outcome, unsettled_outcome;
  // Attempt 2 never had a row: watched as settled, that says it is gone.
  const sch::AttemptKey gone{f.run, "a", 2};
  foreign.Watch(
      WatchOf(gone), [&](sch::AttemptOutcome o) { settled_outcome = o; }, true);
  foreign.Watch(
      WatchOf(f.Key()), [&](sch::AttemptOutcome o) { unsettled_outcome = o; }, false);
  foreign.Check(*f.db);
  f.RunUntil(settled_outcome);
  REQUIRE(settled_outcome.has_value());
  CHECK(settled_outcome->lost);
  CHECK(settled_outcome->error == "its row no longer has it running");
  CHECK_FALSE(unsettled_outcome.has_value());
  // Its commit, a claim and an end, all before the runner heard the commit was over: the end
  // recorded decides it all the same.
  f.CommitStart(sch::Handout{"gpu", 0, 1, "launch"});
  REQUIRE(f.ClaimAll().size() == 1);
  sch::AttemptOutcome ended;
  ended.started = true;
  ended.exit_code = 0;
  ended.started_at = At(2);
  ended.ended_at = At(3);
  auto refused =
      f.db->RecordWorkerEnds("w1", "w1/supervisor", std::vector<RecordedOutcome>{{f.Key(), ended}});
  REQUIRE(refused.ok());
  foreign.Check(*f.db);
  f.io.restart();
  f.RunUntil(unsettled_outcome);
  REQUIRE(unsettled_outcome.has_value());
  CHECK(unsettled_outcome->exit_code == 0);
  CHECK_FALSE(unsettled_outcome->lost);
}

TEST_CASE("a kill before a hand-out's commit is over takes it back once it is, before any claim") {
  HandoutDb f;
  UnusedRunner local;
  kiln::daemon::ForeignAttempts foreign(f.io);
  kiln::daemon::DispatchRunner::Options o;
  o.pools.mode = kiln::daemon::WorkerPools::Mode::kWorkers;
  o.url = f.t.url();
  o.supervisor = kHandoutSupervisor;
  kiln::daemon::DispatchRunner runner(f.io, local, foreign, o);
  sch::LaunchRequest request;
  request.run = f.run;
  request.task = TaskId(0);
  request.task_id = "a";
  request.attempt = 1;
  request.argv = {"/bin/sh", "-c", "true"};
  request.pool = "gpu";
  std::optional<sch::AttemptOutcome> outcome;
  auto handout = runner.HandOut(request, [&](sch::AttemptOutcome out) { outcome = out; });
  REQUIRE(handout.has_value());
  runner.Kill(f.run, TaskId(0));
  // Held: there is no row to take back before the commit.
  f.CommitStart(*handout);
  CHECK(f.t.One("SELECT lease_owner FROM attempts") == "(dispatched)");
  runner.StartRecorded(f.run, TaskId(0), 1);
  f.RunUntil(outcome);
  REQUIRE(outcome.has_value());
  CHECK(outcome->killed);
  CHECK_FALSE(outcome->started);
  CHECK(outcome->error == "stopped before its process started");
  CHECK(f.t.One("SELECT lease_owner FROM attempts") == "(withdrawn)");
  CHECK(f.ClaimAll().empty());
  CHECK(foreign.watched() == 0);
  CHECK(local.calls == 0);
}

TEST_CASE("a hand-out whose commit is refused ends as never started, and nothing is claimable") {
  HandoutDb f;
  UnusedRunner local;
  kiln::daemon::ForeignAttempts foreign(f.io);
  kiln::daemon::DispatchRunner::Options o;
  o.pools.mode = kiln::daemon::WorkerPools::Mode::kWorkers;
  o.url = f.t.url();
  o.supervisor = kHandoutSupervisor;
  kiln::daemon::DispatchRunner runner(f.io, local, foreign, o);
  sch::LaunchRequest request;
  request.run = f.run;
  request.task = TaskId(0);
  request.task_id = "a";
  request.attempt = 1;
  request.argv = {"/bin/sh", "-c", "true"};
  request.pool = "gpu";
  std::optional<sch::AttemptOutcome> outcome;
  auto handout = runner.HandOut(request, [&](sch::AttemptOutcome out) { outcome = out; });
  REQUIRE(handout.has_value());
  // Another daemon holds the run now: the start is fenced, nothing is written.
  f.t.Rows("UPDATE runs SET lease_owner = 'h:/another'");
  auto u = StartUpdate(f.run, "a", 1, At(1));
  u.start->lease_owner = kHandoutSupervisor;
  u.start->handout = *handout;
  sch::Batch batch;
  batch.tasks.push_back(u);
  const sch::Batch* group[] = {&batch};
  auto fenced = f.db->CommitBatches(group, kHandoutDaemon, std::chrono::minutes(5));
  REQUIRE(fenced.ok());
  REQUIRE(fenced->size() == 1);
  runner.StartRefused(f.run, TaskId(0), 1);
  // A kill after it finds nothing of the attempt to take back.
  runner.Kill(f.run, TaskId(0));
  f.RunUntil(outcome);
  REQUIRE(outcome.has_value());
  CHECK(outcome->killed);
  CHECK_FALSE(outcome->started);
  CHECK(outcome->error == "its start was not recorded");
  CHECK(f.t.One("SELECT count(*) FROM attempts") == "0");
  CHECK(f.ClaimAll().empty());
  CHECK(foreign.watched() == 0);
  CHECK(local.calls == 1);  // the kill went to the daemon's own runner, which has nothing
}
