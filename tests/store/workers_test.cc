// Remote workers against a real PostgreSQL: handing attempts out, claims (pool slots, priority,
// SKIP LOCKED between claimers), ends fenced by the claim, logs shipped in chunks, history.
#include <thread>

#include "store/event_listener.h"
#include "tests/store/run_fixtures.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;
using Rows = std::vector<std::string>;
using scheduler::AttemptKey;

namespace {

constexpr const char* kDaemon = "h:/d";
constexpr const char* kLocal = "h:/d/supervisor";

// A run of `tasks` driven by kDaemon whose tasks all run attempt 1 under its supervisor.
RunId Started(Database& db, const std::vector<std::string>& tasks) {
  NewRun run = SimpleRun(tasks);
  run.lease_owner = kDaemon;
  const RunId id = CreateOrFail(db, run);
  scheduler::Batch batch;
  for (const std::string& task : tasks) {
    auto u = StartUpdate(id, task, 1, At(1));
    u.start->lease_owner = kLocal;
    batch.tasks.push_back(u);
  }
  const scheduler::Batch* group[] = {&batch};
  auto committed = db.CommitBatches(group, kDaemon, std::chrono::minutes(5));
  REQUIRE(committed.ok());
  REQUIRE(committed->empty());
  return id;
}

std::vector<Dispatch> Out(RunId run, const std::vector<std::string>& tasks, const std::string& pool,
                          int priority = 0, int slots = 1) {
  std::vector<Dispatch> out;
  for (const std::string& task : tasks) {
    out.push_back(
        Dispatch{{run, task, 1}, pool, priority, slots, "launch of " + task + '\0' + "!"});
  }
  return out;
}

// Worker `name`'s supervisor holds a live lease (a claim needs one).
void Live(Database& db, const std::string& name) {
  REQUIRE(db.RenewLease(name + "/supervisor", "supervisor", name, std::chrono::minutes(5)).ok());
  REQUIRE(db.RenewWorker(name, std::vector<std::string>{"gpu"}, 8, std::chrono::minutes(5)).ok());
}

Rows Keys(const std::vector<Claimed>& claimed) {
  Rows out;
  for (const Claimed& c : claimed) out.push_back(c.key.task_id);
  return out;
}

scheduler::AttemptOutcome Exited(int code) {
  scheduler::AttemptOutcome o;
  o.started = true;
  o.exit_code = code;
  o.started_at = At(1);
  o.ended_at = At(2);
  return o;
}

}  // namespace

TEST_CASE("attempts handed out are claimed by priority then age, with their launch bytes") {
  TestDatabase t;
  auto db = t.Open();
  for (const char* w : {"w0", "w1", "w2"}) Live(*db, w);
  const RunId run = Started(*db, {"a", "b", "c"});
  auto out = Out(run, {"a", "b"}, "gpu");
  auto late = Out(run, {"c"}, "gpu", 5);
  auto handed = db->Dispatch(kLocal, out);
  REQUIRE(handed.ok());
  CHECK(handed->size() == 2);
  REQUIRE(db->Dispatch(kLocal, late).ok());
  CHECK(t.One("SELECT string_agg(task_id || ':' || lease_owner, ' ' ORDER BY task_id) FROM "
              "attempts") == "a:(dispatched) b:(dispatched) c:(dispatched)");
  // Another pool's worker finds nothing; the first claim takes the highest priority first.
  auto none = db->Claim("w0", "w0/supervisor", std::vector<std::string>{"cpu"}, 5);
  REQUIRE(none.ok());
  CHECK(none->empty());
  auto first = db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 2);
  REQUIRE(first.ok());
  CHECK(Keys(*first) == Rows{"c", "a"});
  CHECK((*first)[1].launch == std::string("launch of a\0!", 13));
  CHECK((*first)[1].pool == "gpu");
  auto second = db->Claim("w2", "w2/supervisor", std::vector<std::string>{"gpu"}, 5);
  REQUIRE(second.ok());
  CHECK(Keys(*second) == Rows{"b"});
  CHECK(t.One("SELECT string_agg(task_id || ':' || lease_owner || ':' || worker, ' ' ORDER BY "
              "task_id) FROM attempts") ==
        "a:w1/supervisor:w1 b:w2/supervisor:w2 c:w1/supervisor:w1");
  CHECK(t.One("SELECT string_agg(worker || ':' || kind || ':' || task_id, ' ' ORDER BY id) FROM "
              "worker_history") == "w1:claim:c w1:claim:a w2:claim:b");
  // A second hand-out of the same attempts changes nothing: they are no longer the daemon's.
  auto again = db->Dispatch(kLocal, out);
  REQUIRE(again.ok());
  CHECK(again->empty());
}

