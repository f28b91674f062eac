// `kiln approve RUN TASK`, `kiln reject RUN TASK` (with --note) and `kiln approvals`: deciding
// approval tasks on the daemon (/api/v1/runs/{id}/tasks/{task}/approve|reject, /api/v1/approvals).
#include <cstdio>
#include <iostream>

#include "cli/client.h"
#include "cli/client_cmds.h"
#include "cli/client_util.h"

namespace kiln::cli {

using nlohmann::json;

int ClientDecide(const ClientOptions& options, const DecideOptions& decide) {
  if (!ValidRunId(decide.run)) {
    return Fail(Status::Error("run id '" + decide.run + "' must be a positive integer"));
  }
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  const std::string verb = decide.approve ? "approve" : "reject";
  json body = json::object();
  if (!decide.note.empty()) body["note"] = decide.note;
  auto run = client->Post(
      "/api/v1/runs/" + decide.run + "/tasks/" + UrlEncode(decide.task) + "/" + verb, body);
  if (!run.ok()) return Fail(run.status());
  if (options.output == "json") {
    std::cout << run->dump(2) << '\n';
  } else {
    std::printf("run %s: task %s %s\n", decide.run.c_str(), decide.task.c_str(),
                decide.approve ? "approved" : "rejected");
  }
  return 0;
}

int ClientApprovals(const ClientOptions& options) {
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  auto result = client->Get("/api/v1/approvals");
  if (!result.ok()) return Fail(result.status());
  if (options.output == "json") {
    std::cout << result->dump(2) << '\n';
    return 0;
  }
  const json& list = At(*result, "approvals");
  if (!list.is_array() || list.empty()) {
    std::printf("nothing waits for approval\n");
    return 0;
  }
  std::printf("%-8s %-24s %-24s %-26s %s\n", "RUN", "PIPELINE", "TASK", "WAITING SINCE",
              "DEADLINE");
  for (const json& a : list) {
    const json& deadline = At(a, "deadline");
    std::printf("%-8s %-24s %-24s %-26s %s\n", Text(At(a, "run")).c_str(),
                Text(At(a, "pipeline")).c_str(), Text(At(a, "task")).c_str(),
                Text(At(a, "since")).c_str(), deadline.is_string() ? Text(deadline).c_str() : "-");
  }
  return 0;
}

}  // namespace kiln::cli
