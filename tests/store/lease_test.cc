// Leases, takeover and recovery reads against a real PostgreSQL: who drives a run, what a
// supervisor recorded, what a daemon that starts (or takes over) finds.
#include "tests/store/run_fixtures.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;
using dag::TaskState;
using Rows = std::vector<std::string>;

namespace {

RunId OwnedRun(Database& db, const std::string& owner, std::vector<std::string> tasks,
               const std::string& trigger = "manual") {
  NewRun run = SimpleRun(std::move(tasks));
  run.lease_owner = owner;
  run.trigger = trigger;
  return CreateOrFail(db, run);
}

Result<std::vector<RefusedUpdate>> CommitAs(Database& db, const std::string& owner,
                                            scheduler::Batch batch) {
  const scheduler::Batch* group[] = {&batch};
  return db.CommitBatches(group, owner, std::chrono::minutes(5));
}

scheduler::Batch Of(std::vector<scheduler::TaskUpdate> updates) {
  scheduler::Batch b;
  b.tasks = std::move(updates);
  return b;
}

scheduler::AttemptOutcome Exited(int code) {
  scheduler::AttemptOutcome o;
  o.started = true;
  o.exit_code = code;
  o.started_at = At(1);
  o.ended_at = At(9);
  o.cpu = Duration(700);
  o.max_rss_kb = 4096;
  return o;
}

}  // namespace

TEST_CASE("a lease is renewed on the database clock and its term grows only on takeover") {
  TestDatabase t;
  auto db = t.Open();
  auto first = db->RenewLease("h:/a", "daemon", "", std::chrono::seconds(30));
  REQUIRE(first.ok());
  CHECK(first->term == 0);
  CHECK(t.One("SELECT kind, expires_at - heartbeat_at FROM daemons WHERE name = 'h:/a'") ==
        "daemon|00:00:30");
  REQUIRE(db->RenewLease("h:/a", "daemon", "", std::chrono::seconds(30)).ok());
  CHECK(t.One("SELECT count(*) FROM daemons") == "1");
  // A supervisor names its daemon.
  REQUIRE(db->RenewLease("h:/a/supervisor", "supervisor", "h:/a", std::chrono::seconds(9)).ok());
  CHECK(t.One("SELECT kind, daemon FROM daemons WHERE name = 'h:/a/supervisor'") ==
        "supervisor|h:/a");
  REQUIRE(db->ReleaseLease("h:/a/supervisor").ok());
  CHECK(t.One("SELECT count(*) FROM daemons") == "1");
}

TEST_CASE("commits change only the runs their daemon drives, a fenced end keeps its outcome") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = OwnedRun(*db, "h:/a", {"train", "eval"});
  auto started = CommitAs(*db, "h:/a", Of({StartUpdate(run, "train", 1, At(1))}));
  REQUIRE(started.ok());
  CHECK(started->empty());

  // Another daemon cannot write to it: fenced, with the owner in the event.
  auto other = CommitAs(*db, "h:/b", Of({StartUpdate(run, "eval", 1, At(2))}));
  REQUIRE(other.ok());
  REQUIRE(other->size() == 1);
  CHECK((*other)[0].Describe() ==
        "run 1 task 'eval' attempt 1: late update to running ignored (the run is driven by h:/a)");
  CHECK(t.One("SELECT detail->>'owner' FROM events WHERE kind = 'fenced'") == "h:/a");

  // Taken over by h:/b: the end h:/a reports is fenced, but the attempt keeps the outcome for
  // h:/b to decide from.
  t.Rows("UPDATE runs SET lease_owner = 'h:/b'");
  auto end = EndUpdate(run, "train", 1, TaskState::kSuccess, At(9), 0);
  end.end->outcome = Exited(0);
  auto late = CommitAs(*db, "h:/a", Of({end}));
  REQUIRE(late.ok());
  CHECK(late->size() == 1);
  CHECK(t.One("SELECT state FROM task_instances WHERE task_id = 'train'") == "running");
  CHECK(t.One("SELECT state, outcome->>'exit_code', outcome->>'cpu_ms' FROM attempts") ==
        "running|0|700");
  auto active = db->ActiveRunsOf("h:/b");
  REQUIRE(active.ok());
  REQUIRE(active->size() == 1);
  REQUIRE((*active)[0].open.size() == 1);
  const OpenAttempt& open = (*active)[0].open[0];
  CHECK(open.task_id == "train");
  CHECK(open.attempt == 1);
  CHECK(open.supervisor == "worker-1");
  CHECK_FALSE(open.supervisor_alive);
  REQUIRE(open.outcome.has_value());
  CHECK(open.outcome->exit_code == 0);
  CHECK(open.outcome->max_rss_kb == 4096);

  // The new owner's end applies and keeps the first outcome.
  auto decided =
      CommitAs(*db, "h:/b", Of({EndUpdate(run, "train", 1, TaskState::kSuccess, At(10), 0)}));
  REQUIRE(decided.ok());
  CHECK(decided->empty());
  CHECK(t.One("SELECT state, outcome->>'exit_code' FROM attempts") == "success|0");
}

