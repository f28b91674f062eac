#include "executor/local_runner.h"

#include <signal.h>
#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <optional>
#include <string>

#include "scheduler/retry.h"
#include "tests/executor/test_util.h"

using namespace std::chrono_literals;
using kiln::RunId;
using kiln::TaskId;
using kiln::executor::LocalTaskRunner;
using kiln::scheduler::AttemptOutcome;
using kiln::scheduler::LaunchRequest;
namespace t = kiln::executor::testing;

namespace {

LaunchRequest Request(const t::TempDir& dir, std::string script) {
  LaunchRequest request;
  request.run = RunId{42};
  request.task = TaskId{3};
  request.attempt = 1;
  request.argv = {"/bin/sh", "-c", std::move(script)};
  request.env = t::kEnv;
  request.run_dir = dir / "runs/42";
  request.cwd = request.run_dir;
  request.log_path = dir / "logs/42/3/1.log";
  return request;
}

}  // namespace

TEST_CASE("the runner creates the run folder and runs the attempt in it") {
  t::TempDir dir;
  boost::asio::io_context io;
  LocalTaskRunner runner(io, 1 << 20, 1s);
  std::optional<AttemptOutcome> outcome;
  LaunchRequest request = Request(dir, "pwd; echo result > out.txt; exit 4");
  runner.Start(request, [&](AttemptOutcome o) { outcome = std::move(o); });
  CHECK_FALSE(outcome.has_value());
  CHECK(runner.running() == 1);
  t::RunUntil(io, [&] { return outcome.has_value(); });
  CHECK(runner.running() == 0);
  CHECK(outcome->started);
  CHECK(outcome->error.empty());
  CHECK(outcome->exit_code == 4);
  CHECK_FALSE(outcome->signal.has_value());
  CHECK_FALSE(outcome->timed_out);
  CHECK_FALSE(outcome->killed);
  CHECK(outcome->started_at <= outcome->ended_at);
  CHECK(outcome->log_bytes == request.run_dir.string().size() + 1);
  CHECK(t::ReadFile(request.log_path) == request.run_dir.string() + "\n");
  CHECK(t::ReadFile(request.run_dir / "out.txt") == "result\n");
  struct stat st;
  REQUIRE(::stat(request.run_dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0750);
}

TEST_CASE("a run folder that cannot be created is a start failure") {
  t::TempDir dir;
  { std::ofstream(dir / "runs") << "a file where the folder should be"; }
  boost::asio::io_context io;
  LocalTaskRunner runner(io, 1 << 20, 1s);
  std::optional<AttemptOutcome> outcome;
  LaunchRequest request = Request(dir, "true");
  runner.Start(request, [&](AttemptOutcome o) { outcome = std::move(o); });
  CHECK_FALSE(outcome.has_value());
  t::RunUntil(io, [&] { return outcome.has_value(); });
  CHECK_FALSE(outcome->started);
  CHECK(outcome->error ==
        "cannot create folder '" + (dir / "runs/42").string() + "': Not a directory");
  CHECK(t::ReadFile(request.log_path) == "[kiln: " + outcome->error + "]\n");
}

TEST_CASE("Kill terminates the attempt of that run and task only") {
  t::TempDir dir;
  boost::asio::io_context io;
  LocalTaskRunner runner(io, 1 << 20, 5s);
  std::optional<AttemptOutcome> first, second;
  LaunchRequest a = Request(dir, "sleep 30");
  LaunchRequest b = Request(dir, "sleep 30");
  b.task = TaskId{4};
  b.log_path = dir / "logs/42/4/1.log";
  runner.Start(a, [&](AttemptOutcome o) { first = std::move(o); });
  runner.Start(b, [&](AttemptOutcome o) { second = std::move(o); });
  runner.Kill(RunId{7}, TaskId{3});  // unknown: no effect
  runner.Kill(RunId{42}, TaskId{3});
  t::RunUntil(io, [&] { return first.has_value(); });
  CHECK(first->killed);
  CHECK(first->signal == SIGTERM);
  CHECK_FALSE(second.has_value());
  CHECK(runner.running() == 1);
  runner.Kill(RunId{42}, TaskId{3});  // already over: no effect
  runner.KillAll();
  t::RunUntil(io, [&] { return second.has_value(); });
  CHECK(second->killed);
  CHECK(runner.running() == 0);
}

TEST_CASE("the request's timeout and the runner's grace period apply") {
  t::TempDir dir;
  boost::asio::io_context io;
  LocalTaskRunner runner(io, 1 << 20, 200ms);
  std::optional<AttemptOutcome> outcome;
  // Again with twice the timeout while it came before the shell had set its trap (a machine too
  // busy for that proves nothing).
  const auto ready = dir / "ready";
  for (auto timeout = 200ms; timeout <= 12800ms; timeout *= 2) {
    std::filesystem::remove(ready);
    LaunchRequest request = Request(dir, "trap '' TERM; echo > '" + ready.string() + "'; sleep 30");
    request.timeout = timeout;
    outcome.reset();
    runner.Start(request, [&](AttemptOutcome o) { outcome = std::move(o); });
    t::RunUntil(io, [&] { return outcome.has_value(); });
    if (t::ReadFile(ready) == "\n") break;
  }
  CHECK(outcome->timed_out);
  CHECK_FALSE(outcome->killed);
  CHECK(outcome->signal == SIGKILL);
}

TEST_CASE("the runner's log cap applies") {
  t::TempDir dir;
  boost::asio::io_context io;
  LocalTaskRunner runner(io, 4, 1s);
  std::optional<AttemptOutcome> outcome;
  runner.Start(Request(dir, "printf 0123456789"),
               [&](AttemptOutcome o) { outcome = std::move(o); });
  t::RunUntil(io, [&] { return outcome.has_value(); });
  CHECK(outcome->log_truncated);
  CHECK(outcome->log_bytes == 10);
  CHECK(t::ReadFile(dir / "logs/42/3/1.log") ==
        "0123\n[kiln: log truncated at 4 bytes; further output discarded]\n");
}

TEST_CASE("process results map field by field to attempt outcomes") {
  kiln::executor::ProcessResult r;
  r.started = true;
  r.error = "e";
  r.exit_code = 2;
  r.signal = 9;
  r.timed_out = true;
  r.killed = true;
  r.started_at = kiln::Instant(1000ms);
  r.ended_at = kiln::Instant(2500ms);
  r.cpu = 700ms;
  r.max_rss_kb = 1234;
  r.log_bytes = 99;
  r.log_truncated = true;
  AttemptOutcome o = kiln::executor::ToAttemptOutcome(r);
  CHECK(o.started);
  CHECK(o.error == "e");
  CHECK(o.exit_code == 2);
  CHECK(o.signal == 9);
  CHECK(o.timed_out);
  CHECK(o.killed);
  CHECK(o.started_at == kiln::Instant(1000ms));
  CHECK(o.ended_at == kiln::Instant(2500ms));
  CHECK(o.cpu == 700ms);
  CHECK(o.max_rss_kb == 1234);
  CHECK(o.log_bytes == 99);
  CHECK(o.log_truncated);
}

TEST_CASE("after an exit 0 the collector runs in the task's folder and its report is the results") {
  t::TempDir dir;
  boost::asio::io_context io;
  LocalTaskRunner runner(io, 1 << 20, 1s);
  std::optional<AttemptOutcome> outcome;
  LaunchRequest request = Request(dir, "echo task; echo model > out.bin");
  request.collect_argv = {"/bin/sh", "-c", "printf '{\"from\": \"%s\"}\\n' \"$(cat out.bin)\""};
  runner.Start(request, [&](AttemptOutcome o) { outcome = std::move(o); });
  t::RunUntil(io, [&] { return outcome.has_value(); });
  CHECK(outcome->exit_code == 0);
  CHECK_FALSE(outcome->collect_failed);
  CHECK(outcome->results == "{\"from\": \"model\"}");
  CHECK(t::ReadFile(request.log_path) == "task\n");
  // The report is read and removed; nothing is left beside the log.
  CHECK_FALSE(std::filesystem::exists(request.log_path.string() + ".results"));
  CHECK(runner.running() == 0);
}

TEST_CASE("a collector that fails fails the attempt and says why in its log") {
  t::TempDir dir;
  boost::asio::io_context io;
  LocalTaskRunner runner(io, 1 << 20, 1s);
  std::optional<AttemptOutcome> outcome;
  LaunchRequest request = Request(dir, "echo task");
  request.collect_argv = {"/bin/sh", "-c", "echo \"output 'model.bin' does not exist\"; exit 1"};
  runner.Start(request, [&](AttemptOutcome o) { outcome = std::move(o); });
  t::RunUntil(io, [&] { return outcome.has_value(); });
  CHECK(outcome->exit_code == 0);
  CHECK(outcome->collect_failed);
  CHECK(outcome->results.empty());
  CHECK(outcome->error == "output 'model.bin' does not exist");
  CHECK(kiln::scheduler::Describe(kiln::dag::TaskSpec{}, *outcome) ==
        "output 'model.bin' does not exist");
  CHECK(t::ReadFile(request.log_path) == "task\n[kiln: output 'model.bin' does not exist]\n");
}

TEST_CASE("after a kind's skip code the collector runs, best effort: a skip stays a skip") {
  t::TempDir dir;
  boost::asio::io_context io;
  LocalTaskRunner runner(io, 1 << 20, 1s);
  std::optional<AttemptOutcome> kept;
  LaunchRequest request = Request(dir, "echo no; exit 3");
  request.collect_argv = {"/bin/sh", "-c", "echo '{\"report\": {\"decision\": \"fail\"}}'"};
  request.collect_also_on = {3};
  runner.Start(request, [&](AttemptOutcome o) { kept = std::move(o); });
  t::RunUntil(io, [&] { return kept.has_value(); });
  CHECK(kept->exit_code == 3);
  CHECK_FALSE(kept->collect_failed);
  CHECK(kept->results == "{\"report\": {\"decision\": \"fail\"}}");

  // One that fails there leaves the outcome as it was, and says why in the log.
  std::optional<AttemptOutcome> lost;
  LaunchRequest again = Request(dir, "echo no; exit 3");
  again.attempt = 2;
  again.log_path = dir / "logs/42/3/2.log";
  again.collect_argv = {"/bin/sh", "-c", "echo \"metrics file 'm.json' does not exist\"; exit 1"};
  again.collect_also_on = {3};
  runner.Start(again, [&](AttemptOutcome o) { lost = std::move(o); });
  t::RunUntil(io, [&] { return lost.has_value(); });
  CHECK(lost->exit_code == 3);
  CHECK_FALSE(lost->collect_failed);
  CHECK(lost->error.empty());
  CHECK(lost->results.empty());
  CHECK(t::ReadFile(again.log_path) ==
        "no\n[kiln: its results were not kept: metrics file 'm.json' does not exist]\n");
  CHECK(runner.running() == 0);
}

TEST_CASE("no collector runs after a failure, and Kill stops a collector") {
  t::TempDir dir;
  boost::asio::io_context io;
  LocalTaskRunner runner(io, 1 << 20, 1s);
  std::optional<AttemptOutcome> failed;
  LaunchRequest request = Request(dir, "exit 3");
  request.collect_argv = {"/bin/sh", "-c", "touch collected"};
  runner.Start(request, [&](AttemptOutcome o) { failed = std::move(o); });
  t::RunUntil(io, [&] { return failed.has_value(); });
  CHECK(failed->exit_code == 3);
  CHECK_FALSE(failed->collect_failed);
  CHECK_FALSE(std::filesystem::exists(request.run_dir / "collected"));

  std::optional<AttemptOutcome> killed;
  LaunchRequest slow = Request(dir, "true");
  slow.attempt = 2;
  slow.collect_argv = {"/bin/sh", "-c", "touch collecting; exec sleep 30"};
  runner.Start(slow, [&](AttemptOutcome o) { killed = std::move(o); });
  // The file appears without an event on the loop: run it in short turns until it does.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!killed && !std::filesystem::exists(slow.run_dir / "collecting") &&
         std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(10ms);
  }
  REQUIRE_FALSE(killed.has_value());
  CHECK(runner.running() == 1);
  runner.Kill(slow.run, slow.task);
  t::RunUntil(io, [&] { return killed.has_value(); });
  CHECK(killed->killed);
  CHECK(killed->collect_failed);
  CHECK(killed->error == "stopped while its inputs, outputs and metrics were collected");
  CHECK(kiln::scheduler::Classify(kiln::dag::TaskSpec{}, *killed) == kiln::dag::TaskState::kFailed);
}
