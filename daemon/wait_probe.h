// Looks at what wait tasks (kind = "wait") wait for, on threads of its own: whether a file exists
// (a stat) or a URL answers 2xx to a GET (daemon/http_out.h: 5 s to connect, 10 s to answer,
// redirects not followed). The scheduler's SchedulerOptions::probe; its threads also read the
// item files of for_each tasks (SchedulerOptions::read_items).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "scheduler/scheduler.h"

namespace kiln::daemon {

// One look, done on the calling thread: what WaitProber's threads run.
scheduler::WaitAnswer LookOnce(const scheduler::WaitProbe& probe);

class WaitProber {
 public:
  explicit WaitProber(int threads = 4);
  // Stops its threads after the looks under way; queued looks are dropped (their `done` is
  // never called: whoever asked is gone by then).
  ~WaitProber();
  WaitProber(const WaitProber&) = delete;
  WaitProber& operator=(const WaitProber&) = delete;

  // Thread-safe. `done` runs on one of the prober's threads.
  void Probe(const scheduler::WaitProbe& probe, std::function<void(scheduler::WaitAnswer)> done);
  // Thread-safe. Runs `job` on one of the prober's threads (dropped when stopping).
  void Run(std::function<void()> job);

 private:
  using Job = std::function<void()>;
  void Work();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace kiln::daemon
