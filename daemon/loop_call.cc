#include "daemon/loop_call.h"

#include <atomic>
#include <boost/asio/post.hpp>
#include <future>
#include <mutex>

namespace kiln::daemon {

LoopAnswer CallOnLoop(boost::asio::io_context& io, Duration wait,
                      std::function<void(std::function<void(Status)> done)> work, bool finish_begun,
                      std::function<void(const Status&)> late) {
  // Shared with the posted handler, which may outlive this call. Whichever of the handler and
  // the wait's end comes first decides whether the work happens: 0 open, 1 begun, 2 given up.
  // Under `mu`, the answer and the caller's giving up decide who sees the answer.
  struct Shared {
    std::atomic<int> state{0};
    std::mutex mu;
    bool answered = false;
    bool caller_gone = false;
    std::function<void(const Status&)> late;
    std::promise<Status> answer;
  };
  auto shared = std::make_shared<Shared>();
  shared->late = std::move(late);
  std::future<Status> answer = shared->answer.get_future();
  boost::asio::post(io, [shared, work = std::move(work)] {
    int open = 0;
    if (!shared->state.compare_exchange_strong(open, 1)) return;
    work([shared](Status s) {
      std::unique_lock lock(shared->mu);
      if (shared->answered) return;  // answered once only
      shared->answered = true;
      if (!shared->caller_gone) return shared->answer.set_value(std::move(s));
      lock.unlock();
      if (shared->late) shared->late(s);
    });
  });
  LoopAnswer out;
  if (answer.wait_for(wait) != std::future_status::ready) {
    int open = 0;
    if (shared->state.compare_exchange_strong(open, 2)) return out;  // kNotBegun
    if (!finish_begun) {
      std::lock_guard lock(shared->mu);
      if (!shared->answered) {
        shared->caller_gone = true;
        out.state = LoopAnswer::State::kPending;
        return out;
      }
    }
  }
  out.state = LoopAnswer::State::kAnswered;  // (begun work told to finish is waited for here)
  out.status = answer.get();
  return out;
}

}  // namespace kiln::daemon
