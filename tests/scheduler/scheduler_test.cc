// The scheduler driven end to end with fakes: a store that commits (or fails) on demand and a
// runner whose attempts the test ends by hand.
#include "tests/scheduler/scheduler_harness.h"

using namespace scheduler_test;

TEST_CASE("a chain runs in order and every start is durable before its launch") {
  Harness h({Task("a"), Task("b", {"a"}), Task("c", {"b"})});
  h.Start();
  REQUIRE(h.runner.order == std::vector<std::string>{"a"});
  h.runner.Exit("a", 0);
  h.Settle();
  h.runner.Exit("b", 0);
  h.Settle();
  h.runner.Exit("c", 0);
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"a", "b", "c"});
  REQUIRE(h.recorder.state == RunState::kSuccess);
  // The end of one task and the start of the next are one commit.
  bool b_end_with_c_start = false;
  for (const auto& batch : h.store.committed) {
    bool b_end = false, c_start = false;
    for (const auto& u : batch.tasks) {
      b_end |= u.task_id == "b" && u.state == TaskState::kSuccess;
      c_start |= u.task_id == "c" && u.state == TaskState::kRunning;
    }
    b_end_with_c_start |= b_end && c_start;
  }
  CHECK(b_end_with_c_start);
  CHECK(h.store.committed.size() == 4);
  CHECK(h.store.committed.back().runs.back().state == RunState::kSuccess);
}

TEST_CASE("launch requests carry the rendered command, the log path and an explicit env") {
  Harness h({Task("a")});
  h.Start({{"word", std::string("$(touch pwned)'; rm -rf x")}});
  REQUIRE(h.runner.running.count("a"));
  const auto& started = h.runner.running["a"];
  CHECK(started.start_was_durable);
  const auto& req = started.request;
  CHECK(req.argv ==
        std::vector<std::string>{"/bin/sh", "-c", "echo '$(touch pwned)'\\''; rm -rf x'"});
  CHECK(req.log_path == "/data/logs/p/7/a.1.log");
  CHECK(req.run_dir == "/data/runs/p/7");
  CHECK(req.cwd == "/pipelines");
  std::map<std::string, std::string> env(req.env.begin(), req.env.end());
  CHECK(env.size() == 12);
  CHECK(env["PATH"] == "/usr/bin:/bin");
  CHECK(env["KILN_RUN_ID"] == "7");
  CHECK(env["KILN_TASK_ID"] == "a");
  CHECK(env["KILN_ATTEMPT"] == "1");
  CHECK(env["KILN_PIPELINE"] == "p");
  CHECK(env["KILN_RUN_DIR"] == "/data/runs/p/7");
  CHECK(env["KILN_PARAM_WORD"] == "$(touch pwned)'; rm -rf x");
  CHECK(env["KILN_IDEMPOTENCY_KEY"] == "7:a");
  CHECK(env["KILN_LOGICAL_DATE"] == "2027-01-15T08:00:00Z");
  CHECK(env["KILN_DATA_INTERVAL_START"] == "2027-01-14T08:00:00Z");
  CHECK(env["KILN_DATA_INTERVAL_END"] == "2027-01-15T08:00:00Z");
  CHECK(env["KILN_TRIGGERED_BY"] == "5");
}

TEST_CASE("a run's tasks take its own user id, HOME is its folder, which closes at its end") {
  Harness h({Task("a")}, 4, [](sch::SchedulerOptions& o) {
    o.task_user = kiln::Identity{"kiln-task", 999, 995, {995, 44}, true};
    o.task_uids = kiln::UidRange{100000, 1000};
  });
  h.Start();
  REQUIRE(h.runner.running.count("a"));
  const auto& req = h.runner.running["a"].request;
  CHECK(req.user.switch_user);
  CHECK(req.user.name == "kiln-task");
  CHECK(req.user.uid == 100007);  // 100000 + run 7
  CHECK(req.user.gid == 100007);
  CHECK(req.user.groups == std::vector<gid_t>{995});
  std::map<std::string, std::string> env(req.env.begin(), req.env.end());
  CHECK(env["USER"] == "kiln-task");
  CHECK(env["LOGNAME"] == "kiln-task");
  CHECK(env["HOME"] == "/data/runs/p/7");
  CHECK(h.runner.closed.empty());
  h.runner.Exit("a", 0);
  h.Settle();
  CHECK(h.runner.closed == std::vector<std::filesystem::path>{"/data/runs/p/7"});
}