TEST_CASE(
    "a start handed out in its own commit is claimable at once, and its pool's workers told") {
  TestDatabase t;
  auto db = t.Open();
  Live(*db, "w1");
  NewRun run = SimpleRun({"a", "b", "c"});
  run.lease_owner = kDaemon;
  const RunId id = CreateOrFail(*db, run);
  auto listener = EventListener::Connect(t.url(), {"kiln_dispatch"});
  REQUIRE(listener.ok());
  scheduler::Batch batch;
  for (const std::string task : {"a", "b"}) {
    auto u = StartUpdate(id, task, 1, At(1));
    u.start->lease_owner = kLocal;
    u.start->handout =
        scheduler::Handout{"gpu", task == "b" ? 3 : 0, 1, "launch of " + task + '\0'};
    batch.tasks.push_back(u);
  }
  auto c = StartUpdate(id, "c", 1, At(1));  // not handed out: its daemon's supervisor runs it
  c.start->lease_owner = kLocal;
  batch.tasks.push_back(c);
  const scheduler::Batch* group[] = {&batch};
  auto committed = db->CommitBatches(group, kDaemon, std::chrono::minutes(5));
  REQUIRE(committed.ok());
  REQUIRE(committed->empty());
  CHECK(t.Rows("SELECT task_id || ':' || lease_owner || ':' || coalesce(pool, '-') || ':' || "
               "priority || ':' || (dispatched_at IS NOT NULL) FROM attempts ORDER BY task_id") ==
        Rows{"a:(dispatched):gpu:0:true", "b:(dispatched):gpu:3:true",
             "c:h:/d/supervisor:-:0:false"});
  // The task rows name the daemon's supervisor, as for any start.
  CHECK(t.One("SELECT string_agg(lease_owner, ' ' ORDER BY task_id) FROM task_instances") ==
        "h:/d/supervisor h:/d/supervisor h:/d/supervisor");
  auto woken = (*listener)->Wait(std::chrono::seconds(60));
  REQUIRE(woken.ok());
  REQUIRE(*woken);
  auto notes = (*listener)->Take();
  REQUIRE(notes.size() == 1);  // one per pool and transaction
  CHECK(notes[0].channel == "kiln_dispatch");
  CHECK(notes[0].payload == "gpu");
  auto claimed = db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 5);
  REQUIRE(claimed.ok());
  CHECK(Keys(*claimed) == Rows{"b", "a"});
  CHECK((*claimed)[1].launch == std::string("launch of a\0", 12));
}

TEST_CASE("a handed-out start that is fenced writes nothing a worker could claim") {
  TestDatabase t;
  auto db = t.Open();
  Live(*db, "w1");
  NewRun run = SimpleRun({"a"});
  run.lease_owner = "h:/another";
  const RunId id = CreateOrFail(*db, run);
  scheduler::Batch batch;
  auto u = StartUpdate(id, "a", 1, At(1));
  u.start->lease_owner = kLocal;
  u.start->handout = scheduler::Handout{"gpu", 0, 1, "launch"};
  batch.tasks.push_back(u);
  const scheduler::Batch* group[] = {&batch};
  auto committed = db->CommitBatches(group, kDaemon, std::chrono::minutes(5));
  REQUIRE(committed.ok());
  CHECK(committed->size() == 1);
  CHECK(t.One("SELECT count(*) FROM attempts") == "0");
  auto claimed = db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 5);
  REQUIRE(claimed.ok());
  CHECK(claimed->empty());
}

