// for_each through the scheduler with fakes: a mapped task expands into instances recorded with
// its change to running, each instance runs with its item (templates, KILN_ITEM), at most
// max_parallel at once, and the task ends with their aggregate; item files are read through
// SchedulerOptions::read_items; a resumed run goes on with the instances it had.
#include <algorithm>

#include "tests/scheduler/scheduler_harness.h"

using namespace scheduler_test;
using kiln::dag::Value;

namespace {

Value Number(int64_t n, std::string key = "") {
  Value v;
  v.type = Value::Type::kInteger;
  v.integer = n;
  v.key = std::move(key);
  return v;
}

Value Text(std::string s) {
  Value v;
  v.type = Value::Type::kString;
  v.string = std::move(s);
  return v;
}

Value Table(std::vector<Value> members) {
  Value v;
  v.type = Value::Type::kTable;
  v.items = std::move(members);
  return v;
}

kiln::dag::TaskSpec Mapped(std::string id, std::vector<Value> items,
                           std::vector<std::string> needs = {}, int max_parallel = 0) {
  kiln::dag::TaskSpec t = Task(std::move(id), std::move(needs));
  t.for_each = kiln::dag::ForEach{"", std::move(items), {}};
  t.max_parallel = max_parallel;
  t.command = "fit --region {{ item }} --n {{ item.index }}";
  return t;
}

std::string Env(const sch::LaunchRequest& r, const std::string& name) {
  for (const auto& [k, v] : r.env) {
    if (k == name) return v;
  }
  return "<unset>";
}

// An item reader whose answers the test gives.
struct Reads {
  std::vector<std::filesystem::path> asked;
  std::vector<std::function<void(kiln::Result<std::vector<Value>>)>> pending;
  std::function<void(sch::SchedulerOptions&)> Tweak() {
    return [this](sch::SchedulerOptions& o) {
      o.read_items = [this](const std::filesystem::path& file, const kiln::Identity&,
                            std::function<void(kiln::Result<std::vector<Value>>)> done) {
        asked.push_back(file);
        pending.push_back(std::move(done));
      };
    };
  }
};

}  // namespace

