// `kiln cache invalidate PIPELINE [--task TASK]`: forget the cached results of a pipeline's tasks
// on the daemon (/api/v1/pipelines/{name}/cache/invalidate).
#include <cstdio>
#include <iostream>

#include "cli/client.h"
#include "cli/client_cmds.h"
#include "cli/client_util.h"

namespace kiln::cli {

using nlohmann::json;

int ClientInvalidateCache(const ClientOptions& options, const std::string& pipeline,
                          const std::string& task) {
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  json body = json::object();
  if (!task.empty()) body["task"] = task;
  auto result =
      client->Post("/api/v1/pipelines/" + UrlEncode(pipeline) + "/cache/invalidate", body);
  if (!result.ok()) return Fail(result.status());
  if (options.output == "json") {
    std::cout << result->dump(2) << '\n';
    return 0;
  }
  std::printf("%s%s: %s cached result%s forgotten\n", pipeline.c_str(),
              task.empty() ? "" : (" task " + task).c_str(),
              Text(At(*result, "invalidated")).c_str(), At(*result, "invalidated") == 1 ? "" : "s");
  return 0;
}

}  // namespace kiln::cli
