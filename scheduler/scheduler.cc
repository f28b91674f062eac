#include "scheduler/scheduler.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <set>

#include "common/log.h"
#include "common/sha256.h"
#include "dag/template.h"
#include "scheduler/retry.h"
#include "scheduler/run_plan.h"

namespace kiln::scheduler {

namespace asio = boost::asio;
using dag::TaskState;

namespace {

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

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
    TaskState state;
    std::string reason;
  };

  RunContext ctx;
  RunPlan plan;
  std::vector<int> attempts;      // last attempt number per task
  std::vector<int> round_base;    // attempt number before this round's first (retries count on)
  std::vector<Instant> ready_at;  // when the task became ready (for scheduling lag)
  std::unordered_map<uint32_t, Mark> marks;  // by task index; rare
  std::vector<bool> running;                 // holds slots: its start is recorded
  std::vector<bool> launched;                // its process was started (or adopted)
  std::vector<bool> holds;                   // tickets[i] holds slots of its pool
  std::vector<Ticket> tickets;               // the slots it holds while running
  std::vector<std::unique_ptr<asio::steady_timer>> retry_timers;
  size_t running_count = 0;
  bool cancelling = false;
  dag::TemplateValues values;  // run-level template values
  std::filesystem::path dir;
};

Scheduler::Scheduler(asio::io_context& io, StateStore& store, TaskRunner& runner, Clock& clock,
                     SchedulerOptions options)
    : io_(io),
      store_(store),
      runner_(runner),
      clock_(clock),
      options_(std::move(options)),
      pools_(options_.pools, options_.max_parallel_tasks),
      alive_(std::make_shared<bool>(true)) {}

Scheduler::~Scheduler() { *alive_ = false; }

void Scheduler::AddRun(RunContext context) {
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  RunId id = context.id;
  auto run = std::make_unique<Run>(std::move(context));
  const RunContext& ctx = run->ctx;
  const std::string& name = ctx.pipeline->spec.name;
  run->dir = options_.runs_dir / name / ToString(id);
  for (const auto& [param, value] : ctx.params) run->values["params." + param] = dag::ToText(value);
  run->values["run.id"] = ToString(id);
  run->values["run.dir"] = run->dir.string();
  run->values["run.logical_date"] = FormatRfc3339(ctx.logical_date);
  run->values["run.data_interval_start"] = FormatRfc3339(ctx.data_interval_start);
  run->values["run.data_interval_end"] = FormatRfc3339(ctx.data_interval_end);
  run->values["run.triggered_by"] = ctx.triggered_by;
  run->values["pipeline.name"] = name;
  auto [it, inserted] = runs_.try_emplace(id, std::move(run));
  if (!inserted) {
    log::Error("run " + ToString(id) + " is already active; second start ignored");
    return;
  }
  finishing_.erase(id);
  Run& r = *it->second;
  Instant now = clock_.Now();
  if (!r.ctx.resumed) Record(RunUpdate{id, dag::RunState::kRunning, now, ""});
  // A retry: pending tasks that kept upstreams already decide end now (before any cancel, so
  // that their rows are not left pending).
  RecordDecided(r, r.plan.TakeInitialChanges(), now);
  // A resumed run: attempts under way are adopted, retries and approvals wait for their time.
  const size_t n = r.pipeline().dag.size();
  for (size_t i = 0; i < n && r.ctx.resumed; ++i) {
    const auto task = static_cast<TaskId>(i);
    if (r.plan.state(task) == TaskState::kRunning) {
      AdoptTask(r, task);
    } else if (r.plan.state(task) == TaskState::kUpForRetry) {
      std::optional<Instant> due = r.ctx.retry_at.empty() ? std::nullopt : r.ctx.retry_at[i];
      StartRetryTimer(r, task, std::max(due.value_or(now) - now, Duration(0)));
    } else if (r.plan.state(task) == TaskState::kWaiting) {
      // The deadline set when it began to wait holds: a restart does not extend it.
      if (!r.ctx.retry_at.empty() && r.ctx.retry_at[i])
        StartDeadlineTimer(r, task, *r.ctx.retry_at[i]);
    }
  }
  if (stopping_) {
    CancelRun(id, stop_reason_);
    return;
  }
  if (r.ctx.cancel_reason) {
    CancelRun(id, *r.ctx.cancel_reason);
    return;
  }
  Pump(r);
  StartStartable();
  MaybeFinishRun(r);
}

void Scheduler::AdoptTask(Run& run, TaskId task) {
  const size_t i = Index(task);
  const dag::TaskSpec& spec = run.pipeline().task(task);
  run.running[i] = true;
  run.launched[i] = true;
  ++run.running_count;
  ++running_attempts_;
  ++metrics_.attempts_adopted;
  run.tickets[i] =
      Ticket{run.ctx.id, task, spec.pool, spec.slots, spec.priority, run.ctx.background};
  run.holds[i] = pools_.Occupy(run.tickets[i]);
  AdoptRequest request;
  request.run = run.ctx.id;
  request.task = task;
  request.attempt = run.attempts[i];
  request.task_id = spec.id;
  request.supervisor = run.ctx.supervisors.empty() ? "" : run.ctx.supervisors[i];
  request.timeout = spec.timeout;
  const RunId id = run.ctx.id;
  const int attempt = request.attempt;
  if (!run.ctx.recorded.empty() && run.ctx.recorded[i]) {
    asio::post(io_, [this, alive = alive_, id, task, attempt, o = *run.ctx.recorded[i]] {
      if (*alive) OnAttemptExit(id, task, attempt, o);
    });
    return;
  }
  runner_.Adopt(request, [this, alive = alive_, id, task, attempt](AttemptOutcome outcome) {
    if (*alive) OnAttemptExit(id, task, attempt, outcome);
  });
}

