#include <thread>

#include "tests/store/test_support.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;
using Rows = std::vector<std::string>;

TEST_CASE("migrations create the schema once") {
  TestDatabase t;
  auto db = Database::Connect(t.url());
  REQUIRE(db.ok());
  REQUIRE((*db)->Migrate().ok());
  CHECK(t.Rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1") ==
        Rows{"artifacts",
             "attempts",
             "backfills",
             "cache_invalidations",
             "daemons",
             "deleted_runs",
             "events",
             "leader",
             "leader_terms",
             "log_chunks",
             "model_promotions",
             "model_versions",
             "models",
             "notifications",
             "pipeline_versions",
             "pipelines",
             "pools",
             "runs",
             "schema_migrations",
             "task_instances",
             "worker_history"});
  CHECK(t.Rows("SELECT version, name FROM schema_migrations ORDER BY 1") ==
        Rows{"1|initial schema", "2|api: event pipelines, pause state",
             "3|schedules: fire cursors, skipped fires, completion triggers", "4|backfills",
             "5|leases, recovery and retention", "6|results of attempts, artifacts",
             "7|model registry", "8|approvals: the waiting state", "9|result cache",
             "10|notifications", "11|for_each instances", "12|remote workers",
             "13|the leader of the daemons", "14|the workers' hot path",
             "15|the task row of an update found by its key",
             "16|the pipeline versions each daemon loaded"});
  CHECK(t.One("SELECT count(*) FROM pg_indexes WHERE indexname = 'task_instances_active' AND "
              "indexdef LIKE '%WHERE (state = ANY%'") == "1");

  REQUIRE((*db)->Migrate().ok());
  CHECK(t.One("SELECT count(*) FROM schema_migrations") == "16");
}

