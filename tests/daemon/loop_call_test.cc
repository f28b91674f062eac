// CallOnLoop and ReadOnLoop: a request thread's bounded wait for the scheduler's loop, and what
// they promise about work the loop never began or did not answer in time.
#include "daemon/loop_call.h"

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <catch2/catch.hpp>
#include <functional>
#include <future>
#include <thread>

using namespace kiln;
using kiln::daemon::CallOnLoop;
using kiln::daemon::LoopAnswer;
using kiln::daemon::ReadOnLoop;
using State = LoopAnswer::State;

namespace {

// A loop running on a thread of its own until the object dies.
struct RunningLoop {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{io.get_executor()};
  std::thread thread{[this] { io.run(); }};
  ~RunningLoop() {
    guard.reset();
    io.stop();
    thread.join();
  }
};

// A loop the test turns by hand (run_one), while a caller waits on another thread.
struct HandLoop {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{io.get_executor()};
};

constexpr auto kShort = std::chrono::milliseconds(50);
constexpr auto kLong = std::chrono::seconds(30);
// The caller's wait where the test's thread turns the loop: run_one is already waiting for the
// handler when it is posted, so it begins the work well within this.
constexpr auto kHand = std::chrono::seconds(2);

}  // namespace

TEST_CASE("work the loop runs is answered with its status, on the loop's thread") {
  RunningLoop loop;
  std::thread::id ran_on;
  const LoopAnswer a = CallOnLoop(loop.io, kLong, [&](auto done) {
    ran_on = std::this_thread::get_id();
    done(Status::Error(ErrorCode::kConflict, "pool 'gpu' is in use"));
  });
  CHECK(a.state == State::kAnswered);
  CHECK(a.status.code() == ErrorCode::kConflict);
  CHECK(a.status.message() == "pool 'gpu' is in use");
  CHECK(ran_on == loop.thread.get_id());
}

TEST_CASE("an answer given later, from another thread, is waited for") {
  RunningLoop loop;
  std::promise<std::function<void(Status)>> handed;
  std::thread later([f = handed.get_future()]() mutable { f.get()(Status::Ok()); });
  const LoopAnswer a =
      CallOnLoop(loop.io, kLong, [&](auto done) { handed.set_value(std::move(done)); });
  later.join();
  CHECK(a.state == State::kAnswered);
  CHECK(a.status.ok());
}

TEST_CASE("work a loop that does not run never began is dropped: it does not happen afterwards") {
  boost::asio::io_context io;  // not running: a loop that is stuck
  std::atomic<int> ran{0};
  const LoopAnswer a = CallOnLoop(
      io, kShort,
      [&](auto done) {
        ++ran;
        done(Status::Ok());
      },
      /*finish_begun=*/true);
  CHECK(a.state == State::kNotBegun);
  io.run();  // the loop comes back: the handler is there, and does nothing
  CHECK(ran == 0);
  CHECK_FALSE(ReadOnLoop<int>(io, kShort, [] { return 7; }).has_value());
}

TEST_CASE("work begun but not answered in time is pending, and its late answer goes to `late`") {
  HandLoop loop;
  std::function<void(Status)> kept;
  std::promise<Status> late;
  std::future<LoopAnswer> answer = std::async(std::launch::async, [&] {
    return CallOnLoop(
        loop.io, kHand, [&](auto done) { kept = std::move(done); }, /*finish_begun=*/false,
        [&](const Status& s) { late.set_value(s); });
  });
  loop.io.run_one();  // begins the work, which keeps its answer back
  const LoopAnswer a = answer.get();
  REQUIRE(a.state == State::kPending);
  kept(Status::Error(ErrorCode::kConflict, "decided after all"));
  kept(Status::Ok());  // a second answer changes nothing
  CHECK(late.get_future().get().message() == "decided after all");
}

TEST_CASE("with finish_begun, work begun is waited for past the wait to its answer") {
  HandLoop loop;
  std::function<void(Status)> kept;
  std::future<LoopAnswer> answer = std::async(std::launch::async, [&] {
    return CallOnLoop(
        loop.io, kHand, [&](auto done) { kept = std::move(done); }, /*finish_begun=*/true);
  });
  loop.io.run_one();  // begun; the caller's wait ends while the answer is kept back
  CHECK(answer.wait_for(kHand + kHand / 2) == std::future_status::timeout);
  REQUIRE(kept);
  kept(Status::Error(ErrorCode::kConflict, "refused"));
  const LoopAnswer a = answer.get();
  CHECK(a.state == State::kAnswered);
  CHECK(a.status.message() == "refused");
}

TEST_CASE("a read on the loop returns its value") {
  RunningLoop loop;
  CHECK(ReadOnLoop<std::string>(loop.io, kLong, [] { return std::string("read"); }) == "read");
}