void Scheduler::Release(RunId run_id) {
  finishing_.erase(run_id);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  ++metrics_.runs_released;
  pools_.RemoveRun(run_id);
  for (size_t i = 0; i < run.running.size(); ++i) {
    if (run.running[i]) FreeSlot(run, i);
    run.retry_timers[i].reset();
  }
  runs_.erase(it);
  StartStartable();  // its slots may let other runs' tasks start
  MaybeShutdownDone();
}

// A running task gives back its slot (its attempt ended, or its run was released).
void Scheduler::FreeSlot(Run& run, size_t i) {
  run.running[i] = false;
  if (run.launched[i]) --running_attempts_;
  run.launched[i] = false;
  --run.running_count;
  if (run.holds[i]) pools_.Release(run.tickets[i]);
  run.holds[i] = false;
}

void Scheduler::Shutdown(StopMode mode, const std::string& reason, std::function<void()> done) {
  stopping_ = true;
  stop_mode_ = mode;
  stop_reason_ = reason;
  on_stopped_ = std::move(done);
  if (mode == StopMode::kCancel) {
    std::vector<RunId> ids;
    for (const auto& [id, run] : runs_) ids.push_back(id);
    for (RunId id : ids) CancelRun(id, reason);
  } else {
    // Nothing new: waiting retries and queued tasks stay as recorded, for the next daemon.
    for (auto& [id, run] : runs_) {
      for (auto& timer : run->retry_timers) timer.reset();
      pools_.RemoveRun(id);
    }
  }
  if (!pending_.empty()) ScheduleFlush();
  MaybeShutdownDone();
}

void Scheduler::MaybeShutdownDone() {
  if (!stopping_ || !on_stopped_ || commit_in_flight_ || flush_posted_ || !pending_.empty() ||
      lookups_in_flight_ > 0) {
    return;
  }
  if (stop_mode_ == StopMode::kCancel && !runs_.empty()) return;
  auto done = std::move(on_stopped_);
  on_stopped_ = nullptr;
  done();
}

void Scheduler::CancelRun(RunId run_id, const std::string& reason) {
  auto it = runs_.find(run_id);
  if (it == runs_.end() || it->second->cancelling) return;
  Run& run = *it->second;
  run.cancelling = true;
  pools_.RemoveRun(run_id);
  Instant now = clock_.Now();
  for (TaskId task : run.plan.CancelAll()) {
    size_t i = Index(task);
    run.retry_timers[i].reset();
    if (run.running[i]) {
      // Ends when its process is gone (or, if not launched yet, when its start is durable).
      if (run.launched[i]) runner_.Kill(run_id, task);
      continue;
    }
    Record(TaskUpdate{run_id, run.pipeline().task(task).id, run.attempts[i], TaskState::kCancelled,
                      now, std::nullopt, std::nullopt, std::nullopt, reason});
  }
  MaybeFinishRun(run);
  StartStartable();  // tickets of other runs may have waited behind removed ones
}

void Scheduler::Pump(Run& run) {
  for (auto ready = run.plan.TakeReady(); !ready.empty(); ready = run.plan.TakeReady()) {
    // The upstream that decided them ended in this turn (or the run was just added).
    Instant now = clock_.Now();
    for (TaskId task : ready) {
      run.ready_at[Index(task)] = now;
      const dag::TaskSpec& spec = run.pipeline().task(task);
      if (spec.execution == dag::Execution::kApproval) {
        Wait(run, task);
        continue;
      }
      Ticket ticket{run.ctx.id, task, spec.pool, spec.slots, spec.priority, run.ctx.background};
      if (auto why = pools_.Reject(ticket)) {
        FinishTask(run, task, TaskState::kFailed, 0, std::nullopt, *why);
        continue;
      }
      pools_.Push(ticket);
      run.plan.SetState(task, TaskState::kQueued);
      newly_queued_.emplace_back(run.ctx.id, task);
    }
  }
}

void Scheduler::StartStartable() {
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  for (Ticket& ticket : pools_.TakeStartable()) {
    auto it = runs_.find(ticket.run);
    if (it == runs_.end() || it->second->plan.state(ticket.task) != TaskState::kQueued) {
      pools_.Release(ticket);
      continue;
    }
    Run& run = *it->second;
    size_t i = Index(ticket.task);
    int attempt = run.attempts[i] + 1;
    run.attempts[i] = attempt;
    run.plan.SetState(ticket.task, TaskState::kRunning);
    run.running[i] = true;
    run.holds[i] = true;
    run.tickets[i] = ticket;
    ++run.running_count;
    TaskExtra extra;
    extra.task = ticket.task;
    extra.launch = true;
    Record(
        TaskUpdate{run.ctx.id, run.pipeline().task(ticket.task).id, attempt, TaskState::kRunning,
                   clock_.Now(),
                   AttemptStart{LogPath(run, ticket.task, attempt).string(), options_.lease_owner},
                   std::nullopt, std::nullopt, ""},
        std::move(extra));
  }
}

std::filesystem::path Scheduler::LogPath(const Run& run, TaskId task, int attempt) const {
  // Every component matches the format's id patterns, so the path stays beneath logs_dir.
  return options_.logs_dir / run.pipeline().spec.name / ToString(run.ctx.id) /
         run.pipeline().task(task).id / (std::to_string(attempt) + ".log");
}