TEST_CASE("concurrent migrations from two connections both succeed") {
  TestDatabase t;
  auto a = Database::Connect(t.url());
  auto b = Database::Connect(t.url());
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  Status sa, sb;
  std::thread ta([&] { sa = (*a)->Migrate(); });
  std::thread tb([&] { sb = (*b)->Migrate(); });
  ta.join();
  tb.join();
  CHECK(sa.message() == "");
  CHECK(sb.message() == "");
  CHECK(t.Rows("SELECT version FROM schema_migrations ORDER BY 1") ==
        Rows{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"});
}

TEST_CASE("a schema newer than this kiln is refused") {
  TestDatabase t;
  auto db = t.Open();
  t.Rows("INSERT INTO schema_migrations (version, name) VALUES (99, 'future')");
  Status s = db->Migrate();
  CHECK(s.code() == ErrorCode::kConflict);
  CHECK(s.message() ==
        "database: schema version 99 is newer than this kiln knows (16); upgrade kiln or point it "
        "at another database");
}

TEST_CASE("CreateRun writes the run, its tasks and one event") {
  TestDatabase t;
  auto db = t.Open();
  NewRun run = SimpleRun({"prepare", "train", "evaluate"});
  run.tasks[1].pool = "gpu";
  run.tasks[1].priority = 5;
  run.data_interval_start = At(-3600);
  run.data_interval_end = At(0);
  run.params = {
      {"dataset", std::string("s3://x")}, {"epochs", int64_t{10}}, {"lr", 0.25}, {"full", true}};
  run.note = "first";
  auto created = db->CreateRun(run);
  REQUIRE(created.ok());
  CHECK_FALSE(created->existing);
  const std::string id = ToString(created->id);

  CHECK(t.Rows("SELECT pipeline, content_hash, source FROM pipeline_versions") ==
        Rows{"train|abc123|[pipeline]\nname = \"train\"\n"});
  CHECK(t.Rows("SELECT id, pipeline, version_hash, trigger, logical_date, data_interval_start, "
               "data_interval_end, params::text, state, idempotency_key, created_by, note, "
               "started_at, ended_at FROM runs") ==
        Rows{id + "|train|abc123|manual|2026-11-29 00:00:00+00|2026-11-28 23:00:00+00|"
                  "2026-11-29 00:00:00+00|"
                  R"([{"name": "dataset", "type": "string", "value": "s3://x"}, )"
                  R"({"name": "epochs", "type": "integer", "value": 10}, )"
                  R"({"name": "lr", "type": "float", "value": 0.25}, )"
                  R"({"name": "full", "type": "boolean", "value": true}])"
                  "|queued|NULL|tester|first|NULL|NULL"});
  CHECK(t.Rows("SELECT run_id, task_id, position, state, attempt, pool, priority, lease_owner, "
               "retry_at, exit_code, started_at, ended_at FROM task_instances ORDER BY position") ==
        Rows{id + "|prepare|0|pending|0|default|0|NULL|NULL|NULL|NULL|NULL",
             id + "|train|1|pending|0|gpu|5|NULL|NULL|NULL|NULL|NULL",
             id + "|evaluate|2|pending|0|default|0|NULL|NULL|NULL|NULL|NULL"});
  CHECK(t.Rows("SELECT run_id, pipeline, task_id, attempt, kind, from_state, to_state, actor, "
               "detail::text, at = (SELECT created_at FROM runs) FROM events") ==
        Rows{id + "|train|NULL|NULL|run_created|NULL|queued|tester|"
                  R"({"tasks": 3, "trigger": "manual"}|t)"});
  CHECK(t.One("SELECT count(*) FROM attempts") == "0");

  auto record = db->GetRun(created->id);
  REQUIRE(record.ok());
  CHECK(record->pipeline == "train");
  CHECK(record->state == dag::RunState::kQueued);
  CHECK(record->logical_date == At(0));
  CHECK(record->data_interval_start == At(-3600));
  CHECK(record->params == run.params);
  CHECK(record->note == "first");
  CHECK_FALSE(record->started_at);
  REQUIRE(record->tasks.size() == 3);
  CHECK(record->tasks[0].task_id == "prepare");
  CHECK(record->tasks[1].task_id == "train");
  CHECK(record->tasks[1].pool == "gpu");
  CHECK(record->tasks[1].priority == 5);
  CHECK(record->tasks[2].task_id == "evaluate");
  CHECK(record->tasks[2].state == dag::TaskState::kPending);
  CHECK_FALSE(record->tasks[2].duration);

  auto events = db->ListEvents(created->id);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 1);
  CHECK((*events)[0].kind == "run_created");
  CHECK((*events)[0].to_state == "queued");
  CHECK((*events)[0].actor == "tester");
  // The run's read names its latest event: the stream of the run carries on after it.
  CHECK(record->last_event == (*events)[0].id);
}

TEST_CASE("an idempotency key returns the existing run") {
  TestDatabase t;
  auto db = t.Open();
  NewRun run = SimpleRun({"a"});
  run.idempotency_key = "req-1";
  auto first = db->CreateRun(run);
  REQUIRE(first.ok());
  run.note = "retried request";
  auto second = db->CreateRun(run);
  REQUIRE(second.ok());
  CHECK(second->id == first->id);
  CHECK(second->existing);
  CHECK(t.One("SELECT count(*), max(note) FROM runs") == "1|");
  CHECK(t.One("SELECT count(*) FROM events") == "1");
  CHECK(t.One("SELECT count(*) FROM task_instances") == "1");

  run.idempotency_key = "req-2";
  auto third = db->CreateRun(run);
  REQUIRE(third.ok());
  CHECK_FALSE(third->existing);
  CHECK(third->id != first->id);

  run.idempotency_key.reset();
  auto fourth = db->CreateRun(run);
  auto fifth = db->CreateRun(run);
  REQUIRE((fourth.ok() && fifth.ok()));
  CHECK(fourth->id != fifth->id);  // manual runs without a key are never deduplicated
}

TEST_CASE("a scheduled run is created once per logical date") {
  TestDatabase t;
  auto db = t.Open();
  NewRun run = SimpleRun({"a"});
  run.trigger = "schedule";
  auto first = db->CreateRun(run);
  auto again = db->CreateRun(run);
  REQUIRE((first.ok() && again.ok()));
  CHECK(again->id == first->id);
  CHECK(again->existing);
  run.logical_date = At(3600);
  auto next = db->CreateRun(run);
  REQUIRE(next.ok());
  CHECK_FALSE(next->existing);
  CHECK(t.One("SELECT count(*) FROM runs") == "2");
}

TEST_CASE("GetRun of a missing run says not found") {
  TestDatabase t;
  auto db = t.Open();
  auto r = db->GetRun(RunId(999));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kNotFound);
  CHECK(r.message() == "run 999 not found");
}