TEST_CASE("runs of an expired daemon are taken over once, a kiln run's run ends cancelled") {
  TestDatabase t;
  auto db = t.Open();
  REQUIRE(db->RenewLease("h:/a", "daemon", "", std::chrono::seconds(30)).ok());
  REQUIRE(db->RenewLease("h:/b", "daemon", "", std::chrono::seconds(30)).ok());
  const RunId a1 = OwnedRun(*db, "h:/a", {"x"});
  const RunId a2 = OwnedRun(*db, "h:/a", {"x"});
  const RunId cli = OwnedRun(*db, "h:/a:run:7", {"x", "y"}, "cli");
  REQUIRE(CommitAs(*db, "h:/a:run:7", Of({StartUpdate(cli, "x", 1, At(1))})).ok());
  const RunId b1 = OwnedRun(*db, "h:/b", {"x"});

  // Nothing has expired (the kiln run has no lease row: it counts as expired).
  auto none = db->TakeOverRuns("h:/b", 100);
  REQUIRE(none.ok());
  CHECK(none->taken.empty());
  CHECK(none->cancelled == std::vector<RunId>{cli});
  CHECK(t.Rows("SELECT task_id, state FROM task_instances WHERE run_id = " + ToString(cli) +
               " ORDER BY 1") == Rows{"x|cancelled", "y|cancelled"});
  CHECK(t.One("SELECT state, reason FROM attempts WHERE run_id = " + ToString(cli)) ==
        "cancelled|the kiln run process that drove it (h:/a:run:7) is gone");

  t.Rows("UPDATE daemons SET expires_at = now() - interval '1 second' WHERE name = 'h:/a'");
  auto taken = db->TakeOverRuns("h:/b", 100);
  REQUIRE(taken.ok());
  CHECK(taken->taken == std::vector<RunId>{a1, a2});
  CHECK(t.Rows("SELECT id, lease_owner FROM runs WHERE state IN ('queued', 'running') ORDER BY "
               "id") ==
        Rows{ToString(a1) + "|h:/b", ToString(a2) + "|h:/b", ToString(b1) + "|h:/b"});
  CHECK(t.Rows("SELECT run_id, actor, detail->>'from' FROM events WHERE kind = "
               "'run_taken_over' ORDER BY id") ==
        Rows{ToString(a1) + "|h:/b|h:/a", ToString(a2) + "|h:/b|h:/a"});
  // h:/a learns of it at its next renewal: the term grew.
  auto renewed = db->RenewLease("h:/a", "daemon", "", std::chrono::seconds(30));
  REQUIRE(renewed.ok());
  CHECK(renewed->term == 1);
  // Nothing is taken twice.
  auto again = db->TakeOverRuns("h:/c", 100);
  REQUIRE(again.ok());
  CHECK(again->taken.empty());
}