namespace {

std::string EnvName(std::string_view param) {
  std::string out = "KILN_PARAM_";
  for (char c : param) out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

void SetEnv(std::vector<std::pair<std::string, std::string>>& env, std::string name,
            std::string value) {
  for (auto& [k, v] : env) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  env.emplace_back(std::move(name), std::move(value));
}

// A kind's keys with every string rendered byte for byte.
dag::Value RenderValue(const dag::Value& value,
                       const std::function<std::string(const std::string&)>& render) {
  dag::Value out = value;
  if (out.type == dag::Value::Type::kString) {
    out.string = render(value.string);
  } else {
    for (dag::Value& item : out.items) item = RenderValue(item, render);
  }
  return out;
}

}  // namespace

// Renders templates; an error here is a task failure, not a crash.
Result<LaunchRequest> Scheduler::BuildLaunch(const Run& run, TaskId task, int attempt,
                                             const dag::TemplateValues* base,
                                             const std::string* candidates) const {
  const dag::TaskSpec& spec = run.pipeline().task(task);
  dag::TemplateValues values = base != nullptr ? *base : run.values;
  values["task.id"] = spec.id;
  values["task.attempt"] = std::to_string(attempt);
  LaunchRequest req;
  req.run = run.ctx.id;
  req.task = task;
  req.task_id = spec.id;
  req.attempt = attempt;
  req.timeout = spec.timeout;
  req.run_dir = run.dir;
  req.log_path = LogPath(run, task, attempt);
  req.cwd = run.pipeline().spec.file.parent_path();
  if (!spec.workdir.empty()) req.cwd /= spec.workdir;
  std::string error;
  auto render = [&](const std::string& text, dag::Quoting q) {
    auto r = dag::Render(text, values, q);
    if (!r.ok() && error.empty()) error = r.message();
    return r.ok() ? r.value() : std::string();
  };
  // A kind's report is collected too: what it decided reaches the daemon through the results.
  const bool kind = spec.kind != "shell";
  const bool cached = candidates != nullptr;
  FilesToCollect files;
  if (kind || !spec.inputs.empty() || !spec.outputs.empty() || !spec.metrics.empty()) {
    if (kind) files.report = (run.dir / ".kiln" / spec.id / (spec.kind + ".json")).string();
    for (const auto& path : spec.inputs) files.inputs.push_back(render(path, dag::Quoting::kNone));
    for (const auto& path : spec.outputs)
      files.outputs.push_back(render(path, dag::Quoting::kNone));
    if (!spec.metrics.empty()) files.metrics = render(spec.metrics, dag::Quoting::kNone);
    files.pipeline_dir = run.pipeline().spec.file.parent_path();
    files.run_dir = run.dir;
    if (cached) {
      files.cache_report = (run.dir / ".kiln" / spec.id / "cache.json").string();
      files.cache_store = options_.cache_dir;
    }
    if (!options_.collect_argv) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "this runner cannot collect inputs, outputs or metrics");
    }
    auto argv = options_.collect_argv(files);
    if (!argv.ok()) return argv.status();
    req.collect_argv = std::move(argv).value();
  }
  if (spec.kind != "shell") {
    // Its keys' paths are read from the pipeline's folder (a kind has no workdir).
    req.cwd = run.pipeline().spec.file.parent_path();
    dag::Value options = RenderValue(
        spec.options, [&](const std::string& text) { return render(text, dag::Quoting::kNone); });
    if (!spec.metrics.empty()) {
      // The metrics file is the task's, and a kind may read it too (a gate decides on it).
      dag::Value metrics;
      metrics.type = dag::Value::Type::kString;
      metrics.key = "metrics";
      metrics.string = render(spec.metrics, dag::Quoting::kNone);
      options.items.push_back(std::move(metrics));
    }
    if (!options_.kind_argv) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "no runner for task kind '" + spec.kind + "'");
    }
    auto argv = options_.kind_argv(spec.kind, options);
    if (!argv.ok()) return argv.status();
    req.argv = std::move(argv).value();
  } else if (spec.command) {
    req.argv = {"/bin/sh", "-c", render(*spec.command, dag::Quoting::kShell)};
  } else if (spec.argv) {
    for (const auto& a : *spec.argv) req.argv.push_back(render(a, dag::Quoting::kNone));
  }
  req.env = options_.base_env;
  req.user = RunIdentity(options_.task_user, options_.task_uids, Value(run.ctx.id));
  if (req.user.switch_user && options_.task_uids.count > 0) {
    // Ids repeat every `count` runs: two such runs active at once would share one.
    const int64_t count = options_.task_uids.count;
    for (RunId other : {RunId{Value(run.ctx.id) - count}, RunId{Value(run.ctx.id) + count}}) {
      if (runs_.count(other) != 0) {
        return Status::Error("run " + ToString(other) + " is active and would share user id " +
                             std::to_string(req.user.uid) + " with this run (executor.run_uids " +
                             "holds " + std::to_string(count) +
                             " ids); retry once it has ended, or widen the range");
      }
    }
  }
  if (req.user.switch_user) {
    SetEnv(req.env, "USER", req.user.name);
    SetEnv(req.env, "LOGNAME", req.user.name);
    SetEnv(req.env, "HOME", run.dir.string());
  }
  for (const auto& var : spec.env)
    SetEnv(req.env, var.name, render(var.value, dag::Quoting::kNone));
  SetEnv(req.env, "KILN_RUN_ID", ToString(run.ctx.id));
  SetEnv(req.env, "KILN_RUN_DIR", run.dir.string());
  SetEnv(req.env, "KILN_PIPELINE", run.pipeline().spec.name);
  SetEnv(req.env, "KILN_TASK_ID", spec.id);
  SetEnv(req.env, "KILN_ATTEMPT", std::to_string(attempt));
  SetEnv(req.env, "KILN_LOGICAL_DATE", FormatRfc3339(run.ctx.logical_date));
  SetEnv(req.env, "KILN_DATA_INTERVAL_START", FormatRfc3339(run.ctx.data_interval_start));
  SetEnv(req.env, "KILN_DATA_INTERVAL_END", FormatRfc3339(run.ctx.data_interval_end));
  if (!run.ctx.triggered_by.empty()) SetEnv(req.env, "KILN_TRIGGERED_BY", run.ctx.triggered_by);
  for (const auto& [param, value] : run.ctx.params)
    SetEnv(req.env, EnvName(param), dag::ToText(value));
  SetEnv(req.env, "KILN_IDEMPOTENCY_KEY", ToString(run.ctx.id) + ":" + spec.id);
  if (!error.empty()) return Status::Error(ErrorCode::kInvalidArgument, error);
  if (cached && options_.cache_argv) {
    auto argv = options_.cache_argv(CacheLaunch{files, *candidates, req.argv});
    if (!argv.ok()) return argv.status();
    req.argv = std::move(argv).value();
  }
  return req;
}