TEST_CASE("a pool's slots hold across claimers, and free up when the daemon ends an attempt") {
  TestDatabase t;
  auto db = t.Open();
  REQUIRE(db->SetPools(kDaemon, {{"gpu", 2}, {"default", 16}}).ok());
  for (const char* w : {"w1", "w2", "w3"}) Live(*db, w);
  const RunId run = Started(*db, {"a", "b", "c", "d"});
  REQUIRE(db->Dispatch(kLocal, Out(run, {"a", "b", "c", "d"}, "gpu")).ok());
  auto w1 = db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 1);
  REQUIRE(w1.ok());
  CHECK(w1->size() == 1);
  auto w2 = db->Claim("w2", "w2/supervisor", std::vector<std::string>{"gpu"}, 8);
  REQUIRE(w2.ok());
  CHECK(w2->size() == 1);  // the pool has 2 slots
  auto w3 = db->Claim("w3", "w3/supervisor", std::vector<std::string>{"gpu"}, 8);
  REQUIRE(w3.ok());
  CHECK(w3->empty());
  // The worker records its end; the slot is held until the daemon decides it.
  std::vector<RecordedOutcome> ends = {{(*w1)[0].key, Exited(0)}};
  auto refused = db->RecordWorkerEnds("w1", "w1/supervisor", ends);
  REQUIRE(refused.ok());
  CHECK(refused->empty());
  auto still = db->Claim("w3", "w3/supervisor", std::vector<std::string>{"gpu"}, 8);
  REQUIRE(still.ok());
  CHECK(still->empty());
  scheduler::Batch end;
  end.tasks.push_back(EndUpdate(run, (*w1)[0].key.task_id, 1, dag::TaskState::kSuccess, At(3), 0));
  const scheduler::Batch* group[] = {&end};
  REQUIRE(db->CommitBatches(group, kDaemon, std::chrono::minutes(5)).ok());
  auto freed = db->Claim("w3", "w3/supervisor", std::vector<std::string>{"gpu"}, 8);
  REQUIRE(freed.ok());
  CHECK(freed->size() == 1);
  // A smaller limit written later applies to the next claim.
  REQUIRE(db->SetPools("h:/other", {{"gpu", 1}}).ok());
  CHECK(t.One("SELECT slots || ':' || updated_by FROM pools WHERE name = 'gpu'") == "1:h:/other");
}

TEST_CASE("claims running at once never take the same attempt nor more than the pool's slots") {
  TestDatabase t;
  auto db = t.Open();
  REQUIRE(db->SetPools(kDaemon, {{"gpu", 7}}).ok());
  for (const char* w : {"w0", "w1", "w2", "w3"}) Live(*db, w);
  std::vector<std::string> tasks;
  for (int i = 0; i < 40; ++i) tasks.push_back("t" + std::to_string(i));
  const RunId run = Started(*db, tasks);
  REQUIRE(db->Dispatch(kLocal, Out(run, tasks, "gpu")).ok());
  std::vector<std::thread> claimers;
  std::vector<size_t> got(4);
  for (int w = 0; w < 4; ++w) {
    claimers.emplace_back([&, w] {
      auto conn = t.Open();
      const std::string name = "w" + std::to_string(w);
      for (int i = 0; i < 10; ++i) {
        auto c = conn->Claim(name, name + "/supervisor", std::vector<std::string>{"gpu"}, 3);
        REQUIRE(c.ok());
        got[w] += c->size();
      }
    });
  }
  for (auto& c : claimers) c.join();
  CHECK(got[0] + got[1] + got[2] + got[3] == 7);
  CHECK(t.One("SELECT count(*) FROM attempts WHERE worker IS NOT NULL") == "7");
  CHECK(t.One("SELECT count(*) FROM worker_history WHERE kind = 'claim'") == "7");
  CHECK(t.One("SELECT count(DISTINCT (run_id, task_id, attempt)) FROM worker_history WHERE kind = "
              "'claim'") == "7");
}

TEST_CASE("a worker's end counts only while the attempt is still its own, and is recorded once") {
  TestDatabase t;
  auto db = t.Open();
  Live(*db, "w1");
  const RunId run = Started(*db, {"a", "b"});
  REQUIRE(db->Dispatch(kLocal, Out(run, {"a", "b"}, "gpu")).ok());
  REQUIRE(db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 2).ok());
  // "b" was declared lost and ended by the daemon meanwhile.
  scheduler::Batch lost;
  lost.tasks.push_back(EndUpdate(run, "b", 1, dag::TaskState::kFailed, At(3), 1));
  const scheduler::Batch* group[] = {&lost};
  REQUIRE(db->CommitBatches(group, kDaemon, std::chrono::minutes(5)).ok());
  std::vector<RecordedOutcome> ends = {{{run, "a", 1}, Exited(0)}, {{run, "b", 1}, Exited(0)}};
  auto refused = db->RecordWorkerEnds("w1", "w1/supervisor", ends);
  REQUIRE(refused.ok());
  REQUIRE(refused->size() == 1);
  CHECK(refused->at(0).task_id == "b");
  // Twice: the first report wins.
  auto twice = db->RecordWorkerEnds("w1", "w1/supervisor", ends);
  REQUIRE(twice.ok());
  CHECK(twice->size() == 2);
  // Another worker cannot end an attempt that is not its own.
  auto other = db->RecordWorkerEnds("w2", "w2/supervisor", ends);
  REQUIRE(other.ok());
  CHECK(other->size() == 2);
  CHECK(t.One("SELECT outcome->>'exit_code' FROM attempts WHERE task_id = 'a'") == "0");
  CHECK(t.One("SELECT launch IS NULL FROM attempts WHERE task_id = 'a'") == "t");
  CHECK(t.One("SELECT string_agg(worker || ':' || kind || ':' || task_id, ' ' ORDER BY id) FROM "
              "worker_history WHERE kind <> 'claim'") ==
        "w1:end:a w1:refused:b w1:refused:a w1:refused:b w2:refused:a w2:refused:b");
}

