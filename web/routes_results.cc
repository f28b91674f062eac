// What attempts recorded when they succeeded: a pipeline's metrics over time
// (/api/v1/pipelines/{name}/metrics) and the lineage of a file (/api/v1/lineage).
#include "web/input.h"
#include "web/internal.h"
#include "web/render.h"

namespace kiln::web {

namespace {

void Metrics(Call& call) {
  if (!AcceptQuery(call, {"task", "limit", "cursor"}) || !CheckPipelineArg(call, call.args[0])) {
    return;
  }
  std::optional<std::string> task = QueryValue(call.req, "task");
  if (task && !CheckTaskArg(call, *task)) return;
  Paging paging;
  if (Status s = ReadPaging(call.req, paging); !s.ok()) return SendStatus(call.res, s);
  auto page = call.ctx.service.PipelineMetrics(call.args[0], task, paging.before,
                                               paging.limit.value_or(50));
  if (!page.ok()) return SendStatus(call.res, page.status());
  json points = json::array();
  for (const auto& p : page->points) {
    json values = json::parse(p.values, nullptr, /*allow_exceptions=*/false);
    if (!values.is_object()) values = json::object();
    points.push_back({{"run", Value(p.run)},
                      {"task", p.task_id},
                      {"attempt", p.attempt},
                      {"logical_date", RenderTime(p.logical_date)},
                      {"ended_at", RenderTime(p.ended_at)},
                      {"state", p.skipped ? "skipped" : "success"},
                      {"metrics", std::move(values)}});
  }
  SendJson(call.res, 200,
           {{"pipeline", call.args[0]},
            {"points", std::move(points)},
            {"next_cursor", page->next ? json(ToString(*page->next)) : json()}});
}

json RenderLineage(const scheduler::LineageFile& file) {
  json out = {{"path", file.path}, {"sha256", file.sha256}, {"bytes", file.bytes}};
  if (file.truncated) out["truncated"] = true;
  if (!file.produced_by) {
    out["produced_by"] = nullptr;
    return out;
  }
  const scheduler::LineageStep& s = *file.produced_by;
  json params = json::object();
  for (const auto& [name, value] : s.params) params[name] = RenderParamValue(value);
  json inputs = json::array();
  for (const auto& in : s.inputs) inputs.push_back(RenderLineage(in));
  out["produced_by"] = {{"run", Value(s.run)},
                        {"pipeline", s.pipeline},
                        {"version", s.version_hash},
                        {"trigger", s.trigger},
                        {"logical_date", RenderTime(s.logical_date)},
                        {"params", std::move(params)},
                        {"task", s.task_id},
                        {"attempt", s.attempt},
                        {"ended_at", RenderTime(s.ended_at)},
                        {"inputs", std::move(inputs)}};
  return out;
}

void Lineage(Call& call) {
  if (!AcceptQuery(call, {"path", "sha256"})) return;
  scheduler::LineageQuery query;
  query.path = QueryValue(call.req, "path");
  query.sha256 = QueryValue(call.req, "sha256");
  if (query.path.has_value() == query.sha256.has_value()) {
    return SendError(call.res, 400, "invalid_argument",
                     "give exactly one of the query parameters 'path' (an absolute path) and "
                     "'sha256' (64 hex digits)");
  }
  if (query.path && (query.path->empty() || (*query.path)[0] != '/' || query.path->size() > 4096 ||
                     query.path->find('\0') != std::string::npos)) {
    return SendStatus(call.res,
                      QueryError("path", "must be an absolute path, not " + Quoted(*query.path)));
  }
  if (query.sha256) {
    std::string lower = *query.sha256;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.size() != 64 || lower.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return SendStatus(
          call.res, QueryError("sha256", "must be 64 hex digits, not " + Quoted(*query.sha256)));
    }
    query.sha256 = lower;
  }
  auto file = call.ctx.service.Lineage(query);
  if (!file.ok()) return SendStatus(call.res, file.status());
  SendJson(call.res, 200, RenderLineage(*file));
}

}  // namespace

std::vector<Route> ResultRoutes() {
  return {
      {"GET", "/api/v1/pipelines/{name}/metrics", Role::kViewer, Metrics},
      {"GET", "/api/v1/lineage", Role::kViewer, Lineage},
  };
}

}  // namespace kiln::web