namespace {

// What every task's environment holds that differs between two runs of the same work.
bool VariesByRun(const std::string& name) {
  static const std::set<std::string> kVarying = {"KILN_RUN_ID",
                                                 "KILN_RUN_DIR",
                                                 "KILN_ATTEMPT",
                                                 "KILN_IDEMPOTENCY_KEY",
                                                 "KILN_TRIGGERED_BY",
                                                 "KILN_LOGICAL_DATE",
                                                 "HOME",
                                                 "USER",
                                                 "LOGNAME",
                                                 "KILN_DATA_INTERVAL_START",
                                                 "KILN_DATA_INTERVAL_END"};
  return kVarying.count(name) != 0;
}

}  // namespace

std::string Scheduler::CacheKeyOf(const Run& run, TaskId task) const {
  const dag::TaskSpec& spec = run.pipeline().task(task);
  // Templates that name the run's date or interval keep them: that work differs by date.
  dag::TemplateValues values = run.values;
  values["run.id"] = "<run.id>";
  values["run.dir"] = "<run.dir>";
  values["run.triggered_by"] = "<run.triggered_by>";
  auto req = BuildLaunch(run, task, 0, &values);
  if (!req.ok()) return "";
  Sha256 sha;
  auto add = [&](std::string_view text) {
    sha.Update(std::to_string(text.size()) + ":");
    sha.Update(text);
  };
  add("kiln-cache-1");
  add(run.pipeline().spec.name);
  add(spec.id);
  add(spec.kind);
  add("argv");
  for (const auto& a : req->argv) add(a);
  add("env");
  for (const auto& [name, value] : req->env) {
    if (VariesByRun(name)) continue;
    add(name);
    add(value);
  }
  values["task.id"] = spec.id;
  values["task.attempt"] = "0";
  for (const auto* list : {&spec.inputs, &spec.outputs}) {
    add(list == &spec.inputs ? "inputs" : "outputs");
    for (const auto& path : *list) {
      auto rendered = dag::Render(path, values, dag::Quoting::kNone);
      if (!rendered.ok()) return "";
      add(rendered.value());
    }
  }
  return sha.Hex();
}

void Scheduler::OnAttemptExit(RunId run_id, TaskId task, int attempt,
                              const AttemptOutcome& outcome) {
  // While leaving, ends are not recorded: the supervisor keeps them for the next daemon.
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;  // released: its supervisor keeps the end for the new owner
  Run& run = *it->second;
  size_t i = Index(task);
  if (!run.running[i] || run.attempts[i] != attempt) {
    runner_.Recorded(run_id, task, attempt);  // a stale report: nothing to keep
    return;
  }
  FreeSlot(run, i);
  if (outcome.started) {
    metrics_.task_duration.Observe(
        Seconds(std::max(outcome.ended_at - outcome.started_at, Duration(0))));
  }
  if (outcome.lost) ++metrics_.attempts_lost;

  const dag::TaskSpec& spec = run.pipeline().task(task);
  AttemptEnd end{outcome.exit_code, outcome.signal,     outcome.timed_out,       outcome.started_at,
                 outcome.cpu,       outcome.max_rss_kb, Describe(spec, outcome), outcome};
  TaskExtra ack;
  ack.task = task;
  ack.ack = true;
  // The database asked for the run's cancel and the supervisor stopped the attempt on its own
  // before this daemon saw the request: the run is cancelled, not retried.
  if (outcome.stop_cause == "cancel" && !run.cancelling) {
    run.plan.Finish(task, TaskState::kCancelled);
    end.reason = "cancelled";
    Record(TaskUpdate{run_id, spec.id, attempt, TaskState::kCancelled, clock_.Now(), std::nullopt,
                      end, std::nullopt, "run cancelled"},
           ack);
    CancelRun(run_id, "run cancelled");
    return;
  }
  if (auto mark = run.marks.extract(i); !mark.empty()) {
    // The operator's state and reason, not the outcome of the kill. Recorded even when the run
    // was cancelled meanwhile: the mark was decided first.
    Run::Mark m = std::move(mark.mapped());
    end.reason = m.reason;
    FinishTask(run, task, m.state, attempt, std::move(end), m.reason, ack);
    Pump(run);
  } else if (run.plan.state(task) == TaskState::kCancelled) {
    end.reason = "cancelled";
    Record(TaskUpdate{run_id, spec.id, attempt, TaskState::kCancelled, clock_.Now(), std::nullopt,
                      end, std::nullopt, "run cancelled"},
           ack);
  } else {
    TaskState state = Classify(spec, outcome);
    // Counted within this round: a retried run gives each re-run task its full budget again.
    const int round_attempt = attempt - run.round_base[i];
    if (state == TaskState::kFailed && !run.cancelling && ShouldRetry(spec.retry, round_attempt)) {
      Duration delay = RetryDelay(spec.retry, round_attempt);
      Instant retry_at = clock_.Now() + delay;
      run.plan.SetState(task, TaskState::kUpForRetry);
      std::string reason = end.reason + "; retrying in " + FormatDuration(delay);
      Record(TaskUpdate{run_id, spec.id, attempt, TaskState::kUpForRetry, clock_.Now(),
                        std::nullopt, end, retry_at, reason},
             ack);
      StartRetryTimer(run, task, delay);
    } else {
      std::string reason = end.reason;
      if (state == TaskState::kSuccess && spec.cache) end.cache_key = CacheKeyOf(run, task);
      FinishTask(run, task, state, attempt, std::move(end), reason, ack);
      Pump(run);
    }
  }
  StartStartable();
  MaybeFinishRun(run);
}