TEST_CASE("a supervisor records ends, learns what to stop, and its liveness is read back") {
  TestDatabase t;
  auto db = t.Open();
  REQUIRE(db->RenewLease("h:/a", "daemon", "", std::chrono::seconds(30)).ok());
  const RunId run = OwnedRun(*db, "h:/a", {"a", "b", "c"});
  auto start = [&](const std::string& task) {
    auto u = StartUpdate(run, task, 1, At(1));
    u.start->lease_owner = "h:/a/supervisor";
    return u;
  };
  REQUIRE(CommitAs(*db, "h:/a", Of({start("a"), start("b"), start("c")})).ok());
  auto renewal = db->RenewSupervisor(
      "h:/a/supervisor", "h:/a", std::chrono::seconds(30),
      std::vector<scheduler::AttemptKey>{{run, "a", 1}, {run, "b", 1}, {run, "c", 1}});
  REQUIRE(renewal.ok());
  CHECK(renewal->second.empty());
  // Another supervisor with the same attempt (a start of it it sent unrecorded): not its own.
  auto other = db->RenewSupervisor("h:/b/supervisor", "h:/b", std::chrono::seconds(30),
                                   std::vector<scheduler::AttemptKey>{{run, "c", 1}});
  REQUIRE(other.ok());
  REQUIRE(other->second.size() == 1);
  CHECK(other->second[0].cause == "superseded");
  // Which starts are recorded under a supervisor: its own running attempts only.
  const std::vector<scheduler::AttemptKey> asked = {{run, "a", 1}, {run, "a", 2}, {run, "c", 1}};
  auto recorded = db->StartsRecorded("h:/a/supervisor", asked, std::chrono::seconds(1));
  REQUIRE(recorded.ok());
  CHECK(*recorded == std::set<scheduler::AttemptKey>{{run, "a", 1}, {run, "c", 1}});
  auto not_its = db->StartsRecorded("h:/b/supervisor", asked, std::chrono::seconds(1));
  REQUIRE(not_its.ok());
  CHECK(not_its->empty());

  // "a" ended; "b" was given up by its run (marked by hand in the database).
  std::vector<RecordedOutcome> ends = {{{run, "a", 1}, Exited(3)}};
  REQUIRE(db->RecordOutcomes("h:/a/supervisor", ends).ok());
  REQUIRE(db->RecordOutcomes("h:/a/supervisor", ends).ok());  // twice: first report wins
  t.Rows("UPDATE task_instances SET state = 'success' WHERE task_id = 'b'");
  auto active = db->ActiveRunsOf("h:/a");
  REQUIRE(active.ok());
  REQUIRE(active->size() == 1);
  const auto& open = (*active)[0].open;
  REQUIRE(open.size() == 2);  // "b" is not running any more
  CHECK(open[0].task_id == "a");
  CHECK(open[0].supervisor_alive);
  REQUIRE(open[0].outcome.has_value());
  CHECK(open[0].outcome->exit_code == 3);
  CHECK(open[1].task_id == "c");
  CHECK_FALSE(open[1].outcome.has_value());

  auto stops =
      db->RenewSupervisor("h:/a/supervisor", "h:/a", std::chrono::seconds(30),
                          std::vector<scheduler::AttemptKey>{{run, "b", 1}, {run, "c", 1}});
  REQUIRE(stops.ok());
  REQUIRE(stops->second.size() == 1);
  CHECK(stops->second[0].key.task_id == "b");
  CHECK(stops->second[0].cause == "superseded");

  // A cancel requested (through any daemon): the supervisor stops what remains.
  auto owner = db->RequestCancel(run, "admin", "cancelled by admin");
  REQUIRE(owner.ok());
  CHECK(*owner == "h:/a");
  auto cancel = db->RenewSupervisor("h:/a/supervisor", "h:/a", std::chrono::seconds(30),
                                    std::vector<scheduler::AttemptKey>{{run, "c", 1}});
  REQUIRE(cancel.ok());
  REQUIRE(cancel->second.size() == 1);
  CHECK(cancel->second[0].cause == "cancel");
  auto daemon = db->RenewLease("h:/a", "daemon", "", std::chrono::seconds(30));
  REQUIRE(daemon.ok());
  CHECK(daemon->cancels == std::vector<std::pair<RunId, std::string>>{{run, "cancelled by admin"}});
  CHECK(t.One("SELECT actor, detail->>'reason' FROM events WHERE kind = 'cancel_requested'") ==
        "admin|cancelled by admin");

  // Its lease expires: attempts of it read as not alive.
  t.Rows(
      "UPDATE daemons SET expires_at = now() - interval '1 second' WHERE kind = "
      "'supervisor'");
  auto statuses =
      db->AttemptStatuses(std::vector<scheduler::AttemptKey>{{run, "c", 1}, {run, "b", 1}});
  REQUIRE(statuses.ok());
  REQUIRE(statuses->size() == 2);
  CHECK((*statuses)[0].current);
  CHECK_FALSE((*statuses)[0].attempt.supervisor_alive);
  CHECK_FALSE((*statuses)[1].current);
}

