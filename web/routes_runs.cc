// /api/v1/runs: list, get, cancel, retry, mark a task.
#include "web/input.h"
#include "web/internal.h"
#include "web/render.h"

namespace kiln::web {

namespace {

Status ReadTime(const Request& req, const std::string& name, std::optional<Instant>& out) {
  auto text = QueryValue(req, name);
  if (!text) return Status::Ok();
  auto t = ParseRfc3339(*text);
  if (!t.ok()) {
    // A '+' in a query string reads as a space.
    std::string hint = text->find(' ') != std::string::npos ? " (write '+' as %2B in a URL)" : "";
    return QueryError(name, t.message() + hint);
  }
  out = *t;
  return Status::Ok();
}

Status ReadRunFilter(const Request& req, scheduler::RunFilter& filter) {
  if (auto pipeline = QueryValue(req, "pipeline")) {
    if (Status ok = CheckPipelineName(*pipeline); !ok.ok())
      return QueryError("pipeline", ok.message());
    filter.pipeline = *pipeline;
  }
  if (auto state = QueryValue(req, "state")) {
    filter.state = dag::ParseRunState(*state);
    if (!filter.state) {
      return QueryError(
          "state", "must be queued, running, success, failed or cancelled, not " + Quoted(*state));
    }
  }
  if (Status s = ReadTime(req, "created_after", filter.created_after); !s.ok()) return s;
  if (Status s = ReadTime(req, "created_before", filter.created_before); !s.ok()) return s;
  Paging paging;
  if (Status s = ReadPaging(req, paging); !s.ok()) return s;
  if (paging.limit) filter.limit = *paging.limit;
  filter.before = paging.before;
  if (auto backfill = QueryValue(req, "backfill")) {
    auto id = ParseDecimal(*backfill, 1);
    if (!id) {
      return QueryError("backfill",
                        "must be a backfill id (a positive integer), not " + Quoted(*backfill));
    }
    filter.backfill = *id;
  }
  return Status::Ok();
}

void ListRuns(Call& call) {
  if (!AcceptQuery(call, {"pipeline", "state", "created_after", "created_before", "backfill",
                          "limit", "cursor"})) {
    return;
  }
  scheduler::RunFilter filter;
  if (Status read = ReadRunFilter(call.req, filter); !read.ok()) return SendStatus(call.res, read);
  auto page = call.ctx.service.ListRuns(filter);
  if (!page.ok()) return SendStatus(call.res, page.status());
  json runs = json::array();
  for (const auto& run : page->runs) runs.push_back(RenderRun(run, /*with_tasks=*/false));
  SendJson(call.res, 200,
           {{"runs", std::move(runs)},
            {"next_cursor", page->next ? json(ToString(*page->next)) : json()}});
}

// Sends the run with its tasks with `status`, or the error reading it.
void SendRun(Call& call, RunId id, int status) {
  auto run = call.ctx.service.GetRun(id);
  if (!run.ok()) return SendStatus(call.res, run.status());
  SendJson(call.res, status, RenderRun(*run, /*with_tasks=*/true));
}

void GetRun(Call& call) {
  if (!AcceptQuery(call, {})) return;
  if (auto id = RunArg(call, call.args[0])) SendRun(call, *id, 200);
}

void Cancel(Call& call) {
  if (!AcceptQuery(call, {})) return;
  auto id = RunArg(call, call.args[0]);
  if (!id || !ReadObject(call, {})) return;
  Status cancelled = call.ctx.service.CancelRun(*id, call.actor());
  if (!cancelled.ok()) return SendStatus(call.res, cancelled);
  SendRun(call, *id, 202);
}

// {"mode": "failed"} or {"from": "<task>"}, exactly one.
Status ReadRetry(const json& body, scheduler::RetryRequest& request) {
  auto mode = body.find("mode");
  auto from = body.find("from");
  if ((mode == body.end()) == (from == body.end())) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "body must be {\"mode\": \"failed\"} or {\"from\": \"<task>\"}");
  }
  if (mode != body.end()) {
    if (*mode != "failed") {
      return Status::Error(ErrorCode::kInvalidArgument, "'mode' must be \"failed\"");
    }
    request.failed = true;
    return Status::Ok();
  }
  if (!from->is_string()) {
    return Status::Error(ErrorCode::kInvalidArgument, "'from' must be a task id");
  }
  if (Status ok = CheckTaskId(from->get<std::string>()); !ok.ok()) {
    return Status::Error(ErrorCode::kInvalidArgument, "'from': " + ok.message());
  }
  request.from_task = from->get<std::string>();
  return Status::Ok();
}

void Retry(Call& call) {
  if (!AcceptQuery(call, {})) return;
  auto id = RunArg(call, call.args[0]);
  if (!id) return;
  auto body = ReadObject(call, {"mode", "from"});
  if (!body) return;
  scheduler::RetryRequest request;
  request.run = *id;
  request.actor = call.actor();
  if (Status read = ReadRetry(body->value, request); !read.ok()) {
    return SendStatus(call.res, read);
  }
  auto result = call.ctx.service.RetryRun(request);
  if (!result.ok()) return SendStatus(call.res, result.status());
  auto run = call.ctx.service.GetRun(result->id);
  if (!run.ok()) return SendStatus(call.res, run.status());
  SendJson(call.res, 200,
           {{"run", RenderRun(*run, /*with_tasks=*/true)},
            {"tasks", result->tasks},
            {"event_id", result->event_id}});
}