TEST_CASE("an attempt nobody claimed is taken back, and a claimed one is told to stop") {
  TestDatabase t;
  auto db = t.Open();
  Live(*db, "w1");
  Live(*db, "w2");
  const RunId run = Started(*db, {"a", "b"});
  REQUIRE(db->Dispatch(kLocal, Out(run, {"a", "b"}, "gpu")).ok());
  auto claimed = db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 1);
  REQUIRE(claimed.ok());
  REQUIRE(claimed->size() == 1);
  const std::string mine = (*claimed)[0].key.task_id;
  const std::string other = mine == "a" ? "b" : "a";
  auto unclaimed = db->Withdraw({run, other, 1});
  REQUIRE(unclaimed.ok());
  CHECK(*unclaimed);
  auto taken = db->Withdraw({run, mine, 1});
  REQUIRE(taken.ok());
  CHECK_FALSE(*taken);
  // Taken back: no worker claims it any more.
  auto later = db->Claim("w2", "w2/supervisor", std::vector<std::string>{"gpu"}, 5);
  REQUIRE(later.ok());
  CHECK(later->empty());
  CHECK(t.One("SELECT lease_owner FROM attempts WHERE task_id = '" + other + "'") == "(withdrawn)");
  // The claimed one: its supervisor's next renewal says to stop it, if the notification was
  // missed.
  auto renewal = db->RenewSupervisor("w1/supervisor", "w1", std::chrono::minutes(5),
                                     std::vector<AttemptKey>{{run, mine, 1}});
  REQUIRE(renewal.ok());
  REQUIRE(renewal->second.size() == 1);
  CHECK(renewal->second[0].key.task_id == mine);
  CHECK(renewal->second[0].cause == "stop");
}

TEST_CASE("claims count a task's slots, skip runs being cancelled, and need a live supervisor") {
  TestDatabase t;
  auto db = t.Open();
  REQUIRE(db->SetPools(kDaemon, {{"gpu", 3}}).ok());
  const RunId run = Started(*db, {"big", "small", "tiny"});
  const RunId cancelled = Started(*db, {"x"});
  std::vector<Dispatch> out = Out(run, {"big"}, "gpu", 9, 2);
  for (auto& d : Out(run, {"small", "tiny"}, "gpu")) out.push_back(d);
  for (auto& d : Out(cancelled, {"x"}, "gpu", 99)) out.push_back(d);
  REQUIRE(db->Dispatch(kLocal, out).ok());
  REQUIRE(db->RequestCancel(cancelled, "admin", "no").ok());
  // A worker whose supervisor has no lease claims nothing.
  REQUIRE(db->RenewWorker("w1", std::vector<std::string>{"gpu"}, 8, std::chrono::minutes(5)).ok());
  auto dead = db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 8);
  CHECK(dead.status().code() == ErrorCode::kConflict);
  CHECK(t.One("SELECT count(*) FROM attempts WHERE worker IS NOT NULL") == "0");
  Live(*db, "w1");
  // One free slot on the worker: the 2-slot task is passed over, a 1-slot one taken.
  auto one = db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 1);
  REQUIRE(one.ok());
  CHECK(Keys(*one) == Rows{"small"});
  // Then the pool has 2 of 3 left: the 2-slot task fits, the last one waits.
  auto two = db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 8);
  REQUIRE(two.ok());
  CHECK(Keys(*two) == Rows{"big"});
  CHECK((*two)[0].slots == 2);
  auto none = db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 8);
  REQUIRE(none.ok());
  CHECK(none->empty());
  // What the worker holds, for a worker that restarts between a claim and its start.
  auto held = db->ClaimedBy("w1/supervisor");
  REQUIRE(held.ok());
  CHECK(Keys(*held) == Rows{"small", "big"});
  CHECK((*held)[1].launch == std::string("launch of big\0!", 15));
  // A worker of the same name on another host holds the row now: this one claims nothing.
  t.Rows("UPDATE daemons SET hostname = 'elsewhere' WHERE name = 'w1'");
  t.Rows("UPDATE attempts SET state = 'success' WHERE task_id = 'small'");
  auto twin = db->Claim("w1", "w1/supervisor", std::vector<std::string>{"gpu"}, 8);
  CHECK(twin.status().code() == ErrorCode::kConflict);
}

