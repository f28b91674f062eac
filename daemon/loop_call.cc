#include "daemon/loop_call.h"

#include <atomic>
#include <boost/asio/post.hpp>
#include <future>
#include <memory>

namespace kiln::daemon {

LoopAnswer CallOnLoop(boost::asio::io_context& io, Duration wait,
                      std::function<void(std::function<void(Status)> done)> work,
                      bool finish_begun) {
  // Shared with the posted handler, which may outlive this call. Whichever of the handler and
  // the wait's end comes first decides whether the work happens: 0 open, 1 begun, 2 given up.
  struct Shared {
    std::atomic<int> state{0};
    std::atomic<bool> answered{false};
    std::promise<Status> answer;
  };
  auto shared = std::make_shared<Shared>();
  std::future<Status> answer = shared->answer.get_future();
  boost::asio::post(io, [shared, work = std::move(work)] {
    int open = 0;
    if (!shared->state.compare_exchange_strong(open, 1)) return;
    work([shared](Status s) {
      if (!shared->answered.exchange(true)) shared->answer.set_value(std::move(s));
    });
  });
  LoopAnswer out;
  if (answer.wait_for(wait) != std::future_status::ready) {
    int open = 0;
    if (shared->state.compare_exchange_strong(open, 2)) return out;  // kNotBegun
    if (!finish_begun && answer.wait_for(Duration(0)) != std::future_status::ready) {
      out.state = LoopAnswer::State::kPending;
      return out;
    }
  }
  out.state = LoopAnswer::State::kAnswered;  // (a begun work told to finish is waited for here)
  out.status = answer.get();
  return out;
}

}  // namespace kiln::daemon
