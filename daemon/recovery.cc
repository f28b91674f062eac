#include "daemon/recovery.h"

#include <algorithm>
#include <map>

#include "common/log.h"
#include "config/items.h"
#include "config/pipeline_loader.h"
#include "plugins/registry.h"
#include "scheduler/run_plan.h"

namespace kiln::daemon {

using scheduler::RunRecord;

bool SameTasks(const RunRecord& run, const dag::Pipeline& pipeline) {
  const size_t n = pipeline.spec.tasks.size();
  if (run.tasks.size() < n) return false;
  for (size_t i = 0; i < run.tasks.size(); ++i) {
    const scheduler::TaskInstanceRecord& t = run.tasks[i];
    // The pipeline's tasks first, then instances of its mapped tasks.
    if (i < n ? (!t.parent.empty() || t.task_id != pipeline.spec.tasks[i].id)
              : (t.parent.empty() || !pipeline.dag.Find(t.parent))) {
      return false;
    }
  }
  return true;
}

Result<dag::PipelinePtr> PipelineForRun(const RunRecord& run, const dag::PipelinePtr& current,
                                        const std::function<Result<std::string>()>& source) {
  const std::string subject = "run " + ToString(run.id) + " of '" + run.pipeline + "'";
  if (current && current->spec.content_hash == run.version_hash) return current;
  auto text = source();
  if (text.ok()) {
    const std::filesystem::path file =
        current ? current->spec.file
                : std::filesystem::path(run.pipeline + "@" + run.version_hash.substr(0, 12));
    config::LoadResult loaded = config::ParsePipeline(*text, file, plugins::Builtins());
    if (loaded.pipeline && SameTasks(run, *loaded.pipeline)) return loaded.pipeline;
  }
  if (current && SameTasks(run, *current)) return current;
  return Status::Error(ErrorCode::kConflict,
                       subject + " cannot go on: its version " + run.version_hash.substr(0, 12) +
                           (text.ok() ? " does not load" : " is not kept") +
                           (current ? " and the tasks of the loaded version differ"
                                    : " and its pipeline is not loaded"));
}

Result<scheduler::RunContext> ResumeContext(const store::ActiveRun& active,
                                            dag::PipelinePtr pipeline) {
  const RunRecord& run = active.run;
  if (!pipeline || !SameTasks(run, *pipeline)) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "run " + ToString(run.id) + " has other tasks than this pipeline");
  }
  scheduler::RunContext ctx;
  ctx.id = run.id;
  ctx.pipeline = std::move(pipeline);
  ctx.params = run.params;
  ctx.logical_date = run.logical_date;
  ctx.data_interval_start = run.data_interval_start.value_or(run.logical_date);
  ctx.data_interval_end = run.data_interval_end.value_or(run.logical_date);
  if (run.triggered_by) ctx.triggered_by = ToString(*run.triggered_by);
  ctx.background = run.backfill.has_value();
  ctx.resumed = run.state == dag::RunState::kRunning;
  ctx.cancel_reason = active.cancel_reason;
  std::map<std::pair<std::string, int>, const store::OpenAttempt*> open;
  for (const store::OpenAttempt& a : active.open) open[{a.task_id, a.attempt}] = &a;
  const size_t n = run.tasks.size();
  const size_t tasks = ctx.pipeline->spec.tasks.size();
  // Instances: their items read back from the rows' JSON, as kiln wrote it (a run may hold more
  // than one list's worth, so each is read on its own).
  for (size_t i = tasks; i < n; ++i) {
    const scheduler::TaskInstanceRecord& t = run.tasks[i];
    auto parsed = config::ParseItems("[" + t.item + "]");
    dag::Value item;
    if (parsed.ok() && parsed->size() == 1) {
      item = std::move((*parsed)[0]);
    } else {
      // Not what kiln writes: the instance sees the text as it is.
      log::Warn("run " + ToString(run.id) + " instance '" + t.task_id +
                "': its item cannot be read back; it is passed as the text " + t.item);
      item.type = dag::Value::Type::kString;
      item.string = t.item;
    }
    ctx.instances.push_back(scheduler::RunContext::Instance{
        *ctx.pipeline->dag.Find(t.parent), static_cast<uint32_t>(std::max(t.map_index, 0)),
        std::move(item)});
  }
  ctx.supervisors.assign(n, "");
  ctx.recorded.assign(n, std::nullopt);
  ctx.retry_at.assign(n, std::nullopt);
  for (size_t i = 0; i < n; ++i) {
    const scheduler::TaskInstanceRecord& t = run.tasks[i];
    ctx.initial_states.push_back(t.state);
    ctx.initial_attempts.push_back(t.attempt);
    ctx.round_base.push_back(std::min(t.round_base, t.attempt));
    ctx.retry_at[i] = t.retry_at;
    if (t.state != dag::TaskState::kRunning) continue;
    if (auto it = open.find({t.task_id, t.attempt}); it != open.end()) {
      ctx.supervisors[i] = it->second->supervisor;
      ctx.recorded[i] = it->second->outcome;
    }
  }
  return ctx;
}