TEST_CASE("inline items: instances run with their item and the task ends with their aggregate") {
  Harness h({Mapped("train", {Text("eu"), Text("us west")}), Task("report", {"train"})});
  h.Start();
  const sch::TaskUpdate* expanded = LastUpdate(h, "train");
  REQUIRE(expanded != nullptr);
  CHECK(expanded->state == TaskState::kRunning);
  CHECK(expanded->reason == "2 instances");
  REQUIRE(expanded->expand.has_value());
  CHECK(expanded->expand->items == R"(["eu","us west"])");
  CHECK(expanded->attempt == 0);
  REQUIRE(h.runner.running.count("train[0]") == 1);
  REQUIRE(h.runner.running.count("train[1]") == 1);
  const sch::LaunchRequest& second = h.runner.running.at("train[1]").request;
  CHECK(second.argv == std::vector<std::string>{"/bin/sh", "-c", "fit --region 'us west' --n '1'"});
  CHECK(Env(second, "KILN_ITEM") == R"("us west")");
  CHECK(Env(second, "KILN_ITEM_INDEX") == "1");
  CHECK(Env(second, "KILN_TASK_ID") == "train[1]");
  CHECK(Env(second, "KILN_IDEMPOTENCY_KEY") == "7:train[1]");
  CHECK(second.log_path == "/data/logs/p/7/train[1].1.log");
  CHECK(h.runner.running.at("train[1]").start_was_durable);
  // Every instance's start comes after the expansion that made its row.
  const auto updates = h.store.TaskUpdates();
  auto at = [&](const std::string& task, bool start) {
    return std::find_if(updates.begin(), updates.end(), [&](const sch::TaskUpdate& u) {
      return u.task_id == task && (start ? u.start.has_value() : u.expand.has_value());
    });
  };
  CHECK(at("train", false) < at("train[0]", true));
  h.runner.Exit("train[1]", 0);
  h.Settle();
  CHECK(LastUpdate(h, "train")->state == TaskState::kRunning);
  CHECK(h.runner.running.count("report") == 0);
  h.runner.Exit("train[0]", 0);
  h.Settle();
  CHECK(LastUpdate(h, "train")->state == TaskState::kSuccess);
  CHECK(LastUpdate(h, "train")->reason == "2 instances: 2 succeeded");
  REQUIRE(h.runner.running.count("report") == 1);
  h.runner.Exit("report", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
}

TEST_CASE("table items: {{ item.KEY }} and KILN_ITEM as a JSON object") {
  auto t = Mapped("sweep", {Table({Number(3, "depth"), Number(1, "c")})});
  t.command.reset();
  t.argv = std::vector<std::string>{"fit",          "--depth", "{{ item.depth }}", "--c",
                                    "{{ item.c }}", "--i",     "{{ item.index }}"};
  Harness h({t});
  h.Start();
  REQUIRE(h.runner.running.count("sweep[0]") == 1);
  const sch::LaunchRequest& r = h.runner.running.at("sweep[0]").request;
  CHECK(r.argv == std::vector<std::string>{"fit", "--depth", "3", "--c", "1", "--i", "0"});
  CHECK(Env(r, "KILN_ITEM") == R"({"depth":3,"c":1})");
}

TEST_CASE(
    "one failed instance fails the task once all have ended, and its downstream does not run") {
  Harness h({Mapped("train", {Text("a"), Text("b"), Text("c")}), Task("report", {"train"})});
  h.Start();
  h.runner.Exit("train[1]", 3);
  h.Settle();
  CHECK(LastUpdate(h, "train[1]")->state == TaskState::kFailed);
  CHECK(LastUpdate(h, "train")->state == TaskState::kRunning);  // the others go on
  h.runner.Exit("train[0]", 0);
  h.runner.Exit("train[2]", 0);
  h.Settle();
  CHECK(LastUpdate(h, "train")->state == TaskState::kFailed);
  CHECK(LastUpdate(h, "train")->reason == "3 instances: 2 succeeded, 1 did not");
  CHECK(LastUpdate(h, "report")->state == TaskState::kUpstreamFailed);
  CHECK(LastUpdate(h, "report")->reason == "upstream 'train' failed");
  CHECK(h.recorder.state == RunState::kFailed);
}

TEST_CASE("an instance retries on its own and its task waits for it") {
  auto t = Mapped("train", {Text("a"), Text("b")});
  t.retry.retries = 1;
  t.retry.retry_delay = std::chrono::milliseconds(1);
  Harness h({t});
  h.Start();
  h.runner.Exit("train[0]", 1);
  h.Settle();
  CHECK(h.runner.running.count("train[0]") == 1);
  CHECK(h.runner.running.at("train[0]").request.attempt == 2);
  h.runner.Exit("train[0]", 0);
  h.runner.Exit("train[1]", 0);
  h.Settle();
  CHECK(LastUpdate(h, "train")->state == TaskState::kSuccess);
  CHECK(h.recorder.state == RunState::kSuccess);
}

TEST_CASE("max_parallel: never more instances at once than allowed, in item order") {
  std::vector<Value> items;
  for (int i = 0; i < 7; ++i) items.push_back(Number(i));
  Harness h({Mapped("train", items, {}, 2), Task("other")}, 8);
  h.Start();
  size_t most = 0;
  std::vector<std::string> ended;
  while (h.recorder.state != RunState::kSuccess) {
    size_t instances = 0;
    std::string first;
    for (const auto& [id, started] : h.runner.running) {
      if (id.starts_with("train[")) {
        ++instances;
        if (first.empty()) first = id;
      }
    }
    most = std::max(most, instances);
    if (h.runner.running.empty()) break;
    const std::string next = first.empty() ? h.runner.running.begin()->first : first;
    ended.push_back(next);
    h.runner.Exit(next, 0);
    h.Settle();
  }
  CHECK(most == 2);
  CHECK(h.recorder.state == RunState::kSuccess);
  std::vector<std::string> started;
  for (const auto& id : h.runner.order) {
    if (id.starts_with("train[")) started.push_back(id);
  }
  CHECK(started == std::vector<std::string>{"train[0]", "train[1]", "train[2]", "train[3]",
                                            "train[4]", "train[5]", "train[6]"});
  // Held back instances are not written queued: they stay pending until their turn.
  CHECK(LastUpdate(h, "train[6]")->state == TaskState::kSuccess);
}

TEST_CASE("no items: the mapped task is skipped at once, and so is what needs it") {
  Harness h({Mapped("train", {}), Task("report", {"train"})});
  h.Start();
  CHECK(LastUpdate(h, "train")->state == TaskState::kSkipped);
  CHECK(LastUpdate(h, "train")->reason == "for_each has no items");
  CHECK_FALSE(LastUpdate(h, "train")->expand.has_value());
  CHECK(LastUpdate(h, "report")->state == TaskState::kSkipped);
  CHECK(h.recorder.state == RunState::kSuccess);
}

TEST_CASE("a for_each file is read off the loop, relative to the pipeline's folder") {
  Reads reads;
  auto t = Mapped("train", {}, {"list"});
  t.for_each->file = "out/{{ params.word }}.json";
  Harness h({Task("list"), t, Task("report", {"train"})}, 4, reads.Tweak());
  h.Start();
  h.runner.Exit("list", 0);
  h.Settle();
  REQUIRE(reads.asked.size() == 1);
  CHECK(reads.asked[0] == "/pipelines/out/a b.json");
  CHECK(LastUpdate(h, "train") == nullptr);  // pending until the answer: nothing written
  reads.pending[0](std::vector<Value>{Text("x")});
  h.Settle();
  CHECK(LastUpdate(h, "train")->expand->items == R"(["x"])");
  CHECK(h.runner.running.count("train[0]") == 1);
}

TEST_CASE("a for_each file that cannot be read fails the mapped task with the reader's words") {
  Reads reads;
  auto t = Mapped("train", {}, {});
  t.for_each->file = "{{ run.dir }}/regions.json";
  Harness h({t, Task("report", {"train"})}, 4, reads.Tweak());
  h.Start();
  REQUIRE(reads.asked.size() == 1);
  CHECK(reads.asked[0] == "/data/runs/p/7/regions.json");
  reads.pending[0](
      kiln::Status::Error("for_each file '/data/runs/p/7/regions.json': no such file"));
  h.Settle();
  CHECK(LastUpdate(h, "train")->state == TaskState::kFailed);
  CHECK(LastUpdate(h, "train")->reason ==
        "for_each file '/data/runs/p/7/regions.json': no such file");
  CHECK(LastUpdate(h, "report")->state == TaskState::kUpstreamFailed);
  CHECK(h.recorder.state == RunState::kFailed);
}

TEST_CASE("a cancel while the file is read cancels the task, and the late answer changes nothing") {
  Reads reads;
  auto t = Mapped("train", {});
  t.for_each->file = "items.json";
  Harness h({t}, 4, reads.Tweak());
  h.Start();
  h.scheduler->CancelRun(RunId{7}, "stop");
  h.Settle();
  CHECK(LastUpdate(h, "train")->state == TaskState::kCancelled);
  reads.pending[0](std::vector<Value>{Text("x")});
  h.Settle();
  CHECK(LastUpdate(h, "train")->state == TaskState::kCancelled);
  CHECK(h.runner.order.empty());
  CHECK(h.recorder.state == RunState::kCancelled);
}

TEST_CASE("marks: an instance by its name, not the mapped task itself while it runs") {
  Harness h({Mapped("train", {Text("a"), Text("b")})});
  h.Start();
  auto unit = h.scheduler->FindUnit(RunId{7}, "train[1]");
  REQUIRE(unit.has_value());
  CHECK(kiln::Index(*unit) == 2);
  CHECK_FALSE(h.scheduler->FindUnit(RunId{7}, "train[2]").has_value());
  CHECK_FALSE(h.scheduler->FindUnit(RunId{7}, "train[x]").has_value());
  kiln::Status refused = h.Mark("train", TaskState::kSuccess, "by hand");
  CHECK(refused.code() == kiln::ErrorCode::kConflict);
  CHECK(refused.message() ==
        "task 'train' runs as 2 instances; mark them one by one ('train[0]', ...)");
  std::optional<kiln::Status> marked;
  h.scheduler->MarkTask(RunId{7}, *unit, TaskState::kSuccess, "done elsewhere",
                        [&](kiln::Status s) { marked = std::move(s); });
  h.Settle();
  REQUIRE(marked.has_value());
  CHECK(marked->ok());
  CHECK(LastUpdate(h, "train[1]")->state == TaskState::kSuccess);
  CHECK(LastUpdate(h, "train[1]")->reason == "done elsewhere");
  h.runner.Exit("train[0]", 0);
  h.Settle();
  CHECK(LastUpdate(h, "train")->state == TaskState::kSuccess);
}

TEST_CASE("a resumed run goes on with its instances: adopted, kept, and pending ones") {
  Harness h({Mapped("train", {}, {}, 1), Task("report", {"train"})});
  sch::RunContext ctx = h.Context();
  ctx.resumed = true;
  // train expanded into 3: [0] succeeded, [1] running (adopted), [2] pending (held back).
  ctx.initial_states = {TaskState::kRunning, TaskState::kPending, TaskState::kSuccess,
                        TaskState::kRunning, TaskState::kPending};
  ctx.initial_attempts = {0, 0, 1, 1, 0};
  ctx.supervisors = {"", "", "", "sup:1", ""};
  ctx.instances = {{kiln::TaskId{0}, 0, Text("a")},
                   {kiln::TaskId{0}, 1, Text("b")},
                   {kiln::TaskId{0}, 2, Text("c")}};
  h.scheduler->AddRun(std::move(ctx));
  h.Settle();
  REQUIRE(h.runner.adopted.size() == 1);
  CHECK(h.runner.adopted[0].task_id == "train[1]");
  // max_parallel = 1: the adopted one holds the place.
  CHECK(h.runner.running.count("train[2]") == 0);
  h.runner.Exit("train[1]", 0);
  h.Settle();
  REQUIRE(h.runner.running.count("train[2]") == 1);
  CHECK(Env(h.runner.running.at("train[2]").request, "KILN_ITEM") == R"("c")");
  h.runner.Exit("train[2]", 0);
  h.Settle();
  CHECK(LastUpdate(h, "train")->state == TaskState::kSuccess);
  REQUIRE(h.runner.running.count("report") == 1);
  h.runner.Exit("report", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
}
