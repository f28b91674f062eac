// kind = "drift" with on_drift = "trigger": a successful drift attempt whose report names drifted
// columns asks for one run of the pipeline its task names, at most one per cooldown
// (docs/pipelines.md). The ask is answered in one transaction with an event on the asking run
// (store::NewRun::asked_by); asks a crash left unanswered are answered at the next start.
#include <nlohmann/json.hpp>

#include "common/crash.h"
#include "common/log.h"
#include "daemon/service.h"

namespace kiln::daemon {

namespace {

using json = nlohmann::json;

// How far back an unanswered ask is still answered after a restart.
constexpr Duration kAskWindow = std::chrono::hours(24 * 7);

std::string Number(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", value);
  return buf;
}

}  // namespace

std::optional<DriftAsk> ReadDriftAsk(const dag::TaskSpec& task, const std::string& results);

std::optional<DriftAsk> DriftAskOf(const dag::TaskSpec& task, const std::string& results) {
  if (task.kind != "drift") return std::nullopt;
  // The report is what a task's process wrote: any shape is possible, none may throw.
  try {
    return ReadDriftAsk(task, results);
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::optional<DriftAsk> ReadDriftAsk(const dag::TaskSpec& task, const std::string& results) {
  const dag::Value* on_drift = task.options.Find("on_drift");
  const dag::Value* target = task.options.Find("trigger");
  if (on_drift == nullptr || on_drift->string != "trigger" || target == nullptr ||
      target->type != dag::Value::Type::kString) {
    return std::nullopt;
  }
  json r = json::parse(results, nullptr, /*allow_exceptions=*/false);
  if (!r.is_object()) return std::nullopt;
  const json report = r.value("report", json::object());
  if (!report.is_object()) return std::nullopt;
  const json drifted = report.value("drifted", json::array());
  if (!drifted.is_array() || drifted.empty()) return std::nullopt;
  DriftAsk ask;
  // The pipeline and the cooldown come from the pipeline file, never from what a task wrote.
  ask.pipeline = target->string;
  if (const dag::Value* c = task.options.Find("cooldown"); c != nullptr) {
    if (auto d = ParseDuration(c->string); d.ok()) ask.cooldown = *d;
  }
  const std::string method = report.value("method", std::string("psi"));
  std::string columns;
  for (const json& c : report.value("columns", json::array())) {
    if (!c.is_object() || !c.value("drifted", false)) continue;
    const json stat = c.value("statistic", json());
    columns += (columns.empty() ? "" : ", ") + c.value("column", std::string("?")) + " " + method +
               " " + (stat.is_number() ? Number(stat.get<double>()) : "?");
  }
  ask.note = "drift in task '" + task.id + "': " + columns;
  return ask;
}

void DaemonService::OnTaskResults(RunId run, const dag::TaskSpec& task, const std::string& /*name*/,
                                  int /*attempt*/, const std::string& results) {
  if (auto ask = DriftAskOf(task, results)) {
    timer_.Post([this, run, task = task.id, ask = *ask] { AnswerDriftAsk(run, task, ask); });
  } else if (auto reg = RegistrationOf(task, results)) {
    timer_.Post([this, run, task = task.id, reg = *reg] { RegisterModel(run, task, reg); });
  }
}

void DaemonService::AnswerDriftAsk(RunId run, const std::string& task, const DriftAsk& ask) {
  CrashPoint("drift.ask");
  scheduler::TriggerRequest request;
  request.pipeline = ask.pipeline;
  request.actor = "drift";
  request.trigger = "drift";
  request.triggered_by = run;
  request.asking_task = task;
  request.cooldown = ask.cooldown;
  request.note = ask.note + " (run " + ToString(run) + ")";
  // Once per drift task of a run, whatever happens later (a retry, a restart).
  request.idempotency_key = "drift:" + ToString(run) + ":" + task;
  auto created = Trigger(request);
  const std::string who = "drift task '" + task + "' of run " + ToString(run);
  if (!created.ok()) {
    log::Error(who + ": cannot start a run of '" + ask.pipeline + "': " + created.message());
    json detail = {{"task", task}, {"pipeline", ask.pipeline}, {"error", created.message()}};
    if (Status s = store_.RecordEvent("drift_trigger_failed", run, "drift", detail.dump());
        !s.ok()) {
      log::Error(s.message());
    }
  } else if (created->cooled) {
    log::Info(who + ": no run of '" + ask.pipeline + "': run " + ToString(created->id) +
              " was triggered by drift less than " + FormatDuration(ask.cooldown) + " ago");
  } else if (!created->existing) {
    log::Info(ask.pipeline + ": run " + ToString(created->id) + " started by " + who);
  }
}

void DaemonService::AnswerPendingDriftAsks() {
  auto pending = store_.PendingDriftAsks(kAskWindow, options_.owner);
  if (!pending.ok()) {
    log::Error("answering drift triggers left by a restart: " + pending.message());
    return;
  }
  for (const store::PendingAsk& p : *pending) {
    dag::PipelinePtr pipeline;
    {
      std::lock_guard lock(mu_);
      if (auto it = pipelines_.find(p.pipeline); it != pipelines_.end()) {
        pipeline = it->second.entry.pipeline;
      }
    }
    auto index = pipeline ? pipeline->dag.Find(p.task_id) : std::nullopt;
    if (!index) continue;  // the pipeline or its task is gone: nothing says what to run
    if (auto ask = DriftAskOf(pipeline->task(*index), p.results)) {
      AnswerDriftAsk(p.run, p.task_id, *ask);
    }
  }
}

}  // namespace kiln::daemon
