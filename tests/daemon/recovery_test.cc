// Resuming runs from their rows (daemon/recovery.h): pure, no database.
#include "daemon/recovery.h"

#include <catch2/catch.hpp>

using namespace kiln;
using dag::TaskState;
using kiln::daemon::PipelineForRun;
using kiln::daemon::ResumeContext;

namespace {

dag::PipelinePtr MakePipeline(std::vector<std::string> ids, const std::string& hash = "h1") {
  dag::PipelineSpec spec;
  spec.name = "train";
  spec.file = "/pipelines/train.toml";
  spec.content_hash = hash;
  for (size_t i = 0; i < ids.size(); ++i) {
    dag::TaskSpec t;
    t.id = ids[i];
    t.command = "true";
    if (i > 0) t.needs = {ids[i - 1]};
    spec.tasks.push_back(t);
  }
  return std::make_shared<dag::Pipeline>(dag::Pipeline{spec, dag::Dag(spec), std::nullopt});
}

scheduler::TaskInstanceRecord Row(std::string id, TaskState state, int attempt, int round = 0) {
  scheduler::TaskInstanceRecord t;
  t.task_id = std::move(id);
  t.state = state;
  t.attempt = attempt;
  t.round_base = round;
  return t;
}

store::ActiveRun Active(std::vector<scheduler::TaskInstanceRecord> tasks,
                        dag::RunState state = dag::RunState::kRunning) {
  store::ActiveRun a;
  a.run.id = RunId(7);
  a.run.pipeline = "train";
  a.run.version_hash = "h1";
  a.run.state = state;
  a.run.logical_date = Instant(std::chrono::milliseconds(1000));
  a.run.triggered_by = RunId(5);
  a.run.tasks = std::move(tasks);
  a.owner = "host:/data";
  return a;
}

}  // namespace

TEST_CASE("a running run resumes with its states, adopted attempts and recorded ends") {
  auto pipeline = MakePipeline({"prep", "train", "eval"});
  auto active =
      Active({Row("prep", TaskState::kSuccess, 1), Row("train", TaskState::kRunning, 3, 1),
              Row("eval", TaskState::kPending, 0)});
  active.run.tasks[1].retry_at = std::nullopt;
  store::OpenAttempt open;
  open.task_id = "train";
  open.attempt = 3;
  open.supervisor = "host:/data/supervisor";
  scheduler::AttemptOutcome ended;
  ended.started = true;
  ended.exit_code = 0;
  open.outcome = ended;
  active.open = {open};
  active.cancel_reason = "cancelled by ops";
  auto ctx = ResumeContext(active, pipeline);
  REQUIRE(ctx.ok());
  CHECK(ctx->id == RunId(7));
  CHECK(ctx->resumed);
  CHECK(ctx->triggered_by == "5");
  CHECK(ctx->initial_states ==
        std::vector<TaskState>{TaskState::kSuccess, TaskState::kRunning, TaskState::kPending});
  CHECK(ctx->initial_attempts == std::vector<int>{1, 3, 0});
  CHECK(ctx->round_base == std::vector<int>{0, 1, 0});
  CHECK(ctx->supervisors == std::vector<std::string>{"", "host:/data/supervisor", ""});
  REQUIRE(ctx->recorded[1].has_value());
  CHECK(ctx->recorded[1]->exit_code == 0);
  CHECK_FALSE(ctx->recorded[0].has_value());
  CHECK(ctx->cancel_reason == "cancelled by ops");
  CHECK(ctx->data_interval_start == active.run.logical_date);
}

TEST_CASE("a queued (retried) run keeps its ended tasks and is not resumed") {
  auto pipeline = MakePipeline({"a", "b"});
  auto ctx = ResumeContext(
      Active({Row("a", TaskState::kSuccess, 1, 1), Row("b", TaskState::kPending, 2, 2)},
             dag::RunState::kQueued),
      pipeline);
  REQUIRE(ctx.ok());
  CHECK_FALSE(ctx->resumed);
  CHECK(ctx->initial_states == std::vector<TaskState>{TaskState::kSuccess, TaskState::kPending});
  CHECK(ctx->round_base == std::vector<int>{1, 2});
}

