// for_each through `kiln serve`: a task mapped over a JSON array file written upstream (300 items)
// and one over inline tables; max_parallel never exceeded (replayed from the ordered events);
// one failing instance fails its task and stops its downstream, then a retry of that instance
// alone completes the run; empty lists and malformed files; a SIGKILL of the daemon while
// instances run loses and repeats none.
#include <signal.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

namespace {

std::string Of(int64_t run) { return std::to_string(run); }

// The most instances of `task` running at once, replayed from the run's events in their order.
std::string MostAtOnce(int64_t run, const std::string& task) {
  return Sql(
      "select max(c) from (select sum(case when to_state = 'running' then 1 when from_state = "
      "'running' then -1 else 0 end) over (order by id) as c from events where kind = "
      "'task_state' and run_id = " +
      Of(run) + " and task_id like '" + task + "[%') s");
}

// task:state for the pipeline's tasks (not instances), in file order.
std::string TaskStates(int64_t run) {
  return Sql(
      "select string_agg(task_id || ':' || state, ' ' order by position) from "
      "task_instances where parent is null and run_id = " +
      Of(run));
}

// How many instances of `task` ended in `state`.
std::string Count(int64_t run, const std::string& task, const std::string& state) {
  return Sql("select count(*) from task_instances where run_id = " + Of(run) + " and parent = '" +
             task + "' and state = '" + state + "'");
}

}  // namespace

TEST_CASE("a task mapped over a file of 300 items and one over inline tables, max_parallel held") {
  TempDir dir;
  WriteFile(dir / "pipelines/regions.toml", R"([pipeline]
name = "regions"
[tasks.list]
command = "seq 0 299 | sed 's/.*/\"r&\"/' | paste -sd, | sed 's/.*/[&]/' > {{ run.dir }}/regions.json"
[tasks.train]
needs = ["list"]
for_each = "{{ run.dir }}/regions.json"
max_parallel = 3
command = "echo region={{ item }} index=$KILN_ITEM_INDEX item=$KILN_ITEM"
[tasks.sweep]
for_each = [{ c = 0.1, depth = 3 }, { c = 1.0, depth = 5 }]
argv = ["echo", "c={{ item.c }}", "depth={{ item.depth }}", "task={{ task.id }}"]
[tasks.report]
needs = ["train", "sweep"]
command = "echo done"
)");
  DaemonOptions o(dir / "pipelines");
  o.extra_config = "[pools]\ndefault = 8\n";
  Daemon daemon(dir, o);
  auto client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, "regions");
  CHECK(WaitForRunEnd(daemon, run) == "success");
  CHECK(TaskStates(run) == "list:success train:success sweep:success report:success");
  CHECK(Count(run, "train", "success") == "300");
  CHECK(Count(run, "sweep", "success") == "2");
  CHECK(MostAtOnce(run, "train") == "3");
  // The mapped task ran no process of its own, and said what it became.
  CHECK(Sql("select count(*) from attempts where task_id = 'train' and run_id = " + Of(run)) ==
        "0");
  CHECK(Sql("select detail->>'reason' from events where kind = 'task_state' and task_id = "
            "'train' and to_state = 'running' and run_id = " +
            Of(run)) == "300 instances");
  CHECK(Sql("select detail->>'reason' from events where kind = 'task_state' and task_id = "
            "'train' and to_state = 'success' and run_id = " +
            Of(run)) == "300 instances: 300 succeeded");
  // Each instance's log, through the API.
  auto log = client.Get("/api/v1/runs/" + Of(run) + "/tasks/train%5B299%5D/attempts/1/log");
  REQUIRE(log);
  CHECK(log->status == 200);
  CHECK(log->body == "region=r299 index=299 item=\"r299\"\n");
  auto sweep = client.Get("/api/v1/runs/" + Of(run) + "/tasks/sweep[1]/attempts/1/log");
  REQUIRE(sweep);
  CHECK(sweep->body == "c=1.0 depth=5 task=sweep[1]\n");
  // The run record lists instances after the pipeline's tasks, with their task and item.
  const json record = Body(client.Get("/api/v1/runs/" + Of(run)));
  REQUIRE(record["tasks"].size() == 4 + 300 + 2);
  CHECK(record["tasks"][3]["id"] == "report");
  CHECK_FALSE(record["tasks"][3].contains("parent"));
  const json& first = record["tasks"][4];
  const bool sweep_first = first["parent"] == "sweep";  // whichever expanded first
  const json& t7 = record["tasks"][sweep_first ? 6 + 7 : 4 + 7];
  CHECK(t7["id"] == "train[7]");
  CHECK(t7["parent"] == "train");
  CHECK(t7["map_index"] == 7);
  CHECK(t7["item"] == "r7");
  CHECK(t7["state"] == "success");
  const json& s0 = record["tasks"][sweep_first ? 4 : 304];
  CHECK(s0["id"] == "sweep[0]");
  CHECK(s0["item"] == json({{"c", 0.1}, {"depth", 3}}));
  // The grid shows the pipeline's tasks only.
  const json grid = Body(client.Get("/api/v1/pipelines/regions/grid"));
  CHECK(grid["tasks"] == json({"list", "train", "sweep", "report"}));
}