TEST_CASE("a run whose user id an active run holds fails its task instead of sharing it") {
  Harness h({Task("a")}, 4, [](sch::SchedulerOptions& o) {
    o.task_user = kiln::Identity{"kiln-task", 999, 995, {995}, true};
    o.task_uids = kiln::UidRange{100000, 1000};
  });
  h.Start();  // run 7: id 100007
  REQUIRE(h.runner.running.count("a"));
  sch::RunContext later = h.Context();
  later.id = RunId{1007};  // 1000 runs later: the same id
  h.scheduler->AddRun(later);
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"a"});
  bool failed = false;
  for (const auto& batch : h.store.committed) {
    for (const auto& u : batch.tasks) {
      if (u.run == RunId{1007} && u.state == TaskState::kFailed) {
        failed = true;
        CHECK(u.reason ==
              "could not start: run 7 is active and would share user id 100007 with this run "
              "(executor.run_uids holds 1000 ids); retry once it has ended, or widen the range");
      }
    }
  }
  CHECK(failed);
}

TEST_CASE("without a task user, tasks keep the scheduler's identity and folders stay open") {
  Harness h({Task("a")});
  h.Start();
  REQUIRE(h.runner.running.count("a"));
  CHECK_FALSE(h.runner.running["a"].request.user.switch_user);
  h.runner.Exit("a", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
  CHECK(h.runner.closed.empty());
}

TEST_CASE("a failed attempt is retried after its backoff, then succeeds") {
  auto t = Task("a");
  t.retry.retries = 2;
  t.retry.retry_delay = std::chrono::milliseconds(1);
  Harness h({t, Task("b", {"a"})});
  h.Start();
  h.runner.Exit("a", 3);
  h.Settle();  // the retry timer fires within the settle
  REQUIRE(h.runner.running.count("a"));
  CHECK(h.runner.running["a"].request.attempt == 2);
  h.runner.Exit("a", 0);
  h.Settle();
  h.runner.Exit("b", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
  auto updates = h.store.TaskUpdates();
  auto retry = std::find_if(updates.begin(), updates.end(),
                            [](const auto& u) { return u.state == TaskState::kUpForRetry; });
  REQUIRE(retry != updates.end());
  CHECK(retry->attempt == 1);
  CHECK(retry->end->exit_code == 3);
  CHECK(retry->retry_at == h.clock.now + std::chrono::milliseconds(1));
  CHECK(retry->reason == "exit code 3; retrying in 1ms");
}

TEST_CASE("a failure propagates upstream_failed and fails the run") {
  Harness h({Task("a"), Task("b", {"a"}), Task("c", {"b"})});
  h.Start();
  h.runner.Exit("a", 1);
  h.Settle();
  CHECK(h.recorder.state == RunState::kFailed);
  auto updates = h.store.TaskUpdates();
  REQUIRE(updates.size() == 4);
  CHECK(updates[1].task_id == "a");
  CHECK(updates[1].state == TaskState::kFailed);
  CHECK(updates[2].task_id == "b");
  CHECK(updates[2].state == TaskState::kUpstreamFailed);
  CHECK(updates[2].reason == "upstream 'a' failed");
  CHECK(updates[3].state == TaskState::kUpstreamFailed);
  CHECK(updates[3].reason == "upstream 'b' upstream_failed");
}

TEST_CASE("nothing launches until a failed commit is retried") {
  Harness h({Task("a")});
  h.store.fail_next = 1;
  h.Start();
  CHECK(h.store.calls == 2);
  REQUIRE(h.runner.running.count("a"));
  CHECK(h.runner.running["a"].start_was_durable);
}

TEST_CASE("the parallel limit queues tasks, which start as slots free up") {
  Harness h({Task("a"), Task("b"), Task("c")}, /*parallel=*/1);
  h.Start();
  CHECK(h.runner.order == std::vector<std::string>{"a"});
  int queued = 0;
  for (const auto& u : h.store.TaskUpdates()) queued += u.state == TaskState::kQueued;
  CHECK(queued == 2);
  h.runner.Exit("a", 0);
  h.Settle();
  h.runner.Exit("b", 0);
  h.Settle();
  h.runner.Exit("c", 0);
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"a", "b", "c"});
  CHECK(h.recorder.state == RunState::kSuccess);
}

