// A request thread asking the scheduler's loop to do something, and waiting a bounded time for
// the answer: a loop that is stuck or very busy, or an answer that does not come back, never
// holds an HTTP thread (or a reload) for good.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <optional>

#include "common/status.h"
#include "common/time.h"

namespace kiln::daemon {

struct LoopAnswer {
  enum class State {
    kAnswered,  // `status` is the work's answer
    kNotBegun,  // the loop did not begin the work in time; it never will now
    kPending,   // begun, not answered in time: it may still take effect
  };
  State state = State::kNotBegun;
  Status status;
};

// Posts `work` to `io`. `work` runs on the loop's thread and calls its argument once with its
// outcome, at once or later, from any thread. Waits up to `wait` for that call. Work the loop
// has not begun by then is dropped, so a caller told kNotBegun knows it never happens.
// With `finish_begun`, work begun when the wait ends is waited for to its answer (for work that
// answers before it returns to the loop): kPending is then never returned. Otherwise `late`, if
// given, is called with the answer that comes after the caller was told kPending, on the thread
// that answers.
LoopAnswer CallOnLoop(boost::asio::io_context& io, Duration wait,
                      std::function<void(std::function<void(Status)> done)> work,
                      bool finish_begun = false, std::function<void(const Status&)> late = nullptr);

// Reads a value on the loop's thread; nullopt when the loop did not read it within `wait`.
template <typename T>
std::optional<T> ReadOnLoop(boost::asio::io_context& io, Duration wait, std::function<T()> read) {
  auto value = std::make_shared<std::optional<T>>();
  const LoopAnswer answer = CallOnLoop(
      io, wait,
      [value, read = std::move(read)](auto done) {
        *value = read();
        done(Status::Ok());
      },
      /*finish_begun=*/true);
  if (answer.state != LoopAnswer::State::kAnswered) return std::nullopt;
  return std::move(*value);
}

}  // namespace kiln::daemon
