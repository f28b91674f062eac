// Runs in given states for the store tests, written through Database::CommitBatches as the
// scheduler would write them.
#pragma once

#include <string>
#include <vector>

#include "tests/store/test_support.h"

namespace kiln::store::testing {

inline scheduler::TaskUpdate StartUpdate(RunId run, const std::string& task, int attempt,
                                         Instant at) {
  scheduler::TaskUpdate u;
  u.run = run;
  u.task_id = task;
  u.attempt = attempt;
  u.state = dag::TaskState::kRunning;
  u.at = at;
  u.start = scheduler::AttemptStart{"/logs/" + task + "." + std::to_string(attempt), "worker-1",
                                    std::nullopt};
  return u;
}

inline scheduler::TaskUpdate EndUpdate(RunId run, const std::string& task, int attempt,
                                       dag::TaskState state, Instant at, int exit_code) {
  scheduler::TaskUpdate u;
  u.run = run;
  u.task_id = task;
  u.attempt = attempt;
  u.state = state;
  u.at = at;
  scheduler::AttemptEnd end;
  end.exit_code = exit_code;
  end.cpu = Duration(1500);
  end.max_rss_kb = 2048;
  if (exit_code != 0) end.reason = "exit code " + std::to_string(exit_code);
  u.end = end;
  u.reason = end.reason;
  return u;
}

inline scheduler::TaskUpdate PlainUpdate(RunId run, const std::string& task, dag::TaskState state,
                                         Instant at) {
  scheduler::TaskUpdate u;
  u.run = run;
  u.task_id = task;
  u.state = state;
  u.at = at;
  return u;
}

inline EventFilter Events(int64_t after, std::optional<std::string> pipeline = std::nullopt,
                          std::optional<RunId> run = std::nullopt, int limit = 1000) {
  EventFilter f;
  f.after = after;
  f.pipeline = std::move(pipeline);
  f.run = run;
  f.limit = limit;
  return f;
}

// Commits one batch; every update must apply.
inline void CommitNow(Database& db, scheduler::Batch batch) {
  const scheduler::Batch* group[] = {&batch};
  auto fenced = db.CommitBatches(group, "host:1", std::chrono::minutes(5));
  REQUIRE(fenced.ok());
  REQUIRE(fenced->empty());
}

inline RunId CreateOrFail(Database& db, const NewRun& run) {
  auto created = db.CreateRun(run);
  REQUIRE(created.ok());
  return created->id;
}

// A run of 'train' that failed: prepare succeeded (attempt 1, t=1..2), train failed twice
// (attempt 1 up_for_retry t=2..3, attempt 2 exit 3 t=4..5), evaluate upstream_failed; the run
// ran from t=1 and failed at t=6.
inline RunId FailedRun(Database& db) {
  const RunId run = CreateOrFail(db, SimpleRun({"prepare", "train", "evaluate"}));
  scheduler::Batch b1;
  b1.runs.push_back({run, dag::RunState::kRunning, At(1), ""});
  b1.tasks.push_back(StartUpdate(run, "prepare", 1, At(1)));
  CommitNow(db, b1);
  scheduler::Batch b2;
  b2.tasks = {EndUpdate(run, "prepare", 1, dag::TaskState::kSuccess, At(2), 0),
              StartUpdate(run, "train", 1, At(2))};
  CommitNow(db, b2);
  scheduler::TaskUpdate retry = EndUpdate(run, "train", 1, dag::TaskState::kUpForRetry, At(3), 3);
  retry.retry_at = At(4);
  scheduler::Batch b3;
  b3.tasks = {retry};
  CommitNow(db, b3);
  scheduler::Batch b4;
  b4.tasks = {StartUpdate(run, "train", 2, At(4))};
  CommitNow(db, b4);
  scheduler::Batch b5;
  b5.tasks = {EndUpdate(run, "train", 2, dag::TaskState::kFailed, At(5), 3),
              PlainUpdate(run, "evaluate", dag::TaskState::kUpstreamFailed, At(5))};
  b5.runs.push_back({run, dag::RunState::kFailed, At(6), ""});
  CommitNow(db, b5);
  return run;
}

// A run of 'train' that is running: a succeeded, b running (attempt 1), c up_for_retry after
// attempt 1 (retry at t=10), d pending.
inline RunId RunningRun(Database& db) {
  const RunId run = CreateOrFail(db, SimpleRun({"a", "b", "c", "d"}));
  scheduler::Batch b1;
  b1.runs.push_back({run, dag::RunState::kRunning, At(1), ""});
  b1.tasks = {StartUpdate(run, "a", 1, At(1)), StartUpdate(run, "b", 1, At(1)),
              StartUpdate(run, "c", 1, At(1))};
  CommitNow(db, b1);
  scheduler::TaskUpdate retry = EndUpdate(run, "c", 1, dag::TaskState::kUpForRetry, At(2), 1);
  retry.retry_at = At(10);
  scheduler::Batch b2;
  b2.tasks = {EndUpdate(run, "a", 1, dag::TaskState::kSuccess, At(2), 0), retry};
  CommitNow(db, b2);
  return run;
}

}  // namespace kiln::store::testing