TEST_CASE(
    "one failing instance fails its task and stops its downstream, and retrying it alone ends "
    "the run") {
  TempDir dir;
  const std::string fixed = (dir / "fixed").string();
  WriteFile(dir / "pipelines/sweep.toml", R"([pipeline]
name = "sweep"
[tasks.fit]
for_each = [1, 2, 3]
command = "test {{ item }} != 2 || test -f )" +
                                              fixed + R"("
[tasks.pick]
needs = ["fit"]
command = "echo picked"
)");
  Daemon daemon(dir, dir / "pipelines");
  auto client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, "sweep");
  CHECK(WaitForRunEnd(daemon, run) == "failed");
  CHECK(States(run) ==
        "fit:failed pick:upstream_failed fit[0]:success fit[1]:failed fit[2]:success");
  CHECK(Sql("select detail->>'reason' from events where kind = 'task_state' and task_id = 'fit' "
            "and to_state = 'failed' and run_id = " +
            Of(run)) == "3 instances: 2 succeeded, 1 did not");
  // Marking an instance of an ended run is refused with what to do instead.
  auto mark =
      daemon.Client(kAdminToken)
          .Post("/api/v1/runs/" + Of(run) + "/tasks/fit[1]/mark", R"({"state": "success"})", kJson);
  REQUIRE(mark);
  CHECK(mark->status == 409);
  CHECK(Body(mark)["error"]["message"] ==
        "'fit[1]' is an instance of a task with for_each; in a run that has ended, retry it "
        "instead (kiln retry " +
            Of(run) + " --from 'fit[1]')");
  WriteFile(fixed, "");
  const int64_t before = LastEventId();
  auto retried = Kiln({"retry", Of(run), "--from", "fit[1]"}, {},
                      {{"KILN_SERVER", "http://127.0.0.1:" + std::to_string(daemon.port())},
                       {"KILN_TOKEN", kOperatorToken}});
  INFO(retried.err);
  CHECK(retried.code == 0);
  CHECK(WaitForRunEnd(daemon, run, before) == "success");
  CHECK(States(run) == "fit:success pick:success fit[0]:success fit[1]:success fit[2]:success");
  // Only the retried instance ran again.
  CHECK(Sql("select string_agg(task_id || '#' || attempt, ' ' order by task_id, attempt) from "
            "attempts where run_id = " +
            Of(run)) == "fit[0]#1 fit[1]#1 fit[1]#2 fit[2]#1 pick#1");
}

TEST_CASE(
    "retrying the failed tasks of a run re-runs the failed instances, and a retry from "
    "upstream makes the instances again") {
  TempDir dir;
  const std::string list = (dir / "items.json").string();
  WriteFile(list, "[1, 2]");
  WriteFile(dir / "pipelines/again.toml", R"([pipeline]
name = "again"
[tasks.list]
command = "true"
[tasks.fit]
needs = ["list"]
for_each = ")" + list + R"("
command = "test {{ item }} != 2 || test -f )" +
                                              (dir / "fixed").string() +
                                              R"("
)");
  Daemon daemon(dir, dir / "pipelines");
  auto client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, "again");
  CHECK(WaitForRunEnd(daemon, run) == "failed");
  WriteFile(dir / "fixed", "");
  int64_t before = LastEventId();
  auto failed = client.Post("/api/v1/runs/" + Of(run) + "/retry", R"({"mode": "failed"})", kJson);
  REQUIRE(failed);
  CHECK(failed->status == 200);
  CHECK(Body(failed)["tasks"] == json({"fit[1]"}));
  CHECK(WaitForRunEnd(daemon, run, before) == "success");
  CHECK(States(run) == "list:success fit:success fit[0]:success fit[1]:success");
  // From upstream: the list is read again (three items now), the old instances are gone.
  WriteFile(list, R"(["a", "b", "c"])");
  before = LastEventId();
  auto from = client.Post("/api/v1/runs/" + Of(run) + "/retry", R"({"from": "list"})", kJson);
  REQUIRE(from);
  CHECK(from->status == 200);
  CHECK(WaitForRunEnd(daemon, run, before) == "success");
  CHECK(States(run) == "list:success fit:success fit[0]:success fit[1]:success fit[2]:success");
  CHECK(Sql("select string_agg(item::text, ',' order by map_index) from task_instances where "
            "run_id = " +
            Of(run) + " and parent = 'fit'") == R"("a","b","c")");
}

