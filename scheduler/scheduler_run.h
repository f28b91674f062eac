// Internal to scheduler/: the state the scheduler keeps per active run, shared by the files
// that implement Scheduler (scheduler.cc: runs, exits, marks; launch.cc: building and starting
// attempts, the cache key; waits.cc: approvals; commits.cc: the batch and its commit).
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "dag/items.h"
#include "dag/template.h"
#include "scheduler/run_plan.h"
#include "scheduler/scheduler.h"

namespace kiln::scheduler {

inline double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

struct Scheduler::Run {
  explicit Run(RunContext c)
      : ctx(std::move(c)),
        plan(ctx.initial_states.empty()
                 ? RunPlan(*ctx.pipeline)
                 : RunPlan(*ctx.pipeline, ctx.initial_states, ParentsOf(ctx.instances))) {
    KILN_CHECK(ctx.instances.empty() || !ctx.initial_states.empty());
    for (RunContext::Instance& instance : ctx.instances) {
      first_instance.try_emplace(Index(instance.parent),
                                 static_cast<TaskId>(ctx.pipeline->dag.size() + instances.size()));
      instances.push_back(Instance{instance.parent, instance.index, std::move(instance.item)});
    }
    size_t n = ctx.pipeline->dag.size() + instances.size();
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
    unrecorded.assign(n, 0);
    tickets.resize(n);
    retry_timers.resize(n);
    ready_at.resize(n);
  }
  const dag::Pipeline& pipeline() const { return *ctx.pipeline; }
  size_t tasks() const { return ctx.pipeline->dag.size(); }

  // An instance of a mapped task (for_each): a unit after the pipeline's tasks.
  struct Instance {
    TaskId parent{};
    uint32_t index = 0;  // its item's position in the list
    dag::Value item;
  };
  std::vector<Instance> instances;  // unit - tasks()
  // Per mapped task (by index): its first instance; its instances follow in list order.
  std::unordered_map<uint32_t, TaskId> first_instance;
  const Instance* instance(TaskId unit) const {
    return Index(unit) < tasks() ? nullptr : &instances[Index(unit) - tasks()];
  }
  // The spec a unit runs: its own, or its parent's for an instance.
  const dag::TaskSpec& spec(TaskId unit) const {
    const Instance* i = instance(unit);
    return pipeline().task(i != nullptr ? i->parent : unit);
  }
  // "train", or "train[3]" for an instance: the task_id of its row, its logs and events.
  std::string name(TaskId unit) const {
    const Instance* i = instance(unit);
    return i != nullptr ? dag::InstanceName(pipeline().task(i->parent).id, i->index)
                        : pipeline().task(unit).id;
  }
  // The per-unit vectors grow by `count` entries (new instances).
  void Grow(size_t count) {
    const size_t n = attempts.size() + count;
    attempts.resize(n, 0);
    round_base.resize(n, 0);
    ready_at.resize(n);
    running.resize(n, false);
    launched.resize(n, false);
    unrecorded.resize(n, 0);
    holds.resize(n, false);
    tickets.resize(n);
    retry_timers.resize(n);
  }
  static std::vector<TaskId> ParentsOf(const std::vector<RunContext::Instance>& list) {
    std::vector<TaskId> out;
    out.reserve(list.size());
    for (const auto& i : list) out.push_back(i.parent);
    return out;
  }

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
  // The attempt launched early (StartsBeforeCommit) whose start still commits; 0: none.
  std::vector<int> unrecorded;
  std::vector<bool> holds;      // tickets[i] holds slots of its pool
  std::vector<Ticket> tickets;  // the slots it holds while running
  std::vector<std::unique_ptr<boost::asio::steady_timer>> retry_timers;
  // A mapped task with max_parallel: instances holding a place (queued, running or waiting to
  // retry) and those held back until one of them ends, in item order.
  struct Window {
    int limit = 0;
    int open = 0;
    std::deque<TaskId> held;
  };
  std::unordered_map<uint32_t, Window> windows;  // by parent index
  size_t running_count = 0;
  bool cancelling = false;
  dag::TemplateValues values;  // run-level template values
  std::filesystem::path dir;
};

}  // namespace kiln::scheduler
