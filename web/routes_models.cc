// The model registry: /api/v1/models (list), /api/v1/models/{name} (versions), promote and roll
// back (operator), and a version's card in Markdown.
#include "web/input.h"
#include "web/internal.h"
#include "web/render.h"

namespace kiln::web {

namespace {

json RenderVersion(const scheduler::ModelVersionRecord& v) {
  json metrics = json::parse(v.metrics, nullptr, /*allow_exceptions=*/false);
  json decision = json::parse(v.decision, nullptr, /*allow_exceptions=*/false);
  json params = json::object();
  for (const auto& [name, value] : v.params) params[name] = RenderParamValue(value);
  return {{"version", v.version},
          {"sha256", v.sha256},
          {"bytes", v.bytes},
          {"metrics", metrics.is_object() ? metrics : json::object()},
          {"decision", decision.is_object() ? decision : json::object()},
          {"run", Value(v.run)},
          {"task", v.task_id},
          {"pipeline", v.pipeline},
          {"pipeline_version", v.version_hash},
          {"params", std::move(params)},
          {"created_at", RenderTime(v.created_at)},
          {"champion", v.champion},
          {"promoted_at", RenderTime(v.promoted_at)},
          {"promoted_by", v.promoted_by.empty() ? json() : json(v.promoted_by)},
          {"promoted_how", v.promoted_how.empty() ? json() : json(v.promoted_how)}};
}

json RenderModel(const scheduler::ModelRecord& m, bool with_versions) {
  json out = {{"name", m.name},
              {"champion", m.champion ? json(*m.champion) : json()},
              {"created_at", RenderTime(m.created_at)}};
  if (!with_versions) {
    out["versions"] = m.versions;
    return out;
  }
  json versions = json::array();
  for (const auto& v : m.history) versions.push_back(RenderVersion(v));
  out["versions"] = std::move(versions);
  return out;
}

bool CheckModelArg(Call& call, const std::string& name) {
  // Model names follow pipeline names' rule.
  if (Status ok = CheckPipelineName(name); !ok.ok()) {
    SendError(call.res, 400, "invalid_argument",
              "model name " + Quoted(name) + " must match ^[a-z0-9][a-z0-9_.-]{0,63}$ (as pipeline "
              "names)");
    return false;
  }
  return true;
}

std::optional<int> VersionArg(Call& call, const std::string& text) {
  auto n = ParseDecimal(text, 1);
  if (n && *n <= std::numeric_limits<int>::max()) return static_cast<int>(*n);
  SendError(call.res, 400, "invalid_argument",
            "version " + Quoted(text) + " must be a positive integer");
  return std::nullopt;
}

void ListModels(Call& call) {
  if (!AcceptQuery(call, {})) return;
  auto models = call.ctx.service.ListModels();
  if (!models.ok()) return SendStatus(call.res, models.status());
  json out = json::array();
  for (const auto& m : *models) out.push_back(RenderModel(m, false));
  SendJson(call.res, 200, {{"models", std::move(out)}});
}

void GetModel(Call& call) {
  if (!AcceptQuery(call, {}) || !CheckModelArg(call, call.args[0])) return;
  auto model = call.ctx.service.GetModel(call.args[0]);
  if (!model.ok()) return SendStatus(call.res, model.status());
  SendJson(call.res, 200, RenderModel(*model, true));
}

void Promote(Call& call) {
  if (!AcceptQuery(call, {}) || !CheckModelArg(call, call.args[0])) return;
  auto body = ReadObject(call, {"version"});
  if (!body) return;
  auto it = body->value.find("version");
  if (it == body->value.end() || !it->is_number_integer() || it->get<int64_t>() < 1 ||
      it->get<int64_t>() > std::numeric_limits<int>::max()) {
    return SendError(call.res, 400, "invalid_argument",
                     std::string(it == body->value.end() ? "'version' is required"
                                                         : "'version' must be a whole number "
                                                           "from 1 to 2147483647") +
                         ": the number of the version to make champion");
  }
  auto model = call.ctx.service.PromoteModel(call.args[0], static_cast<int>(it->get<int64_t>()),
                                             call.actor());
  if (!model.ok()) return SendStatus(call.res, model.status());
  SendJson(call.res, 200, RenderModel(*model, true));
}

void Rollback(Call& call) {
  if (!AcceptQuery(call, {}) || !CheckModelArg(call, call.args[0]) || !ReadObject(call, {})) {
    return;
  }
  auto model = call.ctx.service.RollbackModel(call.args[0], call.actor());
  if (!model.ok()) return SendStatus(call.res, model.status());
  SendJson(call.res, 200, RenderModel(*model, true));
}

void Card(Call& call) {
  if (!AcceptQuery(call, {}) || !CheckModelArg(call, call.args[0])) return;
  auto version = VersionArg(call, call.args[1]);
  if (!version) return;
  auto card = call.ctx.service.ModelCard(call.args[0], *version);
  if (!card.ok()) return SendStatus(call.res, card.status());
  call.res.status = 200;
  call.res.set_content(*card, "text/markdown; charset=utf-8");
}

}  // namespace

std::vector<Route> ModelRoutes() {
  return {
      {"GET", "/api/v1/models", Role::kViewer, ListModels},
      {"GET", "/api/v1/models/{name}", Role::kViewer, GetModel},
      {"POST", "/api/v1/models/{name}/promote", Role::kOperator, Promote},
      {"POST", "/api/v1/models/{name}/rollback", Role::kOperator, Rollback},
      {"GET", "/api/v1/models/{name}/versions/{version}/card", Role::kViewer, Card},
  };
}

}  // namespace kiln::web