TEST_CASE("an empty list skips the mapped task, and a malformed file fails it with what is wrong") {
  TempDir dir;
  WriteFile(dir / "bad.json", R"([1, [2]])");
  WriteFile(dir / "pipelines/edges.toml", R"([pipeline]
name = "edges"
[tasks.none]
for_each = []
command = "echo never"
[tasks.after_none]
needs = ["none"]
command = "echo never"
[tasks.bad]
for_each = ")" + (dir / "bad.json").string() +
                                              R"("
command = "echo never"
[tasks.missing]
for_each = "{{ run.dir }}/nothing.json"
command = "echo never"
)");
  Daemon daemon(dir, dir / "pipelines");
  auto client = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(client, "edges");
  CHECK(WaitForRunEnd(daemon, run) == "failed");
  CHECK(States(run) == "none:skipped after_none:skipped bad:failed missing:failed");
  auto reason = [&](const std::string& task) {
    return Sql("select detail->>'reason' from events where kind = 'task_state' and run_id = " +
               Of(run) + " and task_id = '" + task + "' and to_state in ('skipped', 'failed')");
  };
  CHECK(reason("none") == "for_each has no items");
  CHECK(reason("bad") == "for_each file '" + (dir / "bad.json").string() +
                             "': item 1 is an array; an item is a string, number, boolean or an "
                             "object of those");
  CHECK(reason("missing").starts_with("for_each file '"));
  CHECK(reason("missing").find("nothing.json") != std::string::npos);
  CHECK(Sql("select count(*) from attempts where run_id = " + Of(run)) == "0");
}

TEST_CASE("a SIGKILL of the daemon while instances run loses and repeats none of them") {
  TempDir dir;
  const std::string go = (dir / "go").string();
  WriteFile(dir / "pipelines/slow.toml", R"([pipeline]
name = "slow"
[tasks.fit]
for_each = ["a", "b", "c", "d", "e", "f"]
max_parallel = 2
command = "while [ ! -f )" + go + R"( ]; do sleep 0.05; done; echo {{ item }}"
[tasks.pick]
needs = ["fit"]
command = "echo picked"
)");
  int64_t run = 0;
  {
    DaemonOptions o(dir / "pipelines");
    o.on_stop = "leave";
    Daemon first(dir, o);
    auto client = first.Client(kOperatorToken);
    run = Trigger(client, "slow");
    WaitFor([&] { return Count(run, "fit", "running") == "2"; }, "two instances to run");
    first.Signal(SIGKILL);
    CHECK(first.Wait() == 128 + SIGKILL);
  }
  CHECK(States(run) ==
        "fit:running pick:pending fit[0]:running fit[1]:running fit[2]:pending "
        "fit[3]:pending fit[4]:pending fit[5]:pending");
  DaemonOptions o(dir / "pipelines");
  o.on_stop = "leave";
  Daemon second(dir, o);
  WriteFile(go, "");
  CHECK(WaitForRunEnd(second, run) == "success");
  CHECK(Count(run, "fit", "success") == "6");
  // Each instance ran once: the two under way were adopted, not started again.
  CHECK(Sql("select string_agg(task_id || '#' || attempt, ' ' order by task_id) from attempts "
            "where run_id = " +
            Of(run)) == "fit[0]#1 fit[1]#1 fit[2]#1 fit[3]#1 fit[4]#1 fit[5]#1 pick#1");
  CHECK(MostAtOnce(run, "fit") == "2");
}
