// GET /healthz, /readyz, /metrics and /api/v1/openapi.json.
#include "web/internal.h"
#include "web/metrics_text.h"
#include "web/openapi.h"

namespace kiln::web {

namespace {

void Healthz(Call& call) {
  if (AcceptQuery(call, {})) SendJson(call.res, 200, {{"status", "ok"}});
}

void Readyz(Call& call) {
  if (!AcceptQuery(call, {})) return;
  Status ready = call.ctx.service.Ready();
  if (!ready.ok()) return SendError(call.res, 503, "unavailable", ready.message());
  SendJson(call.res, 200, {{"status", "ready"}});
}

void Metrics(Call& call) {
  if (!AcceptQuery(call, {})) return;
  auto metrics = call.ctx.service.Metrics();
  if (!metrics.ok()) return SendError(call.res, 503, "unavailable", metrics.message());
  call.res.status = 200;
  call.res.set_content(RenderMetrics(*metrics), kMetricsContentType);
}

void OpenApi(Call& call) {
  if (!AcceptQuery(call, {})) return;
  call.res.status = 200;
  call.res.set_content(std::string(OpenApiDocument()), "application/json");
}

}  // namespace

std::vector<Route> HealthRoutes() {
  return {
      {"GET", "/healthz", std::nullopt, Healthz},
      {"GET", "/readyz", Role::kViewer, Readyz},
      {"GET", "/metrics", Role::kViewer, Metrics},
      {"GET", "/api/v1/openapi.json", Role::kViewer, OpenApi},
  };
}

}  // namespace kiln::web
