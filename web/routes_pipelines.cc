// /api/v1/pipelines: list, get, pause, unpause, trigger a run.
#include "web/input.h"
#include "web/internal.h"
#include "web/render.h"

namespace kiln::web {

namespace {

void ListPipelines(Call& call) {
  if (!AcceptQuery(call, {})) return;
  json list = json::array();
  for (const auto& info : call.ctx.service.ListPipelines()) {
    list.push_back(RenderPipeline(info, /*detail=*/false));
  }
  SendJson(call.res, 200, {{"pipelines", std::move(list)}});
}

void GetPipeline(Call& call) {
  const std::string& name = call.args[0];
  if (!AcceptQuery(call, {}) || !CheckPipelineArg(call, name)) return;
  auto info = call.ctx.service.GetPipeline(name);
  if (!info.ok()) return SendStatus(call.res, info.status());
  SendJson(call.res, 200, RenderPipeline(*info, /*detail=*/true));
}

void SetPaused(Call& call, bool paused) {
  const std::string& name = call.args[0];
  if (!AcceptQuery(call, {}) || !CheckPipelineArg(call, name) || !ReadObject(call, {})) return;
  Status changed = call.ctx.service.SetPaused(name, paused, call.actor());
  if (!changed.ok()) return SendStatus(call.res, changed);
  auto info = call.ctx.service.GetPipeline(name);
  if (!info.ok()) return SendStatus(call.res, info.status());
  SendJson(call.res, 200, RenderPipeline(*info, /*detail=*/false));
}

// POST /api/v1/pipelines/{name}/cache/invalidate {"task": "train"} (task optional).
void InvalidateCache(Call& call) {
  const std::string& name = call.args[0];
  if (!AcceptQuery(call, {}) || !CheckPipelineArg(call, name)) return;
  auto body = ReadObject(call, {"task"});
  if (!body) return;
  std::optional<std::string> task;
  if (auto t = body->value.find("task"); t != body->value.end() && !t->is_null()) {
    if (!t->is_string() || !CheckTaskArg(call, t->get<std::string>())) {
      if (!t->is_string()) {
        SendStatus(call.res, Status::Error(ErrorCode::kInvalidArgument, "'task' must be a string"));
      }
      return;
    }
    task = t->get<std::string>();
  }
  auto count = call.ctx.service.InvalidateCache(name, task, call.actor());
  if (!count.ok()) return SendStatus(call.res, count.status());
  SendJson(call.res, 200,
           {{"pipeline", name}, {"task", task ? json(*task) : json()}, {"invalidated", *count}});
}

// POST /api/v1/reload: this daemon reads its kiln.toml again (what it did is the answer's
// "config"); then every daemon on the database reads its kiln.toml and pipelines folder again.
void Reload(Call& call) {
  if (!AcceptQuery(call, {}) || !ReadObject(call, {})) return;
  auto asked = call.ctx.service.ReloadPipelines(call.actor());
  if (!asked.ok()) return SendStatus(call.res, asked.status());
  json refused = json::array();
  for (const auto& [key, why] : asked->refused) refused.push_back({{"key", key}, {"why", why}});
  SendJson(call.res, 202,
           {{"reload", "asked of every daemon on the database"},
            {"config",
             {{"file", asked->file.empty() ? json() : json(asked->file)},
              {"applied", asked->applied},
              {"restart_needed", asked->restart_needed},
              {"refused", std::move(refused)}}}});
}

void Pause(Call& call) { SetPaused(call, true); }
void Unpause(Call& call) { SetPaused(call, false); }

// Param values are JSON strings, numbers or booleans, passed on as text (numbers exactly as
// sent) for the service to convert to the declared type.
Status ReadParams(const JsonBody& body, scheduler::TriggerRequest& request) {
  auto found = body.value.find("params");
  if (found == body.value.end() || found->is_null()) return Status::Ok();
  if (!found->is_object()) {
    return Status::Error(ErrorCode::kInvalidArgument, "'params' must be an object");
  }
  for (const auto& [name, value] : found->items()) {
    std::string text;
    if (value.is_string()) {
      text = value.get<std::string>();
    } else if (value.is_boolean()) {
      text = value.get<bool>() ? "true" : "false";
    } else if (value.is_number()) {
      text = body.NumberText("/params/" + PointerToken(name), value);
    } else {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "param " + Quoted(name) + " must be a string, number or boolean");
    }
    request.params.emplace_back(name, std::move(text));
  }
  return Status::Ok();
}

Status ReadTrigger(const JsonBody& body, scheduler::TriggerRequest& request) {
  if (Status params = ReadParams(body, request); !params.ok()) return params;
  const json& v = body.value;
  if (auto key = v.find("idempotency_key"); key != v.end() && !key->is_null()) {
    if (!key->is_string() || key->get<std::string>().empty() ||
        key->get<std::string>().size() > 255) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "'idempotency_key' must be a string of 1-255 bytes");
    }
    request.idempotency_key = key->get<std::string>();
  }
  if (auto note = v.find("note"); note != v.end() && !note->is_null()) {
    // As a decision's note: it comes back in every listing of runs.
    if (!note->is_string() || note->get<std::string>().size() > 2000) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "'note' must be a string of at most 2000 bytes");
    }
    request.note = note->get<std::string>();
  }
  return Status::Ok();
}

void Trigger(Call& call) {
  if (!AcceptQuery(call, {}) || !CheckPipelineArg(call, call.args[0])) return;
  auto body = ReadObject(call, {"params", "idempotency_key", "note"});
  if (!body) return;
  scheduler::TriggerRequest request;
  request.pipeline = call.args[0];
  request.actor = call.actor();
  if (Status read = ReadTrigger(*body, request); !read.ok()) return SendStatus(call.res, read);
  auto result = call.ctx.service.Trigger(request);
  if (!result.ok()) return SendStatus(call.res, result.status());
  std::string id = ToString(result->id);
  call.res.set_header("Location", "/api/v1/runs/" + id);
  // A new run comes back with the answer; an existing one is read.
  auto run = result->run ? Result<scheduler::RunRecord>(*result->run)
                         : call.ctx.service.GetRun(result->id);
  if (!run.ok()) {
    return SendStatus(
        call.res, Status::Error(run.status().code(),
                                "run " + id + " was created but cannot be read: " + run.message()));
  }
  SendJson(call.res, result->existing ? 200 : 201, RenderRun(*run, /*with_tasks=*/true));
}

}  // namespace

std::vector<Route> PipelineRoutes() {
  return {
      {"GET", "/api/v1/pipelines", Role::kViewer, ListPipelines},
      {"GET", "/api/v1/pipelines/{name}", Role::kViewer, GetPipeline},
      {"POST", "/api/v1/pipelines/{name}/pause", Role::kOperator, Pause},
      {"POST", "/api/v1/reload", Role::kOperator, Reload},
      {"POST", "/api/v1/pipelines/{name}/cache/invalidate", Role::kOperator, InvalidateCache},
      {"POST", "/api/v1/pipelines/{name}/unpause", Role::kOperator, Unpause},
      {"POST", "/api/v1/pipelines/{name}/runs", Role::kOperator, Trigger},
  };
}

}  // namespace kiln::web
