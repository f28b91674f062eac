// CallOnLoop: a request thread's bounded wait for the scheduler's loop, and what it promises
// about work the loop never began.
#include "daemon/loop_call.h"

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <catch2/catch.hpp>
#include <functional>
#include <thread>

using namespace kiln;
using kiln::daemon::CallOnLoop;
using kiln::daemon::LoopAnswer;
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

constexpr auto kShort = std::chrono::milliseconds(50);
constexpr auto kLong = std::chrono::seconds(30);

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
  std::thread later;
  const LoopAnswer a = CallOnLoop(
      loop.io, kLong, [&](auto done) { later = std::thread([done] { done(Status::Ok()); }); });
  later.join();
  CHECK(a.state == State::kAnswered);
  CHECK(a.status.ok());
}

TEST_CASE("work a loop that does not run never began is dropped: it does not happen afterwards") {
  boost::asio::io_context io;  // not running: a loop that is stopping or stuck
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
}

TEST_CASE("work begun but not answered in time is pending, and its late answer is harmless") {
  RunningLoop loop;
  std::function<void(Status)> kept;
  std::atomic<bool> begun{false};
  const LoopAnswer a = CallOnLoop(loop.io, kShort, [&](auto done) {
    kept = done;  // a commit that does not come back in time
    begun = true;
  });
  CHECK(a.state == State::kPending);
  CHECK(begun);
  kept(Status::Ok());  // after the caller gave up
  kept(Status::Ok());  // and a second call changes nothing
}