Result<RetryChoice> ChooseRetry(const RunRecord& run, const dag::Pipeline& p,
                                const std::optional<std::string>& from) {
  const size_t n = p.spec.tasks.size();
  std::vector<dag::TaskState> states;
  for (size_t i = 0; i < n; ++i) states.push_back(run.tasks[i].state);
  // Instances by parent, in list order.
  std::map<uint32_t, std::vector<const scheduler::TaskInstanceRecord*>> instances;
  for (size_t i = n; i < run.tasks.size(); ++i) {
    instances[Index(*p.dag.Find(run.tasks[i].parent))].push_back(&run.tasks[i]);
  }
  RetryChoice choice;
  std::optional<TaskId> from_task;
  const scheduler::TaskInstanceRecord* from_instance = nullptr;
  if (from) {
    from_task = p.dag.Find(*from);
    for (size_t i = n; i < run.tasks.size() && !from_task; ++i) {
      if (run.tasks[i].task_id == *from) from_instance = &run.tasks[i];
    }
    if (!from_task && from_instance == nullptr) {
      return Status::Error(ErrorCode::kNotFound,
                           "run " + ToString(run.id) + " has no task '" + *from + "'");
    }
  }
  std::vector<TaskId> chosen;
  if (from_instance != nullptr) {
    const TaskId parent = *p.dag.Find(from_instance->parent);
    choice.pending.push_back(from_instance->task_id);
    choice.reopen.push_back(from_instance->parent);
    for (TaskId t : scheduler::TasksToRetry(p, states, parent)) {
      if (t != parent) chosen.push_back(t);
    }
  } else {
    chosen = scheduler::TasksToRetry(p, states, from_task);
  }
  std::vector<bool> is_chosen(n, false);
  for (TaskId t : chosen) is_chosen[Index(t)] = true;
  // An instance's task ends anew: what is downstream of it runs from scratch.
  if (from_instance != nullptr) is_chosen[Index(*p.dag.Find(from_instance->parent))] = true;
  for (TaskId t : chosen) {
    const std::string& id = p.task(t).id;
    auto it = instances.find(Index(t));
    if (it == instances.end()) {
      choice.pending.push_back(id);
      continue;
    }
    const auto ups = p.dag.upstream(t);
    const bool upstream_reruns =
        std::any_of(ups.begin(), ups.end(), [&](TaskId u) { return is_chosen[Index(u)]; });
    if (from_task == t || upstream_reruns) {
      choice.pending.push_back(id);
      choice.drop.push_back(id);
      continue;
    }
    choice.reopen.push_back(id);
    for (const scheduler::TaskInstanceRecord* instance : it->second) {
      if (instance->state != dag::TaskState::kSuccess) choice.pending.push_back(instance->task_id);
    }
  }
  return choice;
}

}  // namespace kiln::daemon