TEST_CASE("a shipped log reads back by offset, whatever the chunks, and goes with its attempt") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = Started(*db, {"a"});
  const AttemptKey key{run, "a", 1};
  std::vector<ShippedLog> chunks = {{key, 0, "hello "}, {key, 6, std::string("wor\0ld", 6)}};
  REQUIRE(db->ShipLogs(chunks).ok());
  REQUIRE(db->ShipLogs(chunks).ok());  // again: nothing doubles
  std::vector<ShippedLog> more = {{key, 12, "\n"}};
  REQUIRE(db->ShipLogs(more).ok());
  auto all = db->ReadShippedLog(key, 0, 1000);
  REQUIRE(all.ok());
  CHECK(all->first == std::string("hello wor\0ld\n", 13));
  CHECK(all->second == 13);
  auto middle = db->ReadShippedLog(key, 3, 5);
  REQUIRE(middle.ok());
  CHECK(middle->first == "lo wo");
  auto past = db->ReadShippedLog(key, 13, 100);
  REQUIRE(past.ok());
  CHECK(past->first.empty());
  CHECK(past->second == 13);
  // A big chunk is stored in pieces and read back across them.
  const RunId big = Started(*db, {"b"});
  std::string text;
  for (int i = 0; text.size() < (5u << 19); ++i) text += std::to_string(i) + '\n';
  std::vector<ShippedLog> large = {{{big, "b", 1}, 0, text}};
  REQUIRE(db->ShipLogs(large).ok());
  CHECK(t.One("SELECT count(*) FROM log_chunks WHERE run_id = " + ToString(big)) == "3");
  auto across = db->ReadShippedLog({big, "b", 1}, (1u << 20) - 5, 10);
  REQUIRE(across.ok());
  CHECK(across->first == text.substr((1u << 20) - 5, 10));
  CHECK(across->second == text.size());
  auto rest = db->ReadShippedLog({big, "b", 1}, 100, text.size());
  REQUIRE(rest.ok());
  CHECK(rest->first == text.substr(100));
  // A chunk for an attempt that does not exist is dropped, not an error.
  std::vector<ShippedLog> stray = {{{run, "a", 9}, 0, "x"}};
  REQUIRE(db->ShipLogs(stray).ok());
  t.Rows("DELETE FROM attempts");
  CHECK(t.One("SELECT count(*) FROM log_chunks") == "0");
}

TEST_CASE("a worker's lease names its pools and slots, and each renewal is in its history") {
  TestDatabase t;
  auto db = t.Open();
  auto term =
      db->RenewWorker("w1", std::vector<std::string>{"gpu", "big"}, 3, std::chrono::seconds(30));
  REQUIRE(term.ok());
  CHECK(*term == 0);
  REQUIRE(db->RenewWorker("w1", std::vector<std::string>{"gpu"}, 2, std::chrono::seconds(30)).ok());
  CHECK(t.One("SELECT kind || ':' || array_to_string(pools, ',') || ':' || slots FROM daemons "
              "WHERE name = 'w1'") == "worker:gpu:2");
  CHECK(t.One("SELECT count(*) FROM worker_history WHERE worker = 'w1' AND kind = 'renew'") == "2");
  // A worker of the same name elsewhere is refused while this lease holds.
  t.Rows("UPDATE daemons SET hostname = 'elsewhere' WHERE name = 'w1'");
  auto twin = db->RenewWorker("w1", std::vector<std::string>{"gpu"}, 2, std::chrono::seconds(30));
  CHECK(twin.status().code() == ErrorCode::kConflict);
  CHECK(twin.message() ==
        "worker name 'w1' is in use by a worker on elsewhere whose lease has not expired; give "
        "this one another --name");
  CHECK(t.One("SELECT count(*) FROM worker_history WHERE worker = 'w1' AND kind = 'renew'") == "2");
  t.Rows("UPDATE daemons SET expires_at = now() - interval '1 second' WHERE name = 'w1'");
  CHECK(db->RenewWorker("w1", std::vector<std::string>{"gpu"}, 2, std::chrono::seconds(30)).ok());
}