void Scheduler::StartRetryTimer(Run& run, TaskId task, Duration delay) {
  auto& timer = run.retry_timers[Index(task)];
  timer = std::make_unique<asio::steady_timer>(io_, delay);
  timer->async_wait(
      [this, alive = alive_, run_id = run.ctx.id, task](const boost::system::error_code& ec) {
        if (!ec && *alive) OnRetryDue(run_id, task);
      });
}

void Scheduler::OnRetryDue(RunId run_id, TaskId task) {
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  if (run.plan.state(task) != TaskState::kUpForRetry) return;
  run.retry_timers[Index(task)].reset();
  const dag::TaskSpec& spec = run.pipeline().task(task);
  pools_.Push(Ticket{run_id, task, spec.pool, spec.slots, spec.priority, run.ctx.background});
  run.plan.SetState(task, TaskState::kQueued);
  newly_queued_.emplace_back(run.ctx.id, task);
  StartStartable();
  ScheduleFlush();  // records it as queued if it has to wait for a slot
}

// An approval task became ready: it waits for an operator without a slot or a process, until
// its deadline (the task's timeout from now) if it has one.
void Scheduler::Wait(Run& run, TaskId task) {
  const dag::TaskSpec& spec = run.pipeline().task(task);
  const Instant now = clock_.Now();
  std::optional<Instant> deadline;
  if (spec.timeout > Duration(0)) deadline = now + spec.timeout;
  run.plan.SetState(task, TaskState::kWaiting);
  std::string reason = "waiting for approval";
  if (deadline) reason += "; rejected if nobody decides by " + FormatRfc3339(*deadline);
  TaskUpdate update{run.ctx.id,          spec.id,  run.attempts[Index(task)],
                    TaskState::kWaiting, now,      std::nullopt,
                    std::nullopt,        deadline, reason};
  update.waiting_for = "approval";
  TaskExtra extra;
  extra.task = task;
  Record(std::move(update), std::move(extra));
  if (deadline) StartDeadlineTimer(run, task, *deadline);
}

// Shares the task's timer with retries: a task either waits for a retry or for a decision.
void Scheduler::StartDeadlineTimer(Run& run, TaskId task, Instant deadline) {
  auto& timer = run.retry_timers[Index(task)];
  const Duration delay = std::max(deadline - clock_.Now(), Duration(0));
  timer = std::make_unique<asio::steady_timer>(io_, delay);
  timer->async_wait(
      [this, alive = alive_, run_id = run.ctx.id, task](const boost::system::error_code& ec) {
        if (!ec && *alive) OnDeadline(run_id, task);
      });
}

void Scheduler::OnDeadline(RunId run_id, TaskId task) {
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  if (run.plan.state(task) != TaskState::kWaiting) return;
  run.retry_timers[Index(task)].reset();
  const dag::TaskSpec& spec = run.pipeline().task(task);
  const std::string reason =
      "rejected: nobody decided within its timeout of " + FormatDuration(spec.timeout);
  TaskExtra extra;
  extra.detail = {{"decision", "rejected"}, {"by", "timeout"}};
  FinishTask(run, task, TaskState::kFailed, run.attempts[Index(task)], std::nullopt, reason,
             std::move(extra));
  Pump(run);
  StartStartable();
  MaybeFinishRun(run);
}

void Scheduler::Decide(RunId run_id, const std::string& task_name, bool approved,
                       std::string reason, std::vector<std::pair<std::string, std::string>> detail,
                       std::function<void(Status)> done) {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) {
    return Reply(std::move(done),
                 Status::Error(ErrorCode::kNotFound, "run " + ToString(run_id) + " is not active"));
  }
  Run& run = *it->second;
  const std::optional<TaskId> id = run.pipeline().dag.Find(task_name);
  if (!id) {
    return Reply(std::move(done),
                 Status::Error(ErrorCode::kNotFound,
                               "run " + ToString(run_id) + " has no task '" + task_name + "'"));
  }
  const TaskId task = *id;
  const dag::TaskSpec& spec = run.pipeline().task(task);
  if (spec.execution != dag::Execution::kApproval) {
    return Reply(std::move(done),
                 Status::Error(ErrorCode::kConflict, "task '" + spec.id +
                                                         "' is not an approval task (its kind is " +
                                                         spec.kind + ")"));
  }
  const TaskState current = run.plan.state(task);
  if (current != TaskState::kWaiting) {
    return Reply(std::move(done),
                 Status::Error(ErrorCode::kConflict, "task '" + spec.id +
                                                         "' is not waiting for approval (it is " +
                                                         std::string(dag::Name(current)) + ")"));
  }
  run.retry_timers[Index(task)].reset();
  TaskExtra extra;
  extra.detail = std::move(detail);
  if (done) {
    extra.committed = [done = std::move(done), name = spec.id](bool accepted) {
      done(accepted ? Status::Ok()
                    : Status::Error(ErrorCode::kConflict,
                                    "the decision on task '" + name +
                                        "' was not recorded: the run moved on meanwhile"));
    };
  }
  FinishTask(run, task, approved ? TaskState::kSuccess : TaskState::kFailed,
             run.attempts[Index(task)], std::nullopt, reason, std::move(extra));
  Pump(run);
  StartStartable();
  MaybeFinishRun(run);  // may erase the run
}

