// kind = "gate" with promote = true: a passed gate's artifact is kept under the data folder by
// its content hash and registered as the model's next version, made champion when its
// conditions hold against the champion at that moment (checked again inside the registering
// transaction, under the model's lock: two gates that passed against the same champion do not
// both replace it blindly). Also the registry's reads and an operator's promote and rollback.
#include <nlohmann/json.hpp>

#include "common/crash.h"
#include "common/log.h"
#include "daemon/service.h"
#include "plugins/gate_expr.h"

namespace kiln::daemon {

namespace {

using json = nlohmann::json;

// How far back an unregistered passed gate is still registered after a restart.
constexpr Duration kRegisterWindow = std::chrono::hours(24 * 7);

// Whether every condition holds against the champion's metrics (none: it becomes champion).
bool BeatsChampion(const GateRegistration& reg, const std::optional<std::string>& champion) {
  if (!champion) return true;
  const auto mine = MetricsOf(reg.metrics);
  const auto theirs = MetricsOf(*champion);
  for (const std::string& text : reg.require) {
    auto condition = plugins::ParseCondition(text);
    if (!condition.ok()) return false;
    auto verdict = plugins::Evaluate(*condition, mine, &theirs);
    if (!verdict.ok() || !verdict->holds) return false;
  }
  return true;
}

}  // namespace

std::optional<GateRegistration> ReadRegistration(const dag::TaskSpec& task,
                                                 const std::string& results);

std::optional<GateRegistration> RegistrationOf(const dag::TaskSpec& task,
                                               const std::string& results) {
  if (task.kind != "gate") return std::nullopt;
  // The report is what a task's process wrote: any shape is possible, none may throw.
  try {
    return ReadRegistration(task, results);
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::optional<GateRegistration> ReadRegistration(const dag::TaskSpec& task,
                                                 const std::string& results) {
  const dag::Value* promote = task.options.Find("promote");
  const dag::Value* model = task.options.Find("model");
  if (promote == nullptr || promote->type != dag::Value::Type::kBool || !promote->boolean ||
      model == nullptr || model->type != dag::Value::Type::kString) {
    return std::nullopt;
  }
  json r = json::parse(results, nullptr, /*allow_exceptions=*/false);
  if (!r.is_object()) return std::nullopt;
  const json report = r.value("report", json::object());
  if (!report.is_object() || report.value("decision", std::string()) != "pass") return std::nullopt;
  const json artifact = report.value("artifact", json());
  if (!artifact.is_object() || !artifact.value("path", json()).is_string() ||
      !artifact.value("sha256", json()).is_string()) {
    return std::nullopt;
  }
  GateRegistration reg;
  // The model comes from the pipeline file; what was measured, from the gate's report.
  reg.model = model->string;
  reg.artifact = artifact["path"].get<std::string>();
  reg.sha256 = artifact["sha256"].get<std::string>();
  if (artifact.value("bytes", json()).is_number_integer()) {
    reg.bytes = artifact["bytes"].get<int64_t>();
  }
  reg.metrics = report.value("metrics", json::object()).dump();
  reg.decision = report.dump();
  // The conditions checked again against the champion: the pipeline file's, unless they are
  // templates (then the rendered ones the gate reported).
  bool templated = false;
  if (const dag::Value* require = task.options.Find("require")) {
    for (const dag::Value& c : require->items) {
      templated = templated || c.string.find("{{") != std::string::npos;
      reg.require.push_back(c.string);
    }
  }
  if (templated) {
    reg.require.clear();
    for (const json& c : report.value("conditions", json::array())) {
      if (c.is_object() && c.value("condition", json()).is_string()) {
        reg.require.push_back(c["condition"].get<std::string>());
      }
    }
  }
  if (reg.require.empty()) return std::nullopt;  // a gate has at least one condition
  return reg;
}

void DaemonService::RegisterModel(RunId run, const std::string& task, const GateRegistration& reg) {
  CrashPoint("gate.register");
  std::string pipeline;
  std::filesystem::path pipeline_dir;
  auto record = store_.GetRun(run);
  if (!record.ok()) {
    log::Error("gate '" + task + "' of run " + ToString(run) + ": " + record.message());
    return;  // the next start tries again
  }
  pipeline = record->pipeline;
  {
    std::lock_guard lock(mu_);
    if (auto it = pipelines_.find(pipeline); it != pipelines_.end() && it->second.entry.pipeline) {
      pipeline_dir = it->second.entry.pipeline->spec.file.parent_path();
    }
  }
  const std::string who = "gate '" + task + "' of run " + ToString(run);
  auto failed = [&](const std::string& error) {
    log::Error(who + ": model '" + reg.model + "' not registered: " + error);
    json detail = {{"task", task}, {"model", reg.model}, {"error", error}};
    if (Status s = store_.RecordEvent("model_registration_failed", run, "gate", detail.dump());
        !s.ok()) {
      log::Error(s.message());
    }
  };
  const std::filesystem::path run_dir = options_.runs_dir / pipeline / ToString(run);
  auto bytes =
      KeepArtifact(options_.models_dir, run_dir, pipeline_dir, reg.artifact, reg.sha256, reg.bytes,
                   RunIdentity(options_.task_user, options_.task_uids, Value(run)));
  if (!bytes.ok() && bytes.status().code() == ErrorCode::kUnavailable) {
    // The data folder failed, not the artifact: the next start tries again.
    log::Error(who + ": keeping the artifact of model '" + reg.model + "': " + bytes.message());
    return;
  }
  if (!bytes.ok()) return failed(bytes.message());
  store::NewModelVersion version{reg.model,    reg.sha256, *bytes, reg.metrics,
                                 reg.decision, run,        task};
  auto registered = store_.RegisterModelVersion(
      version,
      [&](const std::optional<std::string>& champion) { return BeatsChampion(reg, champion); });
  if (!registered.ok()) {
    // Not recorded as failed: the database may answer again; the next start retries.
    log::Error(who + ": registering model '" + reg.model + "': " + registered.message());
    return;
  }
  if (registered->champion && options_.champions) {
    options_.champions->Set(reg.model,
                            ChampionCache::Champion{registered->version, MetricsOf(reg.metrics)});
  }
  if (!registered->existing) {
    log::Info(reg.model + ": version " + std::to_string(registered->version) + " registered by " +
              who + (registered->champion ? ", now the champion" : ", not made champion"));
  }
}

void DaemonService::RegisterPendingModels() {
  auto pending = store_.PendingRegistrations(kRegisterWindow, options_.owner);
  if (!pending.ok()) {
    log::Error("registering models left by a restart: " + pending.message());
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
    if (!index) continue;
    if (auto reg = RegistrationOf(pipeline->task(*index), p.results)) {
      RegisterModel(p.run, p.task_id, *reg);
    }
  }
}

Result<std::vector<scheduler::ModelRecord>> DaemonService::ListModels() {
  return store_.ListModels();
}

Result<scheduler::ModelRecord> DaemonService::GetModel(const std::string& name) {
  return store_.GetModel(name);
}

Result<scheduler::ModelRecord> DaemonService::PromoteModel(const std::string& name, int version,
                                                           const std::string& actor) {
  auto model = store_.PromoteModel(name, version, actor);
  if (model.ok() && options_.champions) options_.champions->Update(*model);
  return model;
}

Result<scheduler::ModelRecord> DaemonService::RollbackModel(const std::string& name,
                                                            const std::string& actor) {
  auto model = store_.RollbackModel(name, actor);
  if (model.ok() && options_.champions) options_.champions->Update(*model);
  return model;
}

Result<std::string> DaemonService::ModelCard(const std::string& name, int version) {
  auto model = store_.GetModel(name);
  if (!model.ok()) return model.status();
  for (const auto& v : model->history) {
    if (v.version != version) continue;
    auto inputs = store_.RunInputs(v.run);
    if (!inputs.ok()) return inputs.status();
    try {
      return daemon::ModelCard(*model, v, *inputs);
    } catch (const json::exception& e) {
      return Status::Error("model '" + name + "' version " + std::to_string(version) +
                           ": its recorded decision cannot be read: " + e.what());
    }
  }
  return Status::Error(ErrorCode::kNotFound,
                       "model '" + name + "' has no version " + std::to_string(version));
}

}  // namespace kiln::daemon