TEST_CASE("a cancel cannot be requested of an ended run, and a version's source is kept") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = OwnedRun(*db, "h:/a", {"a"});
  t.Rows("UPDATE runs SET state = 'success'");
  auto ended = db->RequestCancel(run, "admin", "no");
  REQUIRE_FALSE(ended.ok());
  CHECK(ended.status().code() == ErrorCode::kConflict);
  CHECK(ended.message() == "run 1 has already ended (success)");
  auto source = db->PipelineSource("train", "abc123");
  REQUIRE(source.ok());
  CHECK(*source == "[pipeline]\nname = \"train\"\n");
  auto missing = db->PipelineSource("train", "ffffffffffffffff");
  CHECK(missing.message() == "pipeline 'train' version ffffffffffff is not kept");
}

TEST_CASE("the version last loaded of a pipeline, or from a file, is the one a restart keeps") {
  TestDatabase t;
  auto db = t.Open();
  auto last = [&](const std::string& pipeline, const std::string& file) {
    auto found = db->LastLoadedVersion(pipeline, file);
    REQUIRE(found.ok());
    return *found ? (*found)->pipeline + "@" + (*found)->hash + ":" + (*found)->source
                  : std::string("none");
  };
  // A version only a run wrote (kiln run) was not loaded from a daemon's folder.
  OwnedRun(*db, "h:/a", {"a"});
  CHECK(last("train", "/p/train.toml") == "none");
  const LoadedVersion v1{"train", "h1", "one", "/p/train.toml"};
  const LoadedVersion v2{"train", "h2", "two", "/p/train.toml"};
  const LoadedVersion other{"etl", "e1", "etl", "/p/etl.toml"};
  REQUIRE(db->RecordLoaded(std::vector<LoadedVersion>{v1, other}).ok());
  t.Rows("UPDATE pipeline_versions SET loaded_at = loaded_at - interval '1 minute'");
  REQUIRE(db->RecordLoaded(std::vector<LoadedVersion>{v2}).ok());
  CHECK(last("train", "") == "train@h2:two");
  CHECK(last("", "/p/train.toml") == "train@h2:two");
  CHECK(last("", "/p/etl.toml") == "etl@e1:etl");
  // Loaded again (an edit undone): the last one once more, from the file it is in now.
  t.Rows("UPDATE pipeline_versions SET loaded_at = loaded_at - interval '1 minute'");
  REQUIRE(db->RecordLoaded(std::vector<LoadedVersion>{{"train", "h1", "one", "/q/t.toml"}}).ok());
  CHECK(last("train", "") == "train@h1:one");
  CHECK(last("", "/q/t.toml") == "train@h1:one");
  CHECK(last("", "/p/train.toml") == "train@h2:two");
  CHECK(t.One("SELECT count(*) FROM pipeline_versions") == "4");
  // A deleted file finds nothing any more; its pipeline's versions stay.
  REQUIRE(db->ForgetLoadedFiles(std::vector<std::string>{"/p/etl.toml"}).ok());
  CHECK(last("", "/p/etl.toml") == "none");
  CHECK(last("etl", "") == "none");  // found by name only among versions loaded from a file
  CHECK(t.One("SELECT count(*) FROM pipeline_versions WHERE pipeline = 'etl'") == "1");
  // A path is bytes, not always UTF-8: found again all the same.
  REQUIRE(db->RecordLoaded(std::vector<LoadedVersion>{{"bytes", "b1", "b", "/p/\xff.toml"}}).ok());
  CHECK(last("", "/p/\xff.toml") == "bytes@b1:b");
  CHECK(last("nope", "") == "none");
}

