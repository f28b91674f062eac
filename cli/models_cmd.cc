// `kiln models [NAME]`, `kiln models promote NAME VERSION`, `kiln models rollback NAME`: the
// model registry on the daemon (/api/v1/models).
#include <cstdio>
#include <iostream>

#include "cli/client.h"
#include "cli/client_cmds.h"
#include "cli/client_util.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

void PrintModel(const json& m) {
  const json& champion = At(m, "champion");
  std::printf(
      "model %s: %s\n", Text(At(m, "name")).c_str(),
      champion.is_number() ? ("champion version " + champion.dump()).c_str() : "no champion");
  std::printf("%-8s %-9s %-14s %-8s %-22s %s\n", "VERSION", "CHAMPION", "SHA256", "RUN", "CREATED",
              "METRICS");
  for (const json& v : At(m, "versions")) {
    std::string sha = Text(At(v, "sha256"));
    if (sha.size() > 12) sha.resize(12);
    std::printf("%-8s %-9s %-14s %-8s %-22s %s\n", Text(At(v, "version")).c_str(),
                At(v, "champion") == true ? "*" : "", sha.c_str(), Text(At(v, "run")).c_str(),
                Text(At(v, "created_at")).c_str(), MetricsText(At(v, "metrics")).c_str());
  }
}

}  // namespace

int ClientModels(const ClientOptions& options, const ModelsOptions& models) {
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  const std::string path = "/api/v1/models/" + UrlEncode(models.name);
  Result<json> result = models.action == "promote"
                            ? client->Post(path + "/promote", json{{"version", models.version}})
                        : models.action == "rollback"
                            ? client->Post(path + "/rollback", json::object())
                        : !models.name.empty() ? client->Get(path)
                                               : client->Get("/api/v1/models");
  if (!result.ok()) return Fail(result.status());
  if (options.output == "json") {
    std::cout << result->dump(2) << '\n';
    return 0;
  }
  if (models.action.empty() && models.name.empty()) {
    const json& list = At(*result, "models");
    if (!list.is_array() || list.empty()) {
      std::printf("no models registered yet\n");
      return 0;
    }
    std::printf("%-32s %-10s %s\n", "MODEL", "CHAMPION", "VERSIONS");
    for (const json& m : list) {
      std::printf("%-32s %-10s %s\n", Text(At(m, "name")).c_str(),
                  At(m, "champion").is_number() ? At(m, "champion").dump().c_str() : "-",
                  Text(At(m, "versions")).c_str());
    }
    return 0;
  }
  PrintModel(*result);
  return 0;
}

}  // namespace kiln::cli
