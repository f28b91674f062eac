// PipelineConnection: a transaction of prepared statements sent in one round trip.
#include "store/pipeline.h"

#include <pqxx/except>

#include "tests/store/run_fixtures.h"
#include "tests/store/test_support.h"

using namespace kiln::store;
using namespace kiln::store::testing;

namespace {

const std::vector<std::pair<std::string, std::string>> kStatements = {
    {"put", "INSERT INTO kv (k, v) VALUES ($1, $2::int) RETURNING k"},
    {"bump", "UPDATE kv SET v = v + 1 WHERE k = $1 RETURNING v"},
    {"get", "SELECT v FROM kv WHERE k = $1"},
};

Statement Of(const char* name, std::vector<std::optional<std::string>> params) {
  return Statement{name, std::move(params)};
}

}  // namespace

TEST_CASE("a pipelined transaction runs its statements in order and commits once") {
  TestDatabase t;
  t.Rows("CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL)");
  PipelineConnection conn;
  conn.Connect(t.url(), kStatements);
  std::vector<Statement> statements = {Of("put", {"a", "1"}), Of("bump", {"a"}), Of("get", {"a"}),
                                       Of("get", {"missing"})};
  int before_sync = 0;
  auto rows = conn.Transaction(statements, [&] {
    ++before_sync;
    // Sent, not committed: another session sees nothing yet.
    CHECK(t.One("SELECT count(*) FROM kv") == "0");
  });
  CHECK(before_sync == 1);
  REQUIRE(rows.size() == 4);
  CHECK(rows[0] == ResultRows{{"a"}});
  CHECK(rows[1] == ResultRows{{"2"}});  // the update saw the insert before it
  CHECK(rows[2] == ResultRows{{"2"}});
  CHECK(rows[3].empty());
  CHECK(t.One("SELECT k || ':' || v FROM kv") == "a:2");
}

TEST_CASE("a failing statement rolls back the whole pipeline and names its SQLSTATE") {
  TestDatabase t;
  t.Rows("CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL)");
  PipelineConnection conn;
  conn.Connect(t.url(), kStatements);
  std::vector<Statement> statements = {Of("put", {"a", "1"}), Of("put", {"b", std::nullopt}),
                                       Of("put", {"c", "3"})};
  std::string state;
  try {
    conn.Transaction(statements, {});
  } catch (const pqxx::sql_error& e) {
    state = e.sqlstate();
  }
  CHECK(state == "23502");  // not_null_violation
  CHECK(t.One("SELECT count(*) FROM kv") == "0");
  // The connection goes on.
  REQUIRE(conn.connected());
  std::vector<Statement> again = {Of("put", {"a", "1"})};
  CHECK(conn.Transaction(again, {}).size() == 1);
  CHECK(t.One("SELECT count(*) FROM kv") == "1");
}

TEST_CASE("a pipeline whose session is ended throws broken_connection and closes") {
  TestDatabase t;
  t.Rows("CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL)");
  PipelineConnection conn;
  conn.Connect(t.url(), kStatements);
  std::vector<Statement> statements = {Of("put", {"a", "1"})};
  bool broken = false;
  try {
    conn.Transaction(statements, [&] {
      t.One(
          "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
          "current_database() AND pid <> pg_backend_pid()");
    });
  } catch (const pqxx::broken_connection&) {
    broken = true;
  } catch (const pqxx::sql_error& e) {
    // Some libpq versions report the server's FATAL as a statement error without a state.
    broken = std::string(e.sqlstate()).empty() || std::string(e.sqlstate()) == "57P01";
  }
  CHECK(broken);
  CHECK(t.One("SELECT count(*) FROM kv") == "0");
}

TEST_CASE("a start committed by a try whose answer was lost is not refused when written again") {
  TestDatabase t;
  auto db = t.Open();
  NewRun owned = SimpleRun({"train"});
  owned.lease_owner = "host:1";
  const kiln::RunId run = CreateOrFail(*db, owned);
  kiln::scheduler::Batch batch;
  batch.tasks = {StartUpdate(run, "train", 1, At(1))};
  const kiln::scheduler::Batch* group[] = {&batch};
  // The first try committed; the caller never heard (the connection broke after the Sync) and
  // writes the same batch again: the start is this daemon's own, already applied.
  REQUIRE(db->CommitBatches(group, "host:1", std::chrono::minutes(5)).ok());
  auto again = db->CommitBatches(group, "host:1", std::chrono::minutes(5));
  REQUIRE(again.ok());
  CHECK(again->empty());
  CHECK(t.One("SELECT state || ' ' || attempt FROM task_instances") == "running 1");
  CHECK(t.One("SELECT count(*) FROM attempts") == "1");
  // Another daemon's start of the same attempt is refused as before.
  auto other = db->CommitBatches(group, "host:2", std::chrono::minutes(5));
  REQUIRE(other.ok());
  CHECK(other->size() == 1);
}
