// The leader lease of the daemons on one database (Database::Lead, ResignLead, Leader) and the
// fence it puts on schedule fires and takeovers, against a real PostgreSQL.
#include <atomic>
#include <thread>

#include "tests/store/run_fixtures.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;

namespace {

constexpr auto kLease = std::chrono::seconds(30);

std::optional<int64_t> LeadOrFail(Database& db, const std::string& holder) {
  auto led = db.Lead(holder, kLease);
  REQUIRE(led.ok());
  return *led;
}

// Ends the live lease as the database's clock would after `lease` without renewal.
void Expire(TestDatabase& t) {
  t.Rows("UPDATE leader SET expires_at = now() - interval '1 second'");
}

FireDecision OneRun(const ScheduleState& state) {
  FireDecision d;
  const Instant logical = state.cursor.value_or(At(0)) + std::chrono::hours(1);
  NewRun run = SimpleRun({"a"});
  run.pipeline = "p";
  run.version_hash = "v1";
  run.source = "";
  run.trigger = "schedule";
  run.logical_date = logical;
  d.runs.push_back(std::move(run));
  d.cursor = logical;
  return d;
}

}  // namespace

TEST_CASE("one holder leads at a time, and the term grows each time the lease changes hands") {
  TestDatabase t;
  auto db = t.Open();
  auto none = db->Leader();
  REQUIRE(none.ok());
  CHECK_FALSE(*none);
  CHECK(LeadOrFail(*db, "h:/a") == 1);
  CHECK(t.One("SELECT holder, term, expires_at - since FROM leader") == "h:/a|1|00:00:30");
  CHECK(LeadOrFail(*db, "h:/b") == std::nullopt);  // a's lease is live
  CHECK(LeadOrFail(*db, "h:/a") == 1);             // kept: the same term, moved forward
  CHECK(t.One("SELECT holder, term, expires_at - since > interval '30 seconds' FROM leader") ==
        "h:/a|1|t");
  Expire(t);
  // Lapsed: b takes it in a new term, and a follows from now on.
  CHECK(LeadOrFail(*db, "h:/b") == 2);
  CHECK(LeadOrFail(*db, "h:/a") == std::nullopt);
  auto state = db->Leader();
  REQUIRE(state.ok());
  REQUIRE(*state);
  CHECK((*state)->holder == "h:/b");
  CHECK((*state)->term == 2);
  CHECK((*state)->live);
  // A holder that lapsed and takes the lease back gets a new term too: what it began in the old
  // one is fenced off.
  Expire(t);
  CHECK(LeadOrFail(*db, "h:/b") == 3);
  // Resigning ends it at once; the next one to ask takes it.
  REQUIRE(db->ResignLead("h:/a").ok());  // not the holder: nothing
  CHECK(LeadOrFail(*db, "h:/a") == std::nullopt);
  REQUIRE(db->ResignLead("h:/b").ok());
  auto resigned = db->Leader();
  REQUIRE(resigned.ok());
  CHECK_FALSE((*resigned)->live);
  CHECK(LeadOrFail(*db, "h:/a") == 4);
  CHECK(t.Rows("SELECT term, holder FROM leader_terms ORDER BY term") ==
        std::vector<std::string>{"1|h:/a", "2|h:/b", "3|h:/b", "4|h:/a"});
}

TEST_CASE("daemons asking for the lease at once: exactly one leads") {
  TestDatabase t;
  t.Open();
  constexpr int kThreads = 6;
  std::atomic<int> leading{0}, following{0}, failed{0}, connected{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto db = Database::Connect(t.url());
      ++connected;
      if (!db.ok()) {
        ++failed;
        return;
      }
      while (!go) std::this_thread::yield();
      auto led = (*db)->Lead("h:/" + std::to_string(i), kLease);
      if (!led.ok()) {
        ++failed;
      } else if (*led) {
        ++leading;
      } else {
        ++following;
      }
    });
  }
  // Every thread connected first, so that their statements meet at the row.
  while (connected < kThreads) std::this_thread::yield();
  go = true;
  for (auto& th : threads) th.join();
  CHECK(failed == 0);
  CHECK(leading == 1);
  CHECK(following == kThreads - 1);
  CHECK(t.One("SELECT count(*), min(term) FROM leader_terms") == "1|1");
}

TEST_CASE("a fire or a takeover under a term that is over writes nothing") {
  TestDatabase t;
  auto db = t.Open();
  REQUIRE(LeadOrFail(*db, "h:/a") == 1);
  // The leader fires under its term.
  auto fired = db->FireSchedule("p", "v1", "", OneRun, LeaderFence{"h:/a", 1});
  REQUIRE(fired.ok());
  CHECK(fired->runs.size() == 1);
  // Its lease lapses and b leads: a's next fire, under term 1, is refused whole.
  Expire(t);
  REQUIRE(LeadOrFail(*db, "h:/b") == 2);
  auto stale = db->FireSchedule("p", "v1", "", OneRun, LeaderFence{"h:/a", 1});
  REQUIRE_FALSE(stale.ok());
  CHECK(stale.status().code() == ErrorCode::kConflict);
  CHECK(stale.message() == "'h:/a' is not the leader (term 1 is over): another daemon leads");
  CHECK(t.One("SELECT count(*) FROM runs") == "1");
  // So is the same holder's fence of a term that ended, and one of an expired lease.
  CHECK_FALSE(db->FireSchedule("p", "v1", "", OneRun, LeaderFence{"h:/b", 1}).ok());
  auto next = db->FireSchedule("p", "v1", "", OneRun, LeaderFence{"h:/b", 2});
  REQUIRE(next.ok());
  CHECK(next->runs.size() == 1);
  // Takeover: a run of a daemon whose lease expired is taken only under the live term.
  NewRun run = SimpleRun({"x"});
  run.lease_owner = "h:/gone";
  CreateOrFail(*db, run);
  auto refused = db->TakeOverRuns("h:/a", 100, LeaderFence{"h:/a", 1});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == ErrorCode::kConflict);
  CHECK(t.One("SELECT count(*) FROM runs WHERE lease_owner = 'h:/gone'") == "1");
  auto taken = db->TakeOverRuns("h:/b", 100, LeaderFence{"h:/b", 2});
  REQUIRE(taken.ok());
  CHECK(taken->taken.size() == 1);
  CHECK(t.One("SELECT count(*) FROM runs WHERE lease_owner = 'h:/gone'") == "0");
  Expire(t);
  CHECK_FALSE(db->FireSchedule("p", "v1", "", OneRun, LeaderFence{"h:/b", 2}).ok());
  CHECK(t.One("SELECT count(*) FROM runs WHERE trigger = 'schedule'") == "2");
}
