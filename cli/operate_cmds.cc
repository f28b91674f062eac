// `kiln pipelines` (what the daemon has loaded: paused, schedule, next fire, load errors) and
// `kiln mark` (set a task's state by hand), over the v1 API.
#include <cstdio>

#include "cli/client_cmds.h"
#include "cli/client_util.h"

namespace kiln::cli {

namespace {

// The first line of a load error (the file's first diagnostic), shortened for a table.
std::string FirstLine(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > 100) line = line.substr(0, 97) + "...";
  return line;
}

}  // namespace

int ClientPipelines(const ClientOptions& options) {
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  auto list = client->Get("/api/v1/pipelines");
  if (!list.ok()) return Fail(list.status());
  if (options.output == "json") {
    std::printf("%s\n", list->dump(2).c_str());
    return 0;
  }
  std::printf("%-28s %-7s %-18s %-25s %-9s %s\n", "PIPELINE", "PAUSED", "SCHEDULE", "NEXT FIRE",
              "LAST RUN", "LOAD ERROR");
  int broken = 0;
  for (const auto& p : At(*list, "pipelines")) {
    const json& last = At(p, "last_run");
    const std::string error =
        At(p, "load_error").is_string() ? FirstLine(At(p, "load_error").get<std::string>()) : "-";
    broken += error == "-" ? 0 : 1;
    std::printf("%-28s %-7s %-18s %-25s %-9s %s\n", Text(At(p, "name")).c_str(),
                At(p, "paused") == true ? "yes" : "no", Text(At(p, "schedule")).c_str(),
                Text(At(p, "next_fire")).c_str(), Text(At(last, "state")).c_str(), error.c_str());
  }
  // A broken file is worth an exit code: CI and scripts see it without reading the table.
  return broken == 0 ? 0 : 1;
}

int ClientMark(const ClientOptions& options, const MarkOptions& mark) {
  if (!ValidRunId(mark.run)) {
    return Fail(Status::Error("run id '" + mark.run + "' must be a positive integer"));
  }
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  json body = {{"state", mark.state}};
  if (!mark.reason.empty()) body["reason"] = mark.reason;
  auto run =
      client->Post("/api/v1/runs/" + mark.run + "/tasks/" + UrlEncode(mark.task) + "/mark", body);
  if (!run.ok()) return Fail(run.status());
  if (options.output == "json") {
    std::printf("%s\n", run->dump(2).c_str());
    return 0;
  }
  std::printf("run %s: task %s marked %s; the run is %s\n", mark.run.c_str(), mark.task.c_str(),
              mark.state.c_str(), Text(At(*run, "state")).c_str());
  return 0;
}

}  // namespace kiln::cli