// {"state": "success" | "failed", "reason": "..."}
Status ReadMark(const json& body, scheduler::MarkRequest& request) {
  auto state = body.find("state");
  if (state == body.end() || (*state != "success" && *state != "failed")) {
    return Status::Error(ErrorCode::kInvalidArgument, "'state' must be \"success\" or \"failed\"");
  }
  request.state = *state == "success" ? dag::TaskState::kSuccess : dag::TaskState::kFailed;
  if (auto reason = body.find("reason"); reason != body.end() && !reason->is_null()) {
    if (!reason->is_string() || reason->get<std::string>().size() > 2000) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "'reason' must be a string of at most 2000 bytes");
    }
    request.reason = reason->get<std::string>();
  }
  return Status::Ok();
}

void Mark(Call& call) {
  if (!AcceptQuery(call, {})) return;
  auto id = RunArg(call, call.args[0]);
  if (!id || !CheckTaskArg(call, call.args[1])) return;
  auto body = ReadObject(call, {"state", "reason"});
  if (!body) return;
  scheduler::MarkRequest request;
  request.run = *id;
  request.task = call.args[1];
  request.actor = call.actor();
  if (Status read = ReadMark(body->value, request); !read.ok()) return SendStatus(call.res, read);
  Status marked = call.ctx.service.MarkTask(request);
  if (!marked.ok()) return SendStatus(call.res, marked);
  SendRun(call, *id, 200);
}

// POST .../approve and .../reject: {"note": "..."} (optional).
void Decide(Call& call, bool approve) {
  if (!AcceptQuery(call, {})) return;
  auto id = RunArg(call, call.args[0]);
  if (!id || !CheckTaskArg(call, call.args[1])) return;
  auto body = ReadObject(call, {"note"});
  if (!body) return;
  scheduler::ApprovalRequest request;
  request.run = *id;
  request.task = call.args[1];
  request.approve = approve;
  request.actor = call.actor();
  if (auto note = body->value.find("note"); note != body->value.end() && !note->is_null()) {
    if (!note->is_string()) {
      return SendStatus(call.res,
                        Status::Error(ErrorCode::kInvalidArgument, "'note' must be a string"));
    }
    request.note = note->get<std::string>();
    if (request.note.size() > 2000) {
      return SendStatus(
          call.res, Status::Error(ErrorCode::kInvalidArgument, "'note' is longer than 2000 bytes"));
    }
  }
  Status decided = call.ctx.service.DecideApproval(request);
  if (!decided.ok()) return SendStatus(call.res, decided);
  SendRun(call, *id, 200);
}

void Approve(Call& call) { Decide(call, true); }
void Reject(Call& call) { Decide(call, false); }

// GET /api/v1/approvals: the approval tasks waiting for a decision, longest waiting first.
void ListApprovals(Call& call) {
  if (!AcceptQuery(call, {})) return;
  auto approvals = call.ctx.service.ListApprovals();
  if (!approvals.ok()) return SendStatus(call.res, approvals.status());
  json out = json::array();
  for (const auto& a : *approvals) {
    out.push_back({{"run", Value(a.run)},
                   {"pipeline", a.pipeline},
                   {"task", a.task_id},
                   {"logical_date", RenderTime(a.logical_date)},
                   {"since", RenderTime(a.since)},
                   {"deadline", RenderTime(a.deadline)}});
  }
  SendJson(call.res, 200, {{"approvals", std::move(out)}});
}

// GET /api/v1/runs/{id}/decisions: who approved or rejected the run's approval tasks, and why.
void ListDecisions(Call& call) {
  if (!AcceptQuery(call, {})) return;
  auto id = RunArg(call, call.args[0]);
  if (!id) return;
  auto decisions = call.ctx.service.ListDecisions(*id);
  if (!decisions.ok()) return SendStatus(call.res, decisions.status());
  json out = json::array();
  for (const auto& d : *decisions) {
    out.push_back({{"task", d.task_id},
                   {"decision", d.decision},
                   {"by", d.by},
                   {"note", d.note},
                   {"at", RenderTime(d.at)},
                   {"event_id", d.event_id}});
  }
  SendJson(call.res, 200, {{"decisions", std::move(out)}});
}

}  // namespace

std::vector<Route> RunRoutes() {
  return {
      {"GET", "/api/v1/runs", Role::kViewer, ListRuns},
      {"GET", "/api/v1/runs/{id}", Role::kViewer, GetRun},
      {"POST", "/api/v1/runs/{id}/cancel", Role::kOperator, Cancel},
      {"POST", "/api/v1/runs/{id}/retry", Role::kOperator, Retry},
      {"POST", "/api/v1/runs/{id}/tasks/{task}/mark", Role::kAdmin, Mark},
      {"POST", "/api/v1/runs/{id}/tasks/{task}/approve", Role::kOperator, Approve},
      {"POST", "/api/v1/runs/{id}/tasks/{task}/reject", Role::kOperator, Reject},
      {"GET", "/api/v1/runs/{id}/decisions", Role::kViewer, ListDecisions},
      {"GET", "/api/v1/approvals", Role::kViewer, ListApprovals},
  };
}

}  // namespace kiln::web
