#include "daemon/recovery.h"

#include <map>

#include "config/pipeline_loader.h"
#include "plugins/registry.h"

namespace kiln::daemon {

using scheduler::RunRecord;

bool SameTasks(const RunRecord& run, const dag::Pipeline& pipeline) {
  if (run.tasks.size() != pipeline.spec.tasks.size()) return false;
  for (size_t i = 0; i < run.tasks.size(); ++i) {
    if (run.tasks[i].task_id != pipeline.spec.tasks[i].id) return false;
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

}  // namespace kiln::daemon