void Scheduler::FinishTask(Run& run, TaskId task, TaskState state, int attempt,
                           std::optional<AttemptEnd> end, const std::string& reason,
                           TaskExtra extra) {
  const dag::Pipeline& p = run.pipeline();
  auto changes = run.plan.Finish(task, state);
  Instant now = clock_.Now();
  extra.task = task;
  TaskUpdate update{run.ctx.id,   p.task(task).id, attempt,      state, now,
                    std::nullopt, std::move(end),  std::nullopt, reason};
  update.detail = std::move(extra.detail);
  Record(std::move(update), std::move(extra));
  RecordDecided(run, changes, now);
}

void Scheduler::RecordDecided(Run& run, const std::vector<Change>& changes, Instant now) {
  const dag::Pipeline& p = run.pipeline();
  for (const Change& c : changes) {
    std::string why =
        "upstream '" + p.task(c.cause).id + "' " + std::string(dag::Name(run.plan.state(c.cause)));
    TaskExtra extra;
    extra.task = c.task;
    Record(TaskUpdate{run.ctx.id, p.task(c.task).id, run.attempts[Index(c.task)], c.state, now,
                      std::nullopt, std::nullopt, std::nullopt, why},
           std::move(extra));
  }
}

void Scheduler::MarkTask(RunId run_id, TaskId task, TaskState state, std::string reason,
                         std::function<void(Status)> done) {
  if (state != TaskState::kSuccess && state != TaskState::kFailed) {
    Reply(std::move(done), Status::Error(ErrorCode::kInvalidArgument,
                                         "mark state '" + std::string(dag::Name(state)) +
                                             "' is not allowed: mark a task success or failed"));
    return;
  }
  auto it = runs_.find(run_id);
  if (it == runs_.end()) {
    Reply(std::move(done),
          Status::Error(ErrorCode::kNotFound, "run " + ToString(run_id) + " is not active"));
    return;
  }
  Run& run = *it->second;
  const size_t i = Index(task);
  if (i >= run.pipeline().dag.size()) {
    Reply(std::move(done),
          Status::Error(ErrorCode::kNotFound,
                        "run " + ToString(run_id) + " has no task #" + std::to_string(i)));
    return;
  }
  const std::string& name = run.pipeline().task(task).id;
  const TaskState current = run.plan.state(task);
  if (dag::IsTerminal(current)) {
    Reply(std::move(done), Status::Error(ErrorCode::kConflict,
                                         "task '" + name + "' has already ended (" +
                                             std::string(dag::Name(current)) +
                                             "); mark it once the run has ended, or retry it"));
    return;
  }
  if (run.running[i]) {
    auto [mark, inserted] =
        run.marks.try_emplace(static_cast<uint32_t>(i), Run::Mark{state, reason});
    if (!inserted) {
      Reply(std::move(done),
            Status::Error(ErrorCode::kConflict, "task '" + name + "' is already being marked " +
                                                    std::string(dag::Name(mark->second.state)) +
                                                    "; its attempt is being stopped"));
      return;
    }
    // Ends in OnAttemptExit; an attempt whose start is still being written is stopped when the
    // start is durable (OnCommitted).
    if (run.launched[i]) runner_.Kill(run_id, task);
    Reply(std::move(done), Status::Ok());
    return;
  }
  // Pending, queued, up_for_retry or waiting: nothing runs, so it ends now.
  if (current == TaskState::kQueued) pools_.Remove(run_id, task);
  run.retry_timers[i].reset();  // cancels a pending retry; OnRetryDue also checks the state
  FinishTask(run, task, state, run.attempts[i], std::nullopt, reason);
  Pump(run);
  StartStartable();
  Reply(std::move(done), Status::Ok());
  MaybeFinishRun(run);  // may erase the run
}

void Scheduler::Reply(std::function<void(Status)> done, Status status) {
  if (!done) return;
  asio::post(io_, [done = std::move(done), status = std::move(status)]() mutable {
    done(std::move(status));
  });
}

MetricsSnapshot Scheduler::Metrics() const {
  MetricsSnapshot snapshot = metrics_;
  for (const auto& [pool, size] : pools_.sizes()) {
    snapshot.pools[pool] =
        PoolFigures{size, pools_.in_use(pool), static_cast<size_t>(pools_.waiting(pool))};
  }
  snapshot.active_runs = runs_.size();
  snapshot.running_attempts = running_attempts_;
  return snapshot;
}

void Scheduler::MaybeFinishRun(Run& run) {
  if (!run.plan.done() || run.running_count > 0) return;
  RunId id = run.ctx.id;
  dag::RunState outcome = run.plan.Outcome();
  if (options_.task_user.switch_user) runner_.CloseRunFolder(run.dir);
  finishing_.insert(id);
  RunExtra extra;
  extra.note = [this, id, outcome](bool accepted) {
    finishing_.erase(id);
    if (accepted && observer_) observer_->OnRunFinished(id, outcome);
  };
  Record(RunUpdate{id, outcome, clock_.Now(), ""}, std::move(extra));
  runs_.erase(id);
}

void Scheduler::Record(TaskUpdate update) { Record(std::move(update), TaskExtra()); }

void Scheduler::Record(RunUpdate update) { Record(std::move(update), RunExtra()); }

void Scheduler::FinishTask(Run& run, TaskId task, TaskState state, int attempt,
                           std::optional<AttemptEnd> end, const std::string& reason) {
  FinishTask(run, task, state, attempt, std::move(end), reason, TaskExtra());
}

void Scheduler::Record(TaskUpdate update, TaskExtra extra) {
  Append(std::move(update), std::move(extra));
  ScheduleFlush();
}

