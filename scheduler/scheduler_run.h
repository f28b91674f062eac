// Internal to scheduler/: the state the scheduler keeps per active run, shared by the files
// that implement Scheduler (scheduler.cc: runs, exits, marks; launch.cc: building and starting
// attempts, the cache key; waits.cc: approvals; commits.cc: the batch and its commit).
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "dag/template.h"
#include "scheduler/run_plan.h"
#include "scheduler/scheduler.h"

namespace kiln::scheduler {

inline double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

struct Scheduler::Run {
  explicit Run(RunContext c)
      : ctx(std::move(c)),
        plan(ctx.initial_states.empty() ? RunPlan(*ctx.pipeline)
                                        : RunPlan(*ctx.pipeline, ctx.initial_states)) {
    size_t n = ctx.pipeline->dag.size();
    KILN_CHECK(ctx.initial_attempts.empty() || ctx.initial_attempts.size() == n);
    KILN_CHECK(ctx.round_base.empty() || ctx.round_base.size() == n);
    KILN_CHECK(ctx.supervisors.empty() || ctx.supervisors.size() == n);
    KILN_CHECK(ctx.retry_at.empty() || ctx.retry_at.size() == n);
    KILN_CHECK(ctx.recorded.empty() || ctx.recorded.size() == n);
    attempts = ctx.initial_attempts.empty() ? std::vector<int>(n, 0) : ctx.initial_attempts;
    round_base = ctx.round_base.empty() ? attempts : ctx.round_base;
    running.assign(n, false);
    holds.assign(n, false);
    launched.assign(n, false);
    tickets.resize(n);
    retry_timers.resize(n);
    ready_at.resize(n);
  }
  const dag::Pipeline& pipeline() const { return *ctx.pipeline; }

  // A mark waiting for a running attempt to exit.
  struct Mark {
    dag::TaskState state;
    std::string reason;
  };

  RunContext ctx;
  RunPlan plan;
  std::vector<int> attempts;      // last attempt number per task
  std::vector<int> round_base;    // attempt number before this round's first (retries count on)
  std::vector<Instant> ready_at;  // when the task became ready (for scheduling lag)
  std::unordered_map<uint32_t, Mark> marks;  // by task index; rare
  // A wait task (kind = "wait") in the waiting state: what it waits for, rendered.
  struct WaitState {
    std::string what;  // file | http | time
    std::string target;
    std::optional<Instant> at;  // for = "time"
    Duration every{0};
    std::optional<Instant> deadline;
    uint64_t generation = 0;  // a look's answer counts only for the look it answers
    std::string seen;         // what the last look found
    // What the armed timer is for. Decided when it is armed, not from the clock when it fires.
    enum class Due { kLook, kAt, kDeadline };
    Due due = Due::kLook;
  };
  std::unordered_map<uint32_t, WaitState> waits;  // by task index
  std::vector<bool> running;                      // holds slots: its start is recorded
  std::vector<bool> launched;                     // its process was started (or adopted)
  std::vector<bool> holds;                        // tickets[i] holds slots of its pool
  std::vector<Ticket> tickets;                    // the slots it holds while running
  std::vector<std::unique_ptr<boost::asio::steady_timer>> retry_timers;
  size_t running_count = 0;
  bool cancelling = false;
  dag::TemplateValues values;  // run-level template values
  std::filesystem::path dir;
};

}  // namespace kiln::scheduler
