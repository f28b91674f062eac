// DispatchRunner's side of a hand-out in the start's own commit (TaskRunner::HandOut): what the
// commit carries, and what becomes of the attempt when that commit is refused, or when a kill
// comes before it is over. No database: nothing here reaches the dispatcher's thread.
#include "daemon/dispatch.h"

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "executor/wire.h"

namespace {

using kiln::RunId;
using kiln::TaskId;
namespace sch = kiln::scheduler;

// The daemon's own runner: records what reaches it.
struct LocalRunner final : sch::TaskRunner {
  void Start(sch::LaunchRequest request, std::function<void(sch::AttemptOutcome)>) override {
    started.push_back(request.task_id);
  }
  void Kill(RunId, TaskId) override { ++kills; }
  void StartRecorded(RunId, TaskId, int) override { ++recorded; }
  void Adopt(const sch::AdoptRequest&, std::function<void(sch::AttemptOutcome)>) override {
    ++adopted;
  }
  std::vector<std::string> started;
  int kills = 0;
  int recorded = 0;
  int adopted = 0;
};

sch::LaunchRequest Request(const std::string& pool) {
  sch::LaunchRequest r;
  r.run = RunId(7);
  r.task = TaskId(0);
  r.task_id = "train";
  r.attempt = 2;
  r.argv = {"/bin/sh", "-c", "python train.py"};
  r.pool = pool;
  r.priority = 4;
  r.slots = 2;
  return r;
}

struct Fixture {
  Fixture() {
    kiln::daemon::DispatchRunner::Options o;
    o.pools.mode = kiln::daemon::WorkerPools::Mode::kBoth;
    o.pools.pools = {"gpu"};
    o.url = "postgresql:///nowhere?host=/nonexistent";
    o.supervisor = "h:/d/supervisor";
    runner = std::make_unique<kiln::daemon::DispatchRunner>(io, local, foreign, o);
  }
  // Hands `train` out and returns what its commit would carry; on_exit fills `outcome`.
  std::optional<sch::Handout> HandOut() {
    return runner->HandOut(Request("gpu"), [this](sch::AttemptOutcome o) { outcome = o; });
  }
  boost::asio::io_context io;
  LocalRunner local;
  kiln::daemon::ForeignAttempts foreign{io};
  std::unique_ptr<kiln::daemon::DispatchRunner> runner;
  std::optional<sch::AttemptOutcome> outcome;
};

}  // namespace

TEST_CASE("only the pools on workers are handed out, with the launch a worker decodes") {
  Fixture f;
  CHECK(f.runner->HandsOut("gpu"));
  CHECK_FALSE(f.runner->HandsOut("default"));
  auto h = f.HandOut();
  REQUIRE(h.has_value());
  CHECK(h->pool == "gpu");
  CHECK(h->priority == 4);
  CHECK(h->slots == 2);
  // As a worker reads it (daemon/worker.cc).
  kiln::executor::wire::Reader reader(h->launch);
  REQUIRE(reader.U8() == static_cast<uint8_t>(kiln::executor::wire::Type::kStart));
  auto launch = kiln::executor::wire::DecodeLaunch(reader);
  REQUIRE(launch.has_value());
  CHECK(launch->key == sch::AttemptKey{RunId(7), "train", 2});
  CHECK(launch->argv == std::vector<std::string>{"/bin/sh", "-c", "python train.py"});
  CHECK(launch->confirmed);  // claimable only once committed: the worker runs a recorded start
  CHECK(f.foreign.watched() == 1);  // its end is read from the database
  CHECK(f.local.started.empty());
}

TEST_CASE("a hand-out whose start is refused ends at once, never started") {
  Fixture f;
  REQUIRE(f.HandOut().has_value());
  f.runner->StartRefused(RunId(7), TaskId(0), 2);
  f.io.run();
  REQUIRE(f.outcome.has_value());
  CHECK_FALSE(f.outcome->started);
  CHECK(f.outcome->killed);
  CHECK(f.outcome->error == "its start was not recorded");
  CHECK(f.foreign.watched() == 0);
  // What follows for it (the scheduler stops a refused start) reaches the local runner only.
  f.runner->Kill(RunId(7), TaskId(0));
  CHECK(f.local.kills == 1);
}

TEST_CASE("a kill before a hand-out's commit is over waits for it, and never reaches local") {
  Fixture f;
  REQUIRE(f.HandOut().has_value());
  f.runner->Kill(RunId(7), TaskId(0));  // no row to take back yet: kept for the commit's end
  CHECK(f.local.kills == 0);
  f.runner->StartRefused(RunId(7), TaskId(0), 2);
  f.io.run();
  REQUIRE(f.outcome.has_value());
  CHECK(f.outcome->error == "its start was not recorded");
}

TEST_CASE("a start the database records is watched there, and a stale report is ignored") {
  Fixture f;
  REQUIRE(f.HandOut().has_value());
  f.runner->StartRefused(RunId(7), TaskId(0), 1);  // another attempt: not this hand-out
  f.runner->StartRecorded(RunId(7), TaskId(0), 2);
  f.runner->StartRefused(RunId(7), TaskId(0), 2);  // settled already: changes nothing
  f.io.poll();
  CHECK_FALSE(f.outcome.has_value());
  CHECK(f.foreign.watched() == 1);
}

TEST_CASE("a hand-out adopted from its row before its commit was heard of is settled") {
  Fixture f;
  REQUIRE(f.HandOut().has_value());
  f.runner->Kill(RunId(7), TaskId(0));  // held for the commit
  sch::AdoptRequest adopt;
  adopt.run = RunId(7);
  adopt.task = TaskId(0);
  adopt.task_id = "train";
  adopt.attempt = 2;
  adopt.supervisor = "(dispatched)";
  f.runner->Adopt(adopt, [](sch::AttemptOutcome) {});
  CHECK(f.local.adopted == 1);
  // Nothing of the hand-out is held any more: a late word of its commit is not its.
  f.runner->StartRecorded(RunId(7), TaskId(0), 2);
  CHECK(f.local.recorded == 1);
}
