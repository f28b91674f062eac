// Backfills: /api/v1/pipelines/{name}/backfills (create, list) and /api/v1/backfills/{id}
// (progress, cancel).
#include "common/time.h"
#include "web/input.h"
#include "web/internal.h"
#include "web/render.h"

namespace kiln::web {

namespace {

Status TimeField(const json& body, const char* name, Instant& out) {
  auto it = body.find(name);
  if (it == body.end() || !it->is_string()) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         std::string("'") + name + "' " +
                             (it == body.end() ? "is required" : "must be a string") +
                             ": an RFC 3339 instant such as \"2026-11-01T00:00:00Z\"");
  }
  auto t = ParseRfc3339(it->get<std::string>());
  if (!t.ok()) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         std::string("'") + name + "': " + t.message());
  }
  out = *t;
  return Status::Ok();
}

void CreateBackfill(Call& call) {
  if (!AcceptQuery(call, {}) || !CheckPipelineArg(call, call.args[0])) return;
  auto body = ReadObject(call, {"from", "to", "max_active_runs"});
  if (!body) return;
  scheduler::BackfillRequest request;
  request.pipeline = call.args[0];
  request.actor = call.actor();
  if (Status s = TimeField(body->value, "from", request.from); !s.ok()) {
    return SendStatus(call.res, s);
  }
  if (Status s = TimeField(body->value, "to", request.to); !s.ok()) return SendStatus(call.res, s);
  if (auto it = body->value.find("max_active_runs"); it != body->value.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 1000) {
      return SendError(call.res, 400, "invalid_argument",
                       "'max_active_runs' must be an integer from 1 to 1000");
    }
    request.max_active_runs = static_cast<int>(it->get<int64_t>());
  }
  auto created = call.ctx.service.CreateBackfill(request);
  if (!created.ok()) return SendStatus(call.res, created.status());
  call.res.set_header("Location", "/api/v1/backfills/" + std::to_string(created->id));
  json out = RenderBackfill(*created);
  out["event_id"] = created->event_id;
  SendJson(call.res, 201, out);
}

void ListBackfills(Call& call) {
  if (!AcceptQuery(call, {}) || !CheckPipelineArg(call, call.args[0])) return;
  auto list = call.ctx.service.ListBackfills(call.args[0]);
  if (!list.ok()) return SendStatus(call.res, list.status());
  json out = json::array();
  for (const auto& b : *list) out.push_back(RenderBackfill(b));
  SendJson(call.res, 200, {{"backfills", std::move(out)}});
}

void GetBackfill(Call& call) {
  if (!AcceptQuery(call, {})) return;
  auto id = ParseDecimal(call.args[0], 1);
  if (!id) {
    return SendError(call.res, 400, "invalid_argument",
                     "backfill id " + Quoted(call.args[0]) + " must be a positive integer");
  }
  auto b = call.ctx.service.GetBackfill(*id);
  if (!b.ok()) return SendStatus(call.res, b.status());
  SendJson(call.res, 200, RenderBackfill(*b));
}

void CancelBackfill(Call& call) {
  if (!AcceptQuery(call, {}) || !ReadObject(call, {})) return;
  auto id = ParseDecimal(call.args[0], 1);
  if (!id) {
    return SendError(call.res, 400, "invalid_argument",
                     "backfill id " + Quoted(call.args[0]) + " must be a positive integer");
  }
  auto b = call.ctx.service.CancelBackfill(*id, call.actor());
  if (!b.ok()) return SendStatus(call.res, b.status());
  SendJson(call.res, 202, RenderBackfill(*b));
}

}  // namespace

std::vector<Route> BackfillRoutes() {
  return {
      {"POST", "/api/v1/pipelines/{name}/backfills", Role::kOperator, CreateBackfill},
      {"GET", "/api/v1/pipelines/{name}/backfills", Role::kViewer, ListBackfills},
      {"GET", "/api/v1/backfills/{id}", Role::kViewer, GetBackfill},
      {"POST", "/api/v1/backfills/{id}/cancel", Role::kOperator, CancelBackfill},
  };
}

}  // namespace kiln::web
