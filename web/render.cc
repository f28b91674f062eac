#include "web/render.h"

#include <variant>

namespace kiln::web {

namespace {

template <typename T>
json OrNull(const std::optional<T>& value) {
  return value ? json(*value) : json(nullptr);
}

json TaskSpecJson(const dag::TaskSpec& task) {
  json out = {{"id", task.id},
              {"needs", task.needs},
              {"trigger_rule", dag::Name(task.trigger_rule)},
              {"pool", task.pool},
              {"slots", task.slots},
              {"priority", task.priority},
              {"retries", task.retry.retries},
              {"timeout_ms", task.timeout.count() > 0 ? json(task.timeout.count()) : json()}};
  if (task.command) out["command"] = *task.command;
  if (task.argv) out["argv"] = *task.argv;
  return out;
}

void AddDetail(const scheduler::PipelineInfo& info, json& out) {
  json params = json::array(), tasks = json::array();
  if (info.pipeline) {
    for (const auto& p : info.pipeline->spec.params) {
      params.push_back({{"name", p.name},
                        {"type", dag::TypeName(p.default_value)},
                        {"default", RenderParamValue(p.default_value)}});
    }
    for (const auto& t : info.pipeline->spec.tasks) tasks.push_back(TaskSpecJson(t));
  }
  out["params"] = std::move(params);
  out["tasks"] = std::move(tasks);
  out["source"] = info.pipeline ? json(info.pipeline->spec.source) : json();
}

}  // namespace

json RenderTime(const std::optional<Instant>& t) {
  return t ? json(FormatRfc3339Millis(*t)) : json(nullptr);
}

json RenderParamValue(const dag::ParamValue& value) {
  return std::visit([](const auto& v) { return json(v); }, value);
}

json RenderTask(const scheduler::TaskInstanceRecord& task) {
  const bool waiting = task.state == dag::TaskState::kWaiting;
  json out = {{"id", task.task_id},
              {"state", dag::Name(task.state)},
              {"attempt", task.attempt},
              {"pool", task.pool},
              {"priority", task.priority},
              {"exit_code", OrNull(task.exit_code)},
              {"signal", OrNull(task.signal)},
              {"started_at", RenderTime(task.started_at)},
              {"ended_at", RenderTime(task.ended_at)},
              {"retry_at", RenderTime(waiting ? std::nullopt : task.retry_at)},
              {"waiting_for", waiting ? json(task.waiting_for) : json()},
              {"deadline", RenderTime(waiting ? task.retry_at : std::nullopt)},
              {"duration_ms", task.duration ? json(task.duration->count()) : json()}};
  if (!task.parent.empty()) {
    // An instance of a mapped task (for_each): its task, place in the list and item.
    out["parent"] = task.parent;
    out["map_index"] = task.map_index;
    out["item"] = json::parse(task.item, nullptr, /*allow_exceptions=*/false);
  }
  return out;
}

json RenderRun(const scheduler::RunRecord& run, bool with_tasks) {
  json params = json::object();
  for (const auto& [name, value] : run.params) params[name] = RenderParamValue(value);
  json out = {{"id", Value(run.id)},
              {"pipeline", run.pipeline},
              {"version", run.version_hash},
              {"state", dag::Name(run.state)},
              {"trigger", run.trigger},
              {"created_by", run.created_by},
              {"note", run.note},
              {"idempotency_key", OrNull(run.idempotency_key)},
              {"triggered_by", run.triggered_by ? json(Value(*run.triggered_by)) : json()},
              {"backfill", OrNull(run.backfill)},
              {"params", std::move(params)},
              {"logical_date", RenderTime(run.logical_date)},
              {"data_interval_start", RenderTime(run.data_interval_start)},
              {"data_interval_end", RenderTime(run.data_interval_end)},
              {"created_at", RenderTime(run.created_at)},
              {"started_at", RenderTime(run.started_at)},
              {"ended_at", RenderTime(run.ended_at)}};
  if (with_tasks) {
    json tasks = json::array();
    for (const auto& t : run.tasks) tasks.push_back(RenderTask(t));
    out["tasks"] = std::move(tasks);
  }
  if (run.last_event) out["event_id"] = *run.last_event;
  return out;
}

json RenderPipeline(const scheduler::PipelineInfo& info, bool detail) {
  const dag::PipelineSpec* spec = info.pipeline ? &info.pipeline->spec : nullptr;
  json last_run = nullptr;
  if (info.last_run) {
    last_run = {{"id", Value(*info.last_run)},
                {"state", info.last_run_state ? json(dag::Name(*info.last_run_state)) : json()}};
  }
  json next_fires = json::array();
  for (Instant at : info.next_fires) next_fires.push_back(RenderTime(at));
  json recent = json::array();
  for (const auto& [id, state] : info.recent_runs) {
    recent.push_back({{"id", Value(id)}, {"state", dag::Name(state)}});
  }
  json out = {
      {"name", info.name},
      {"description", spec ? spec->description : ""},
      {"tags", spec ? json(spec->tags) : json::array()},
      {"schedule", spec && !spec->schedule.empty() ? json(spec->schedule) : json()},
      {"schedule_text", info.pipeline && info.pipeline->schedule
                            ? json(dag::DescribeSchedule(info.pipeline->schedule->cron))
                            : json()},
      {"timezone", spec ? json(spec->timezone) : json()},
      {"paused", info.paused},
      {"file", info.file},
      {"version", spec ? json(spec->content_hash) : json()},
      {"load_error", OrNull(info.load_error)},
      {"last_run", std::move(last_run)},
      {"recent_runs", std::move(recent)},
      {"catchup", spec ? json(spec->catchup) : json()},
      {"overlap", spec ? json(spec->overlap) : json()},
      {"max_active_runs", spec ? json(spec->max_active_runs) : json()},
      {"next_fire", info.next_fires.empty() ? json() : RenderTime(info.next_fires.front())},
      {"next_fires", std::move(next_fires)},
      {"last_fire", RenderTime(info.last_fire)},
      {"fires_skipped", info.fires_skipped},
  };
  if (detail) AddDetail(info, out);
  return out;
}

json RenderBackfill(const scheduler::BackfillRecord& b) {
  return {{"id", b.id},
          {"pipeline", b.pipeline},
          {"from", RenderTime(b.from)},
          {"to", RenderTime(b.to)},
          {"max_active_runs", b.max_active_runs},
          {"state", b.state()},
          {"total", b.total},
          {"done", b.done()},
          {"runs",
           {{"queued", b.queued},
            {"running", b.running},
            {"success", b.succeeded},
            {"failed", b.failed},
            {"cancelled", b.cancelled}}},
          {"created_by", b.created_by},
          {"created_at", RenderTime(b.created_at)}};
}

json RenderAttempt(const scheduler::AttemptRecord& a) {
  json results;  // null: nothing declared, or not a success
  if (!a.results.empty()) {
    results = json::parse(a.results, nullptr, /*allow_exceptions=*/false);
    if (results.is_discarded()) results = nullptr;
  }
  return {{"attempt", a.attempt},
          {"state", a.state},
          {"started_at", RenderTime(a.started_at)},
          {"ended_at", RenderTime(a.ended_at)},
          {"exit_code", OrNull(a.exit_code)},
          {"signal", OrNull(a.signal)},
          {"timed_out", a.timed_out},
          {"cpu_ms", a.cpu ? json(a.cpu->count()) : json()},
          {"max_rss_kb", OrNull(a.max_rss_kb)},
          {"reason", a.reason},
          {"lease_owner", a.lease_owner},
          {"worker", a.worker.empty() ? json() : json(a.worker)},
          {"results", std::move(results)}};
}

json RenderEvent(const scheduler::EventRecord& e) {
  json detail = e.detail.empty() ? json::object() : json::parse(e.detail, nullptr, false);
  if (detail.is_discarded()) detail = e.detail;
  return {{"id", e.id},
          {"at", RenderTime(e.at)},
          {"kind", e.kind},
          {"pipeline", e.pipeline.empty() ? json() : json(e.pipeline)},
          {"run", e.run ? json(Value(*e.run)) : json()},
          {"task", OrNull(e.task_id)},
          {"attempt", OrNull(e.attempt)},
          {"from", OrNull(e.from_state)},
          {"to", OrNull(e.to_state)},
          {"actor", e.actor},
          {"detail", std::move(detail)}};
}

}  // namespace kiln::web