TEST_CASE("a retry starts a new round: retries count from the attempt it left off at") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = OwnedRun(*db, "h:/a", {"a"});
  REQUIRE(CommitAs(*db, "h:/a", Of({StartUpdate(run, "a", 1, At(1))})).ok());
  REQUIRE(CommitAs(*db, "h:/a", Of({EndUpdate(run, "a", 1, TaskState::kFailed, At(2), 1)})).ok());
  t.Rows("UPDATE runs SET state = 'failed'");
  std::vector<std::string> tasks = {"a"};
  auto retried = db->PrepareRetry(run, tasks, "admin");
  REQUIRE(retried.ok());
  REQUIRE(retried->tasks.size() == 1);
  CHECK(retried->tasks[0].round_base == 1);
  CHECK(retried->tasks[0].attempt == 1);
}

TEST_CASE(
    "retention deletes old ended runs and events, keeps the newest per pipeline and active runs") {
  TestDatabase t;
  auto db = t.Open();
  // train: three ended runs and one running; etl: one ended run.
  std::vector<RunId> train;
  for (int i = 0; i < 4; ++i) train.push_back(OwnedRun(*db, "h:/a", {"x"}));
  NewRun etl_run = SimpleRun({"x"});
  etl_run.pipeline = "etl";
  etl_run.lease_owner = "h:/a";
  const RunId etl = CreateOrFail(*db, etl_run);
  // The second train run triggered the running one.
  t.Rows("UPDATE runs SET triggered_by = " + ToString(train[1]) +
         " WHERE id = " + ToString(train[3]));
  t.Rows("UPDATE runs SET state = 'success', ended_at = now() - interval '10 days' WHERE id IN (" +
         ToString(train[0]) + ", " + ToString(train[1]) + ", " + ToString(train[2]) + ", " +
         ToString(etl) + ")");
  t.Rows("UPDATE runs SET state = 'running' WHERE id = " + ToString(train[3]));
  REQUIRE(CommitAs(*db, "h:/a", Of({StartUpdate(train[0], "x", 1, At(1))})).ok() == true);
  t.Rows("UPDATE events SET at = now() - interval '10 days'");
  const Instant cutoff = NowUtc() - std::chrono::hours(24 * 5);

  // Two kept per pipeline: of train's four, the running one and the newest ended one stay.
  auto old = db->OldRuns(cutoff, 2, 100);
  REQUIRE(old.ok());
  std::vector<RunId> ids;
  for (const auto& r : *old) ids.push_back(r.id);
  CHECK(ids == std::vector<RunId>{train[0], train[1]});
  // Not old enough: none.
  auto recent = db->OldRuns(NowUtc() - std::chrono::hours(24 * 20), 0, 100);
  REQUIRE(recent.ok());
  CHECK(recent->empty());
  // None kept: etl's one goes too, limited to the batch.
  auto batch = db->OldRuns(cutoff, 0, 3);
  REQUIRE(batch.ok());
  CHECK(batch->size() == 3);

  auto deleted = db->DeleteRuns(ids, cutoff);
  REQUIRE(deleted.ok());
  CHECK(*deleted == 2);
  CHECK(t.One("SELECT count(*) FROM runs") == "3");
  // Each deleted run is recorded, for the other daemons' folders of it.
  auto deleted_runs =
      db->DeletedRuns(std::vector<RunId>{train[0], train[1], train[2], train[3], RunId(999999)});
  REQUIRE(deleted_runs.ok());
  CHECK(*deleted_runs == std::set<RunId>{train[0], train[1]});
  CHECK(t.One("SELECT string_agg(pipeline, ',') FROM deleted_runs") == "train,train");
  CHECK(t.One("SELECT count(*) FROM task_instances WHERE run_id = " + ToString(train[0])) == "0");
  CHECK(t.One("SELECT count(*) FROM attempts") == "0");
  // The run it triggered forgets the link and goes on.
  CHECK(t.One("SELECT coalesce(triggered_by::text, 'none') FROM runs WHERE id = " +
              ToString(train[3])) == "none");

  // Events: the old ones go, in batches, except the running run's.
  const std::string active_events =
      t.One("SELECT count(*) FROM events WHERE run_id = " + ToString(train[3]));
  CHECK(active_events != "0");
  int64_t total = 0;
  for (auto n = db->DeleteEvents(cutoff, 2); n.ok() && *n > 0; n = db->DeleteEvents(cutoff, 2)) {
    CHECK(*n <= 2);
    total += *n;
  }
  CHECK(total > 0);
  CHECK(t.One("SELECT count(*) FROM events") == active_events);
  // The records of deleted runs go with the events of their age, not before.
  CHECK(t.One("SELECT count(*) FROM deleted_runs") == "2");
  t.Rows("UPDATE deleted_runs SET deleted_at = now() - interval '10 days'");
  REQUIRE(db->DeleteEvents(cutoff, 10).ok());
  CHECK(t.One("SELECT count(*) FROM deleted_runs") == "0");
}