// Adds to the pending batch without scheduling a flush (Flush itself uses it).
void Scheduler::Append(TaskUpdate update, TaskExtra extra) {
  if (dag::IsTerminal(update.state))
    ++metrics_.tasks_finished[std::string(dag::Name(update.state))];
  auto it = observer_ ? runs_.find(update.run) : runs_.end();
  if (it != runs_.end()) {
    auto pipeline = it->second->ctx.pipeline;
    auto task = pipeline->dag.Find(update.task_id);
    std::string results;
    if (update.state == TaskState::kSuccess && update.end && update.end->outcome) {
      results = update.end->outcome->results;
    }
    extra.note = [this, pipeline, task, run = update.run, state = update.state,
                  attempt = update.attempt, reason = update.reason, results = std::move(results)] {
      if (!observer_ || !task) return;
      observer_->OnTaskState(run, pipeline->task(*task), state, attempt, reason);
      if (!results.empty() && observer_) {
        observer_->OnTaskResults(run, pipeline->task(*task), attempt, results);
      }
    };
  }
  pending_.tasks.push_back(std::move(update));
  pending_task_extras_.push_back(std::move(extra));
}

void Scheduler::Record(RunUpdate update, RunExtra extra) {
  if (dag::IsTerminal(update.state)) ++metrics_.runs_finished[std::string(dag::Name(update.state))];
  pending_.runs.push_back(std::move(update));
  pending_run_extras_.push_back(std::move(extra));
  ScheduleFlush();
}

void Scheduler::ScheduleFlush() {
  if (flush_posted_ || commit_in_flight_) return;
  flush_posted_ = true;
  asio::post(io_, [this, alive = alive_] {
    if (*alive) Flush();
  });
}

void Scheduler::Flush() {
  flush_posted_ = false;
  // Tasks queued this turn that did not start at once: record that they wait.
  for (auto [run_id, task] : newly_queued_) {
    auto it = runs_.find(run_id);
    if (it == runs_.end() || it->second->plan.state(task) != TaskState::kQueued) continue;
    const Run& run = *it->second;
    TaskExtra extra;
    extra.task = task;
    Append(
        TaskUpdate{run_id, run.pipeline().task(task).id, run.attempts[Index(task)],
                   TaskState::kQueued, clock_.Now(), std::nullopt, std::nullopt, std::nullopt, ""},
        std::move(extra));
  }
  newly_queued_.clear();
  if (commit_in_flight_ || pending_.empty()) {
    MaybeShutdownDone();
    return;
  }
  commit_in_flight_ = true;
  Batch batch = std::move(pending_);
  pending_ = Batch{};
  auto task_extras = std::move(pending_task_extras_);
  pending_task_extras_.clear();
  auto run_extras = std::move(pending_run_extras_);
  pending_run_extras_.clear();
  // The batch is copied into the callback so that a failed commit can be retried unchanged.
  Batch copy = batch;
  Instant sent = clock_.Now();
  store_.Commit(std::move(copy), [this, alive = alive_, sent, batch = std::move(batch),
                                  task_extras = std::move(task_extras),
                                  run_extras = std::move(run_extras)](CommitResult result) mutable {
    if (!*alive) return;
    metrics_.commit_latency.Observe(Seconds(std::max(clock_.Now() - sent, Duration(0))));
    OnCommitted(std::move(result), std::move(batch), std::move(task_extras), std::move(run_extras));
  });
}

namespace {

// pending = front followed by pending.
template <typename T>
void PutInFront(std::vector<T> front, std::vector<T>& pending) {
  front.insert(front.end(), std::make_move_iterator(pending.begin()),
               std::make_move_iterator(pending.end()));
  pending = std::move(front);
}

}  // namespace

void Scheduler::OnCommitted(CommitResult result, Batch batch, std::vector<TaskExtra> task_extras,
                            std::vector<RunExtra> run_extras) {
  if (!result.status.ok()) {
    ++metrics_.commits_failed;
    if (!failing_since_) failing_since_ = clock_.Now();
    retry_delay_ = retry_delay_ == Duration(0)
                       ? options_.commit_retry_delay
                       : std::min(retry_delay_ * 2, options_.max_commit_retry_delay);
    log::Error("committing " + std::to_string(batch.tasks.size() + batch.runs.size()) +
               " state changes failed, retrying in " + FormatDuration(retry_delay_) + ": " +
               result.status.message());
    // Put the batch back in front of whatever accumulated meanwhile, keeping order. Nothing of
    // it was written, so nothing was launched or announced. What accumulates meanwhile is
    // bounded by the work under way: no start commits, so nothing new runs.
    PutInFront(std::move(batch.tasks), pending_.tasks);
    PutInFront(std::move(batch.runs), pending_.runs);
    PutInFront(std::move(task_extras), pending_task_extras_);
    PutInFront(std::move(run_extras), pending_run_extras_);
    auto timer = std::make_shared<asio::steady_timer>(io_, retry_delay_);
    timer->async_wait([this, alive = alive_, timer](const boost::system::error_code&) {
      if (!*alive) return;
      commit_in_flight_ = false;
      Flush();
    });
    return;
  }
  if (failing_since_) log::Info("committing state changes works again");
  failing_since_.reset();
  retry_delay_ = Duration(0);
  commit_in_flight_ = false;
  std::vector<bool> task_refused(batch.tasks.size(), false);
  std::vector<bool> task_rejected(batch.tasks.size(), false);
  std::vector<bool> run_refused(batch.runs.size(), false);
  std::vector<RunId> fenced_runs;
  for (const Refusal& r : result.refused) {
    ++metrics_.updates_refused;
    if (r.run) {
      if (r.index >= batch.runs.size()) continue;
      run_refused[r.index] = true;
      if (!r.rejected) fenced_runs.push_back(batch.runs[r.index].run);
      if (r.rejected) {
        log::Error("run " + ToString(batch.runs[r.index].run) + ": its state change to " +
                   std::string(dag::Name(batch.runs[r.index].state)) +
                   " could not be recorded: " + r.message);
      }
      continue;
    }
    if (r.index >= batch.tasks.size()) continue;
    task_refused[r.index] = true;
    task_rejected[r.index] = r.rejected;
    if (r.rejected) {
      OnRejected(batch.tasks[r.index], task_extras[r.index], r.message);
    } else {
      fenced_runs.push_back(batch.tasks[r.index].run);
    }
  }
  for (size_t k = 0; k < batch.runs.size(); ++k) {
    if (run_extras[k].note) run_extras[k].note(!run_refused[k]);
  }
  for (size_t k = 0; k < batch.tasks.size(); ++k) {
    const TaskUpdate& u = batch.tasks[k];
    TaskExtra& extra = task_extras[k];
    // A fenced end is in the database as the supervisor reported it (the row had moved on, or
    // the run is driven elsewhere): nothing to keep. A rejected one waits for its replacement.
    if (extra.ack && !task_rejected[k]) {
      runner_.Recorded(u.run, extra.task, u.attempt);
    }
    if (extra.committed) extra.committed(!task_refused[k]);
    if (task_refused[k]) continue;
    if (extra.note) extra.note();
    if (extra.launch) {
      if (auto it = runs_.find(u.run); it != runs_.end())
        Launch(*it->second, extra.task, u.attempt);
    }
  }
  if (observer_) {
    std::sort(fenced_runs.begin(), fenced_runs.end());
    fenced_runs.erase(std::unique(fenced_runs.begin(), fenced_runs.end()), fenced_runs.end());
    for (RunId id : fenced_runs) observer_->OnRunFenced(id);
  }
  if (!pending_.empty()) ScheduleFlush();
  MaybeShutdownDone();
}

