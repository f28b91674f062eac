// for_each in the store: a mapped task's change to running inserts every instance row in the same
// transaction (10,000 in one statement), items kept as written; a fenced change inserts none; a
// retry reopens a mapped task with some instances pending, or deletes its instances so that it
// expands again.
#include "tests/store/run_fixtures.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;
using Rows = std::vector<std::string>;
using dag::RunState;
using dag::TaskState;

namespace {

scheduler::TaskUpdate Expand(RunId run, const std::string& task, std::string items, Instant at) {
  scheduler::TaskUpdate u = PlainUpdate(run, task, TaskState::kRunning, at);
  u.reason = "instances";
  u.expand = scheduler::Expansion{std::move(items)};
  return u;
}

}  // namespace

TEST_CASE("an expansion writes every instance row with its task's change, in one transaction") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = CreateOrFail(*db, SimpleRun({"list", "train", "report"}));
  std::string items = "[";
  for (int i = 0; i < 10000; ++i)
    items += (i ? "," : "") + std::string("{\"n\":") + std::to_string(i) + "}";
  items += "]";
  scheduler::Batch b;
  b.runs.push_back({run, RunState::kRunning, At(1), ""});
  b.tasks = {Expand(run, "train", items, At(1))};
  CommitNow(*db, b);
  const std::string id = ToString(run);
  CHECK(t.One("SELECT count(*), min(position), max(position), count(DISTINCT xmin::text) FROM "
              "task_instances WHERE parent = 'train'") == "10000|3|10002|1");
  CHECK(t.Rows("SELECT task_id, state, attempt, pool, parent, map_index, item::text FROM "
               "task_instances WHERE position IN (3, 10002) ORDER BY position") ==
        Rows{"train[0]|pending|0|default|train|0|{\"n\":0}",
             "train[9999]|pending|0|default|train|9999|{\"n\":9999}"});
  CHECK(t.One("SELECT state FROM task_instances WHERE task_id = 'train'") == "running");
  // One event for the task, none per instance.
  CHECK(t.One("SELECT count(*) FROM events WHERE run_id = " + id + " AND task_id LIKE 'train%'") ==
        "1");
  // Read back after the pipeline's tasks, with what they are.
  auto record = db->GetRun(run);
  REQUIRE(record.ok());
  REQUIRE(record->tasks.size() == 10003);
  CHECK(record->tasks[2].task_id == "report");
  CHECK(record->tasks[2].parent.empty());
  CHECK(record->tasks[10002].task_id == "train[9999]");
  CHECK(record->tasks[10002].parent == "train");
  CHECK(record->tasks[10002].map_index == 9999);
  CHECK(record->tasks[10002].item == "{\"n\":9999}");
  // An instance is a task row like any other: its attempts are fenced the same way.
  scheduler::Batch start;
  start.tasks = {StartUpdate(run, "train[7]", 1, At(2))};
  CommitNow(*db, start);
  CHECK(t.One("SELECT state, attempt FROM task_instances WHERE task_id = 'train[7]'") ==
        "running|1");
}

TEST_CASE("items are kept as written, and a fenced expansion inserts nothing") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = CreateOrFail(*db, SimpleRun({"a", "b"}));
  scheduler::Batch b;
  b.tasks = {Expand(run, "a", R"([1e5, 100000.0, "x y", {"c":0.10}])", At(1))};
  CommitNow(*db, b);
  CHECK(t.Rows("SELECT item::text FROM task_instances WHERE parent = 'a' ORDER BY map_index") ==
        Rows{"1e5", "100000.0", "\"x y\"", "{\"c\":0.10}"});
  // b has ended: its change to running (and its instances) are refused.
  scheduler::Batch end;
  end.tasks = {PlainUpdate(run, "b", TaskState::kSkipped, At(2))};
  CommitNow(*db, end);
  scheduler::Batch late;
  late.tasks = {Expand(run, "b", "[1, 2]", At(3))};
  const scheduler::Batch* group[] = {&late};
  auto fenced = db->CommitBatches(group, "host:1", std::chrono::minutes(5));
  REQUIRE(fenced.ok());
  CHECK(fenced->size() == 1);
  CHECK(t.One("SELECT count(*) FROM task_instances WHERE parent = 'b'") == "0");
}

TEST_CASE("a retry reopens a mapped task with some instances, or deletes them to expand again") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = CreateOrFail(*db, SimpleRun({"list", "train"}));
  scheduler::Batch b1;
  b1.runs.push_back({run, RunState::kRunning, At(1), ""});
  b1.tasks = {Expand(run, "train", "[1, 2]", At(1)), StartUpdate(run, "train[0]", 1, At(1)),
              StartUpdate(run, "train[1]", 1, At(1))};
  CommitNow(*db, b1);
  scheduler::Batch b2;
  b2.tasks = {EndUpdate(run, "train[0]", 1, TaskState::kSuccess, At(2), 0),
              EndUpdate(run, "train[1]", 1, TaskState::kFailed, At(2), 3),
              PlainUpdate(run, "train", TaskState::kFailed, At(2))};
  b2.runs.push_back({run, RunState::kFailed, At(3), ""});
  CommitNow(*db, b2);

  const std::vector<std::string> pending = {"train[1]"};
  auto reopened = db->PrepareRetry(run, pending, "ops", nullptr, Reopen{{"train"}, {}});
  REQUIRE(reopened.ok());
  CHECK(t.Rows("SELECT task_id, state, attempt, round_base FROM task_instances ORDER BY "
               "position") == Rows{"list|pending|0|0", "train|running|0|0", "train[0]|success|1|0",
                                   "train[1]|pending|1|1"});
  // It ends failed again; this time everything from list is re-run: train's instances go.
  scheduler::Batch b3;
  b3.runs.push_back({run, RunState::kRunning, At(4), ""});
  b3.tasks = {StartUpdate(run, "train[1]", 2, At(4))};
  CommitNow(*db, b3);
  scheduler::Batch b4;
  b4.tasks = {EndUpdate(run, "train[1]", 2, TaskState::kFailed, At(5), 3),
              PlainUpdate(run, "train", TaskState::kFailed, At(5))};
  b4.runs.push_back({run, RunState::kFailed, At(5), ""});
  CommitNow(*db, b4);
  const std::vector<std::string> again = {"list", "train"};
  auto dropped = db->PrepareRetry(run, again, "ops", nullptr, Reopen{{}, {"train"}});
  REQUIRE(dropped.ok());
  CHECK(t.Rows("SELECT task_id, state FROM task_instances ORDER BY position") ==
        Rows{"list|pending", "train|pending"});
  CHECK(t.One("SELECT count(*) FROM attempts WHERE task_id LIKE 'train[%'") == "0");
  REQUIRE(dropped->tasks.size() == 2);
}