TEST_CASE("pools resized while a run waits: the queued tasks start in the new room") {
  Harness h({Task("a"), Task("b"), Task("c")}, /*parallel=*/1);
  h.Start();
  CHECK(h.runner.order == std::vector<std::string>{"a"});
  // Refused, changing nothing: the queued tasks would have no pool.
  CHECK(h.scheduler->SetPools({{"cpu", 2}}, 2).message() ==
        "pool 'default' is left out, but it has 2 waiting tasks and 1 slot in use; keep it until "
        "they are done");
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"a"});
  REQUIRE(h.scheduler->SetPools({{"default", 3}}, 3).ok());
  h.Settle();
  CHECK(h.runner.order == std::vector<std::string>{"a", "b", "c"});
  CHECK(h.scheduler->Metrics().pools.at("default").slots == 3);
  for (const char* t : {"a", "b", "c"}) h.runner.Exit(t, 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
}

TEST_CASE("a task in an unknown pool fails with the reason, without running") {
  auto t = Task("a");
  t.pool = "gpu";
  Harness h({t, Task("b", {"a"})});
  h.Start();
  CHECK(h.runner.order.empty());
  CHECK(h.recorder.state == RunState::kFailed);
  auto updates = h.store.TaskUpdates();
  REQUIRE(updates.size() == 2);
  CHECK(updates[0].reason == "pool 'gpu' is not configured (configured: default)");
}

TEST_CASE("cancelling kills running attempts and cancels the rest") {
  Harness h({Task("a"), Task("b", {"a"})});
  h.Start();
  h.scheduler->CancelRun(RunId{7});
  h.Settle();
  CHECK(h.runner.running.empty());
  CHECK(h.recorder.state == RunState::kCancelled);
  auto updates = h.store.TaskUpdates();
  int cancelled = 0;
  for (const auto& u : updates) cancelled += u.state == TaskState::kCancelled;
  CHECK(cancelled == 2);
}

TEST_CASE("shutdown cancels active runs and reports done after the last commit") {
  Harness h({Task("a"), Task("b", {"a"})});
  h.Start();
  bool done = false;
  h.scheduler->Shutdown(sch::StopMode::kCancel, "the daemon stopped", [&] { done = true; });
  CHECK_FALSE(done);  // "a" is still running until its process is gone
  h.Settle();
  CHECK(done);
  CHECK(h.recorder.state == RunState::kCancelled);
  CHECK(h.store.committed.back().runs.back().state == RunState::kCancelled);
  auto updates = h.store.TaskUpdates();
  auto b = std::find_if(updates.begin(), updates.end(), [](const auto& u) {
    return u.task_id == "b" && u.state == TaskState::kCancelled;
  });
  REQUIRE(b != updates.end());
  CHECK(b->reason == "the daemon stopped");
}

TEST_CASE("a run added while stopping is cancelled at once") {
  Harness h({Task("a")});
  bool done = false;
  h.scheduler->Shutdown(sch::StopMode::kCancel, "the daemon stopped", [&] { done = true; });
  CHECK(done);
  h.Start();
  CHECK(h.runner.order.empty());
  CHECK(h.recorder.state == RunState::kCancelled);
}

TEST_CASE("a retry that must wait for a slot is recorded as queued") {
  auto t = Task("a");
  t.retry.retries = 1;
  t.retry.retry_delay = std::chrono::milliseconds(1);
  Harness h({t, Task("b")}, /*parallel=*/1);
  h.Start();
  h.runner.Exit("a", 1);
  h.Settle();  // b takes the only slot; a's retry comes due and waits
  REQUIRE(h.runner.running.count("b"));
  auto updates = h.store.TaskUpdates();
  CHECK(std::any_of(updates.begin(), updates.end(), [](const auto& u) {
    return u.task_id == "a" && u.state == TaskState::kQueued && u.attempt == 1;
  }));
  h.runner.Exit("b", 0);
  h.Settle();
  h.runner.Exit("a", 0);
  h.Settle();
  CHECK(h.recorder.state == RunState::kSuccess);
}