// The start of `attempt` is durable: its process may start.
void Scheduler::Launch(Run& run, TaskId task, int attempt) {
  const dag::TaskSpec& spec = run.pipeline().task(task);
  if (spec.cache && !options_.cache_dir.empty() && options_.cache_argv) {
    std::string key = CacheKeyOf(run, task);
    if (!key.empty()) {
      // The earlier successes of its key are read first; the attempt starts when they are.
      ++lookups_in_flight_;
      store_.LookupCache(key, [io = &io_, this, alive = alive_, id = run.ctx.id, task,
                               attempt](Result<std::string> found) {
        asio::post(*io, [this, alive, id, task, attempt, found = std::move(found)] {
          if (!*alive) return;
          --lookups_in_flight_;
          if (!found.ok()) log::Warn("the result cache cannot be read: " + found.message());
          StartAttempt(id, task, attempt, found.ok() ? found.value() : std::string("[]"));
          MaybeShutdownDone();
        });
      });
      return;
    }
  }
  StartAttempt(run.ctx.id, task, attempt, std::nullopt);
}

void Scheduler::StartAttempt(RunId id, TaskId task, int attempt,
                             std::optional<std::string> candidates) {
  auto it = runs_.find(id);
  if (it == runs_.end()) return;  // released meanwhile: whoever drives it now decides
  Run& run = *it->second;
  const size_t i = Index(task);
  // Launched already: the run was released and added again while its cache lookup was in
  // flight, and the attempt was adopted from its row.
  if (!run.running[i] || run.attempts[i] != attempt || run.launched[i]) return;
  if (run.plan.state(task) == TaskState::kCancelled || run.marks.count(i) != 0) {
    // Cancelled or marked while its start was being written: it never ran.
    AttemptOutcome never;
    never.error = run.marks.count(i) != 0 ? "marked before start" : "cancelled before start";
    OnAttemptExit(id, task, attempt, never);
    return;
  }
  auto request = BuildLaunch(run, task, attempt, nullptr, candidates ? &*candidates : nullptr);
  if (!request.ok()) {
    AttemptOutcome never;
    never.error = request.message();
    OnAttemptExit(id, task, attempt, never);
    return;
  }
  run.launched[i] = true;
  ++running_attempts_;
  if (attempt == run.round_base[i] + 1) {
    metrics_.scheduling_lag.Observe(Seconds(std::max(clock_.Now() - run.ready_at[i], Duration(0))));
  }
  runner_.Start(std::move(request).value(),
                [this, alive = alive_, id, task, attempt](AttemptOutcome outcome) {
                  if (*alive) OnAttemptExit(id, task, attempt, outcome);
                });
}

// The store could not write `update` (its values), while the rest of its batch committed.
void Scheduler::OnRejected(const TaskUpdate& update, const TaskExtra& extra,
                           const std::string& message) {
  log::Error("run " + ToString(update.run) + " task '" + update.task_id + "' attempt " +
             std::to_string(update.attempt) + ": its change to " +
             std::string(dag::Name(update.state)) + " could not be recorded: " + message);
  auto it = runs_.find(update.run);
  if (it == runs_.end() || extra.replacement) return;
  if (update.start) {
    // Not started: the task fails without an attempt (the row keeps the previous attempt).
    Run& run = *it->second;
    const size_t i = Index(extra.task);
    const std::string reason = "its state could not be recorded: " + message;
    if (!run.running[i] || run.attempts[i] != update.attempt) return;
    FreeSlot(run, i);
    run.attempts[i] = update.attempt - 1;
    FinishTask(run, extra.task, TaskState::kFailed, run.attempts[i], std::nullopt, reason);
    Pump(run);
    StartStartable();
    MaybeFinishRun(run);
    return;
  }
  if (!update.end) return;
  // The attempt did end, and the run has moved on from that end in memory (its downstream may
  // have started in the same commit): the end is recorded again with the state decided and
  // nothing but safe values, the error in its reason, so that the rows and the scheduler agree.
  AttemptEnd end;
  end.started_at = update.end->started_at;
  end.reason = std::string(dag::Name(update.state)) +
               " (its details could not be recorded: " + message + ")";
  TaskExtra replacement;
  replacement.task = extra.task;
  replacement.ack = extra.ack;
  replacement.replacement = true;
  Record(TaskUpdate{update.run, update.task_id, update.attempt, update.state, update.at,
                    std::nullopt, end, update.retry_at, end.reason},
         std::move(replacement));
}

}  // namespace kiln::scheduler
