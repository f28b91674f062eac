// `kiln lineage PATH` and `kiln metrics PIPELINE`: what successful attempts recorded of their
// files and metrics, read from the daemon (/api/v1/lineage, /api/v1/pipelines/{name}/metrics).
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/client.h"
#include "cli/client_cmds.h"
#include "cli/client_util.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

std::string ParamsText(const json& params) {
  std::string out;
  for (const auto& [name, value] : params.items()) {
    out += (out.empty() ? "" : ", ") + name + "=" +
           (value.is_string() ? value.get<std::string>() : value.dump());
  }
  return out.empty() ? "none" : out;
}

void PrintFile(const json& file, int depth) {
  const std::string pad(static_cast<size_t>(depth) * 4, ' ');
  std::printf("%s%s\n%s  sha256 %s, %s bytes\n", pad.c_str(), Text(At(file, "path")).c_str(),
              pad.c_str(), Text(At(file, "sha256")).c_str(), Text(At(file, "bytes")).c_str());
  const json& step = At(file, "produced_by");
  if (!step.is_object()) {
    std::printf("%s  %s\n", pad.c_str(),
                At(file, "truncated") == true ? "(its producer is not followed further)"
                                              : "not written by any run: a source");
    return;
  }
  std::string version = Text(At(step, "version"));
  if (version.size() > 12) version.resize(12);
  std::printf(
      "%s  written by run %s of %s (version %s, trigger %s), task %s attempt %s, ended %s\n",
      pad.c_str(), Text(At(step, "run")).c_str(), Text(At(step, "pipeline")).c_str(),
      version.c_str(), Text(At(step, "trigger")).c_str(), Text(At(step, "task")).c_str(),
      Text(At(step, "attempt")).c_str(), Text(At(step, "ended_at")).c_str());
  std::printf("%s  params: %s\n", pad.c_str(), ParamsText(At(step, "params")).c_str());
  const json& inputs = At(step, "inputs");
  if (!inputs.is_array() || inputs.empty()) {
    std::printf("%s  inputs: none declared\n", pad.c_str());
    return;
  }
  std::printf("%s  inputs:\n", pad.c_str());
  for (const json& in : inputs) PrintFile(in, depth + 1);
}

}  // namespace

int ClientLineage(const ClientOptions& options, const LineageOptions& lineage) {
  if (lineage.path.empty() == lineage.sha256.empty()) {
    std::fprintf(stderr, "kiln lineage: give a file's path or --sha256 HASH\n");
    return 2;
  }
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  std::string query;
  if (!lineage.sha256.empty()) {
    query = "sha256=" + UrlEncode(lineage.sha256);
  } else {
    std::error_code ec;
    std::filesystem::path path = std::filesystem::absolute(lineage.path, ec);
    if (ec) path = lineage.path;
    query = "path=" + UrlEncode(path.lexically_normal().string());
  }
  auto result = client->Get("/api/v1/lineage?" + query);
  if (!result.ok()) return Fail(result.status());
  if (options.output == "json") {
    std::cout << result->dump(2) << '\n';
  } else {
    PrintFile(*result, 0);
  }
  return 0;
}

int ClientMetrics(const ClientOptions& options, const MetricsOptions& metrics) {
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  std::string path = "/api/v1/pipelines/" + UrlEncode(metrics.pipeline) +
                     "/metrics?limit=" + std::to_string(metrics.limit);
  if (!metrics.task.empty()) path += "&task=" + UrlEncode(metrics.task);
  auto result = client->Get(path);
  if (!result.ok()) return Fail(result.status());
  if (options.output == "json") {
    std::cout << result->dump(2) << '\n';
    return 0;
  }
  const json& points = At(*result, "points");
  if (!points.is_array() || points.empty()) {
    std::printf("pipeline %s: no metrics recorded yet\n", metrics.pipeline.c_str());
    return 0;
  }
  std::printf("%-8s %-20s %-22s %s\n", "RUN", "TASK", "ENDED", "METRICS");
  for (const json& p : points) {
    // A gate that did not pass is marked: its metrics are not a success's.
    const std::string task =
        Text(At(p, "task")) + (At(p, "state") == "skipped" ? " (skipped)" : "");
    std::printf("%-8s %-20s %-22s %s\n", Text(At(p, "run")).c_str(), task.c_str(),
                Text(At(p, "ended_at")).c_str(), MetricsText(At(p, "metrics")).c_str());
  }
  return 0;
}

}  // namespace kiln::cli