TEST_CASE("an unreachable database gives one redacted line") {
  auto db = Database::Connect("postgresql://kiln:s3cretpw@127.0.0.1:1/kiln");
  REQUIRE_FALSE(db.ok());
  CHECK(db.status().code() == ErrorCode::kUnavailable);
  CHECK_THAT(db.message(), Catch::StartsWith("postgresql://kiln:***@127.0.0.1:1/kiln: "));
  CHECK_THAT(db.message(), Catch::Contains("Connection refused"));
  CHECK(db.message().find("s3cretpw") == std::string::npos);
  CHECK(db.message().find('\n') == std::string::npos);

  auto kw = Database::Connect("host=127.0.0.1 port=1 user=kiln password='s3cret pw' dbname=kiln");
  REQUIRE_FALSE(kw.ok());
  CHECK_THAT(kw.message(),
             Catch::StartsWith("host=127.0.0.1 port=1 user=kiln password=*** dbname=kiln: "));
  CHECK(kw.message().find("s3cret") == std::string::npos);

  // libpq quotes parts of a malformed URL in its message: the password is scrubbed from it too.
  for (const char* url : {"host=127.0.0.1 password=s3cretpw nonsense=1",
                          "postgresql://kiln:s3cretpw@bad host/kiln"}) {
    auto bad = Database::Connect(url);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.message().find("s3cretpw") == std::string::npos);
  }
}

TEST_CASE("RedactUrl hides passwords in both forms") {
  CHECK(RedactUrl("postgresql://kiln:secret@db.example:5432/kiln") ==
        "postgresql://kiln:***@db.example:5432/kiln");
  CHECK(RedactUrl("postgres://kiln:p%40ss@db/kiln?sslmode=require") ==
        "postgres://kiln:***@db/kiln?sslmode=require");
  CHECK(RedactUrl("postgresql://kiln@db/kiln") == "postgresql://kiln@db/kiln");
  CHECK(RedactUrl("postgresql://db/kiln?user=k&password=secret&sslmode=require") ==
        "postgresql://db/kiln?user=k&password=***&sslmode=require");
  CHECK(RedactUrl("postgresql:///kiln?host=/var/run/kiln") ==
        "postgresql:///kiln?host=/var/run/kiln");
  CHECK(RedactUrl("postgresql://u:a:b@h/d") == "postgresql://u:***@h/d");
  // libpq decodes %-escapes in a parameter's name too.
  CHECK(RedactUrl("postgresql://db/kiln?pass%77ord=secret&PASSWORD=x") ==
        "postgresql://db/kiln?pass%77ord=***&PASSWORD=x");
  CHECK(RedactUrl("host=db password=secret dbname=kiln") == "host=db password=*** dbname=kiln");
  CHECK(RedactUrl("host=db password = 'it\\'s secret' dbname=kiln") ==
        "host=db password = *** dbname=kiln");
  CHECK(RedactUrl("password=secret") == "password=***");
  CHECK(RedactUrl("dbname=kiln") == "dbname=kiln");
  CHECK(RedactUrl("") == "");
}