TEST_CASE(
    "which starts are recorded is read once the daemon's committing session is gone, or after the "
    "wait") {
  TestDatabase t;
  auto daemon = t.Open();
  REQUIRE(daemon->RenewLease("h:/a", "daemon", "", std::chrono::seconds(30)).ok());
  REQUIRE(daemon->HoldCommitterLock("h:/a/supervisor").ok());
  const RunId run = OwnedRun(*daemon, "h:/a", {"a"});
  auto supervisor = t.Open();
  const std::vector<scheduler::AttemptKey> asked = {{run, "a", 1}};
  // While the daemon's session lives (a daemon alive, disconnected from its supervisor), the
  // question waits for it as long as it may, then reads without it.
  auto waited =
      supervisor->StartsRecorded("h:/a/supervisor", asked, std::chrono::milliseconds(200));
  REQUIRE(waited.ok());
  CHECK(waited->empty());
  // Another supervisor's question does not wait for this daemon.
  auto other = supervisor->StartsRecorded("h:/b/supervisor", asked, std::chrono::seconds(1));
  REQUIRE(other.ok());
  CHECK(other->empty());
  // The daemon commits the start on that session, and goes: the answer comes once the server
  // has seen it go, and it holds the start.
  auto u = StartUpdate(run, "a", 1, At(1));
  u.start->lease_owner = "h:/a/supervisor";
  REQUIRE(CommitAs(*daemon, "h:/a", Of({u})).ok());
  daemon.reset();
  auto recorded = supervisor->StartsRecorded("h:/a/supervisor", asked, std::chrono::seconds(10));
  REQUIRE(recorded.ok());
  CHECK(*recorded == std::set<scheduler::AttemptKey>{{run, "a", 1}});
}
