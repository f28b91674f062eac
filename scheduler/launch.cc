// Scheduler: building an attempt's launch (templates, environment, its files to collect, a
// kind's program, the cache wrapper), the cache key, and starting attempts once their start is
// durable (after a cache lookup for a cached task).
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <set>

#include "common/log.h"
#include "common/sha256.h"
#include "dag/template.h"
#include "scheduler/scheduler.h"
#include "scheduler/scheduler_run.h"

namespace kiln::scheduler {

namespace asio = boost::asio;
using dag::TaskState;

std::filesystem::path Scheduler::LogPath(const Run& run, TaskId task, int attempt) const {
  // Every component matches the format's id patterns (task ids hold no '.'), so the path stays
  // beneath logs_dir. One folder per run, not per task: a folder per task cost a directory inode
  // per task on the hot path (ext4 allocates it in a group of its own, then the log's inode there).
  return options_.logs_dir / run.pipeline().spec.name / ToString(run.ctx.id) /
         (run.name(task) + "." + std::to_string(attempt) + ".log");
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

// The secrets a shell task's argv and env name ({{ secrets.NAME }}), without the prefix.
std::set<std::string> SecretRefsOf(const dag::TaskSpec& spec) {
  std::set<std::string> names;
  auto scan = [&](const std::string& text) {
    for (std::string_view name : dag::SecretNamesIn(text)) names.emplace(name);
  };
  if (spec.argv) {
    for (const auto& a : *spec.argv) scan(a);
  }
  for (const auto& var : spec.env) scan(var.value);
  return names;
}

}  // namespace

// Renders templates; an error here is a task failure, not a crash.
Result<LaunchRequest> Scheduler::BuildLaunch(const Run& run, TaskId task, int attempt,
                                             const dag::TemplateValues* base,
                                             const std::string* candidates) const {
  const dag::TaskSpec& spec = run.spec(task);
  dag::TemplateValues values = base != nullptr ? *base : run.values;
  const std::string name = run.name(task);
  const Run::Instance* instance = run.instance(task);
  if (instance != nullptr) {
    for (auto& [key, value] : dag::ItemValues(instance->item, instance->index)) {
      values[key] = std::move(value);
    }
  }
  values["task.id"] = name;
  values["task.attempt"] = std::to_string(attempt);
  LaunchRequest req;
  // Read now, so that a rotated secret reaches the next attempt; the cache key's caller gives
  // placeholders instead.
  for (const std::string& name : SecretRefsOf(spec)) {
    const std::string ref = dag::SecretRef(name);
    if (values.count(ref) != 0) continue;
    if (!options_.secret) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "secret '" + name + "': this runner reads no secrets");
    }
    auto value = options_.secret(name);
    if (!value.ok()) return Status::Error(ErrorCode::kInvalidArgument, value.message());
    req.mask.push_back(value.value());
    values[ref] = std::move(value).value();
  }
  req.run = run.ctx.id;
  req.task = task;
  req.task_id = name;
  req.pool = spec.pool;
  req.priority = spec.priority;
  req.slots = spec.slots;
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
    if (kind) files.report = (run.dir / ".kiln" / name / (spec.kind + ".json")).string();
    for (const auto& path : spec.inputs) files.inputs.push_back(render(path, dag::Quoting::kNone));
    for (const auto& path : spec.outputs)
      files.outputs.push_back(render(path, dag::Quoting::kNone));
    if (!spec.metrics.empty()) files.metrics = render(spec.metrics, dag::Quoting::kNone);
    files.pipeline_dir = run.pipeline().spec.file.parent_path();
    files.run_dir = run.dir;
    if (cached) {
      files.cache_report = (run.dir / ".kiln" / name / "cache.json").string();
      files.cache_store = options_.cache_dir;
    }
    if (!options_.collect_argv) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "this runner cannot collect inputs, outputs or metrics");
    }
    auto argv = options_.collect_argv(files);
    if (!argv.ok()) return argv.status();
    req.collect_argv = std::move(argv).value();
    // A kind's "no" (its skip codes) is a decision with a report, kept like a success's.
    if (kind) req.collect_also_on = spec.skip_exit_codes;
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
  SetEnv(req.env, "KILN_TASK_ID", name);
  if (instance != nullptr) {
    SetEnv(req.env, "KILN_ITEM", dag::ItemJson(instance->item));
    SetEnv(req.env, "KILN_ITEM_INDEX", std::to_string(instance->index));
  }
  SetEnv(req.env, "KILN_ATTEMPT", std::to_string(attempt));
  SetEnv(req.env, "KILN_LOGICAL_DATE", FormatRfc3339(run.ctx.logical_date));
  SetEnv(req.env, "KILN_DATA_INTERVAL_START", FormatRfc3339(run.ctx.data_interval_start));
  SetEnv(req.env, "KILN_DATA_INTERVAL_END", FormatRfc3339(run.ctx.data_interval_end));
  if (!run.ctx.triggered_by.empty()) SetEnv(req.env, "KILN_TRIGGERED_BY", run.ctx.triggered_by);
  for (const auto& [param, value] : run.ctx.params)
    SetEnv(req.env, EnvName(param), dag::ToText(value));
  SetEnv(req.env, "KILN_IDEMPOTENCY_KEY", ToString(run.ctx.id) + ":" + name);
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
  const dag::TaskSpec& spec = run.spec(task);
  // Templates that name the run's date or interval keep them: that work differs by date.
  dag::TemplateValues values = run.values;
  values["run.id"] = "<run.id>";
  values["run.dir"] = "<run.dir>";
  values["run.triggered_by"] = "<run.triggered_by>";
  // A secret's value is not hashed (nor needed): a rotated password leaves the work the same.
  for (const std::string& name : SecretRefsOf(spec)) {
    values[dag::SecretRef(name)] = "<" + dag::SecretRef(name) + ">";
  }
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

bool Scheduler::LooksUpCache(const Run& run, TaskId task) const {
  return run.spec(task).cache && !options_.cache_dir.empty() && options_.cache_argv;
}

void Scheduler::Launch(Run& run, TaskId task, int attempt) {
  if (LooksUpCache(run, task)) {
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
  request->start_recorded = run.unrecorded[i] != attempt;
  Launched(run, i, attempt);
  runner_.Start(std::move(request).value(), OnExitOf(id, task, attempt));
}

bool Scheduler::HandOut(Run& run, TaskId task, int attempt, AttemptStart& start) {
  auto request = BuildLaunch(run, task, attempt);
  if (!request.ok()) return false;  // launched after its commit, which reports why
  // A worker claims it only once its commit is over: it runs a recorded start.
  request->start_recorded = true;
  Launched(run, Index(task), attempt);
  start.handout = runner_.HandOut(std::move(request).value(), OnExitOf(run.ctx.id, task, attempt));
  return true;
}

void Scheduler::Launched(Run& run, size_t i, int attempt) {
  run.launched[i] = true;
  ++running_attempts_;
  if (attempt == run.round_base[i] + 1) {
    metrics_.scheduling_lag.Observe(Seconds(std::max(clock_.Now() - run.ready_at[i], Duration(0))));
  }
}

std::function<void(AttemptOutcome)> Scheduler::OnExitOf(RunId id, TaskId task, int attempt) {
  return [this, alive = alive_, id, task, attempt](AttemptOutcome outcome) {
    if (*alive) OnAttemptExit(id, task, attempt, outcome);
  };
}

}  // namespace kiln::scheduler