TEST_CASE("a run resumes on its own version of its pipeline") {
  auto run = Active({Row("a", TaskState::kRunning, 1), Row("b", TaskState::kPending, 0)}).run;
  auto current = MakePipeline({"a", "b"}, "h1");
  int asked = 0;
  auto source = [&]() -> Result<std::string> {
    ++asked;
    return std::string(
        "[pipeline]\nname = \"train\"\n[tasks.a]\ncommand = \"true\"\n"
        "[tasks.b]\nneeds = [\"a\"]\ncommand = \"echo old\"\n");
  };
  // The loaded version is the run's: used as it is.
  auto same = PipelineForRun(run, current, source);
  REQUIRE(same.ok());
  CHECK(*same == current);
  CHECK(asked == 0);
  // The file changed since: the run's version is parsed from its kept text, in the same folder.
  run.version_hash = "h0";
  auto own = PipelineForRun(run, current, source);
  REQUIRE(own.ok());
  CHECK(*own != current);
  CHECK((*own)->spec.file == "/pipelines/train.toml");
  CHECK((*own)->spec.tasks[1].command == "echo old");
  // Not kept, and the loaded version has other tasks: it cannot go on.
  auto other = MakePipeline({"a", "c"}, "h2");
  auto missing = []() { return Result<std::string>(Status::Error(ErrorCode::kNotFound, "gone")); };
  auto refused = PipelineForRun(run, other, missing);
  CHECK(refused.message() ==
        "run 7 of 'train' cannot go on: its version h0 is not kept and the tasks of the loaded "
        "version differ");
  // Not kept, but the loaded version has the same tasks: that one.
  auto fallback = PipelineForRun(run, current, missing);
  REQUIRE(fallback.ok());
  CHECK(*fallback == current);
  // Tasks that are not the pipeline's are refused.
  CHECK_FALSE(ResumeContext(Active({Row("x", TaskState::kPending, 0)}), current).ok());
}

namespace {

scheduler::TaskInstanceRecord Instance(std::string parent, int index, TaskState state,
                                       std::string item) {
  scheduler::TaskInstanceRecord t =
      Row(parent + "[" + std::to_string(index) + "]", state, state == TaskState::kPending ? 0 : 1);
  t.parent = std::move(parent);
  t.map_index = index;
  t.item = std::move(item);
  return t;
}

using kiln::daemon::ChooseRetry;
using Names = std::vector<std::string>;

}  // namespace

TEST_CASE("instances resume after the pipeline's tasks with their items read back") {
  auto pipeline = MakePipeline({"list", "train", "report"});
  auto active = Active({Row("list", TaskState::kSuccess, 1), Row("train", TaskState::kRunning, 0),
                        Row("report", TaskState::kPending, 0),
                        Instance("train", 0, TaskState::kSuccess, R"({"c":0.5})"),
                        Instance("train", 1, TaskState::kPending, R"("eu")")});
  CHECK(daemon::SameTasks(active.run, *pipeline));
  auto ctx = ResumeContext(active, pipeline);
  REQUIRE(ctx.ok());
  REQUIRE(ctx->instances.size() == 2);
  CHECK(ctx->instances[0].parent == TaskId{1});
  CHECK(ctx->instances[1].index == 1);
  CHECK(ctx->instances[1].item.string == "eu");
  CHECK(ctx->instances[0].item.Find("c")->number == 0.5);
  CHECK(ctx->initial_states.size() == 5);
  // An instance row before the pipeline's tasks, or naming no task of it, is not this pipeline.
  auto stray = active;
  stray.run.tasks[4].parent = "nope";
  CHECK_FALSE(daemon::SameTasks(stray.run, *pipeline));
}

TEST_CASE("retrying a mapped task: failed instances only, from one instance, or made again") {
  auto pipeline = MakePipeline({"list", "train", "report"});
  scheduler::RunRecord run =
      Active({Row("list", TaskState::kSuccess, 1), Row("train", TaskState::kFailed, 0),
              Row("report", TaskState::kUpstreamFailed, 0),
              Instance("train", 0, TaskState::kSuccess, "1"),
              Instance("train", 1, TaskState::kFailed, "2"),
              Instance("train", 2, TaskState::kSuccess, "3")},
             dag::RunState::kFailed)
          .run;
  SECTION("the failed ones: the task reopens, its failed instances and its downstream re-run") {
    auto c = ChooseRetry(run, *pipeline, std::nullopt);
    REQUIRE(c.ok());
    CHECK(c->pending == Names{"train[1]", "report"});
    CHECK(c->reopen == Names{"train"});
    CHECK(c->drop.empty());
  }
  SECTION("one instance that succeeded: it re-runs, so does everything after its task") {
    run.tasks[1].state = TaskState::kSuccess;
    run.tasks[2].state = TaskState::kSuccess;
    run.tasks[4].state = TaskState::kSuccess;
    auto c = ChooseRetry(run, *pipeline, std::string("train[2]"));
    REQUIRE(c.ok());
    CHECK(c->pending == Names{"train[2]", "report"});
    CHECK(c->reopen == Names{"train"});
    CHECK(c->drop.empty());
  }
  SECTION("from its upstream, or from the task itself: its instances are made again") {
    for (const std::string from : {"list", "train"}) {
      auto c = ChooseRetry(run, *pipeline, from);
      REQUIRE(c.ok());
      CHECK(c->pending ==
            (from == "list" ? Names{"list", "train", "report"} : Names{"train", "report"}));
      CHECK(c->reopen.empty());
      CHECK(c->drop == Names{"train"});
    }
  }
  SECTION("an unknown instance") {
    auto c = ChooseRetry(run, *pipeline, std::string("train[9]"));
    CHECK(c.status().code() == ErrorCode::kNotFound);
    CHECK(c.message() == "run 7 has no task 'train[9]'");
  }
}
