// The client subcommands: trigger, runs, show, cancel, retry, pause, unpause, reload (logs:
// cli/logs_cmd.cc). Each talks to a daemon over the v1 API; errors from the server are shown as one
// line.
#include "cli/client_cmds.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cli/client.h"
#include "cli/client_util.h"
#include "cli/progress.h"
#include "dag/params.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

// "1.25s" from two RFC 3339 times of the API, or "-".
std::string Duration(const json& ms) {
  if (!ms.is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fs", ms.get<double>() / 1000);
  return buf;
}

// Free text someone typed (a run's note, a decision's): no control character reaches the terminal.
std::string Printable(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return text;
}

void PrintRun(const json& run) {
  std::printf("run %s of %s: %s\n", Text(At(run, "id")).c_str(), Text(At(run, "pipeline")).c_str(),
              Text(At(run, "state")).c_str());
  const std::string by = Text(At(run, "created_by"));
  std::printf("trigger %s%s, created %s\n", Text(At(run, "trigger")).c_str(),
              by.empty() || by == "-" ? "" : (" by " + by).c_str(),
              Text(At(run, "created_at")).c_str());
  if (At(run, "triggered_by").is_number()) {
    std::printf("started by %s run %s\n",
                At(run, "trigger") == "drift" ? "the drift check of" : "the success of",
                Text(At(run, "triggered_by")).c_str());
  }
  if (At(run, "note").is_string() && !At(run, "note").get<std::string>().empty()) {
    std::printf("note: %s\n", Printable(Text(At(run, "note"))).c_str());
  }
  if (At(run, "trigger") == "schedule") {
    std::printf("logical date %s, data interval %s to %s\n", Text(At(run, "logical_date")).c_str(),
                Text(At(run, "data_interval_start")).c_str(),
                Text(At(run, "data_interval_end")).c_str());
  }
  std::printf("%-24s %-16s %8s %6s %10s\n", "TASK", "STATE", "ATTEMPTS", "EXIT", "DURATION");
  for (const auto& t : At(run, "tasks")) {
    std::string exit = At(t, "exit_code").is_number()
                           ? Text(At(t, "exit_code"))
                           : (At(t, "signal").is_number() ? "sig" + Text(At(t, "signal")) : "-");
    std::printf("%-24s %-16s %8d %6s %10s\n", Text(At(t, "id")).c_str(),
                Text(At(t, "state")).c_str(), AsInt(At(t, "attempt")), exit.c_str(),
                Duration(At(t, "duration_ms")).c_str());
  }
  const json& decisions = At(run, "decisions");
  if (!decisions.is_array() || decisions.empty()) return;
  std::printf("decisions:\n");
  for (const auto& d : decisions) {
    const std::string note = Printable(Text(At(d, "note")));
    std::printf("  %-22s %s by %s at %s%s\n", Text(At(d, "task")).c_str(),
                Text(At(d, "decision")).c_str(), Printable(Text(At(d, "by"))).c_str(),
                Text(At(d, "at")).c_str(), note.empty() ? "" : (": " + note).c_str());
  }
}

void PrintJson(const json& body) { std::cout << body.dump(2) << '\n'; }

int ExitCodeOf(const json& run) { return At(run, "state") == "success" ? 0 : 1; }

// Follows the run's events after event `after` until it ends, showing progress on stderr; then
// prints the run.
int WaitForRun(ApiClient& client, const ClientOptions& options, const json& created,
               int64_t after) {
  const std::string id = Text(At(created, "id"));
  Progress progress(stderr, isatty(STDERR_FILENO) != 0, At(created, "tasks").size());
  bool ended = false;
  // A daemon restarted meanwhile (its runs go on under their supervisor) is found again, and the
  // events are read on from the last one seen.
  Reconnect reconnect("run " + id + " goes on without this command");
  int64_t last = after;
  auto on_event = [&](const json& e) {
    reconnect.Reset();
    if (At(e, "id").is_number_integer()) last = At(e, "id").get<int64_t>();
    if (At(e, "kind") == "task_state" && At(e, "to").is_string()) {
      auto state = dag::ParseTaskState(At(e, "to").get<std::string>());
      if (state) {
        dag::TaskSpec task;
        task.id = Text(At(e, "task"));
        std::string reason;
        if (At(e, "detail").is_object() && At(e, "detail").contains("reason")) {
          reason = Text(At(e, "detail")["reason"]);
        }
        progress.OnTaskState(RunId{}, task, task.id, *state,
                             At(e, "attempt").is_number() ? At(e, "attempt").get<int>() : 0,
                             reason);
      }
    }
    if (At(e, "kind") == "run_state" && At(e, "to").is_string()) {
      auto state = dag::ParseRunState(At(e, "to").get<std::string>());
      if (state && dag::IsTerminal(*state)) {
        // An end replayed from history may be followed by a retry: it counts only if the
        // run is still ended now.
        // (A second client: this one is busy with the stream.)
        auto checker = ApiClient::Make(options);
        auto now =
            checker.ok() ? (*checker)->Get("/api/v1/runs/" + id) : Result<json>(checker.status());
        if (now.ok() && At(*now, "state") != At(e, "to")) return true;
        progress.OnRunFinished(RunId{}, *state);
        ended = true;
        return false;
      }
    }
    return true;
  };
  for (;;) {
    Status s = client.Events("/api/v1/events?after=" + std::to_string(last) + "&run=" + id,
                             on_event, [&] { reconnect.Reset(); });
    if (ended) break;
    if (!reconnect.Again(s)) {
      if (!s.ok()) return Fail(s);
      return Fail(Status::Error("the event stream ended before run " + id + " did"));
    }
  }
  auto run = client.Get("/api/v1/runs/" + id);
  if (!run.ok()) return Fail(run.status());
  options.output == "json" ? PrintJson(*run) : PrintRun(*run);
  return ExitCodeOf(*run);
}

}  // namespace

int ClientTrigger(const ClientOptions& options, const TriggerOptions& trigger) {
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  json body = {{"params", json::object()}};
  for (const auto& assignment : trigger.params) {
    auto split = dag::SplitAssignment(assignment);
    if (!split.ok()) return Fail(split.status());
    body["params"][split->first] = split->second;
  }
  if (!trigger.key.empty()) body["idempotency_key"] = trigger.key;
  if (!trigger.note.empty()) body["note"] = trigger.note;
  int status = 0;
  auto run =
      client->Post("/api/v1/pipelines/" + UrlEncode(trigger.pipeline) + "/runs", body, &status);
  if (!run.ok()) return Fail(run.status());
  // What the run waits for, or that it is not new: said on stderr, as kiln run says its id.
  std::string why;
  if (status == 200) {
    why = " (an existing run: the key '" + trigger.key + "' started it at " +
          Text(At(*run, "created_at")) + ")";
  } else if (At(*run, "state") == "queued") {
    auto pipeline = client->Get("/api/v1/pipelines/" + UrlEncode(trigger.pipeline));
    if (pipeline.ok() && At(*pipeline, "paused") == true) {
      why = " (the pipeline is paused: the run waits until kiln unpause " + trigger.pipeline + ")";
    }
  }
  if (trigger.wait) {
    std::fprintf(stderr, "kiln: run %s of %s%s\n", Text(At(*run, "id")).c_str(),
                 Text(At(*run, "pipeline")).c_str(), why.c_str());
    return WaitForRun(*client, options, *run, 0);
  }
  if (options.output == "json") {
    PrintJson(*run);
  } else {
    std::printf("run %s of %s: %s%s\n", Text(At(*run, "id")).c_str(),
                Text(At(*run, "pipeline")).c_str(), Text(At(*run, "state")).c_str(), why.c_str());
  }
  return 0;
}

int ClientRuns(const ClientOptions& options, const RunsOptions& runs) {
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  std::string query = "?limit=" + std::to_string(runs.limit);
  if (!runs.pipeline.empty()) query += "&pipeline=" + UrlEncode(runs.pipeline);
  if (!runs.state.empty()) query += "&state=" + UrlEncode(runs.state);
  auto page = client->Get("/api/v1/runs" + query);
  if (!page.ok()) return Fail(page.status());
  if (options.output == "json") {
    PrintJson(*page);
    return 0;
  }
  std::printf("%-8s %-24s %-10s %-25s %-8s %s\n", "ID", "PIPELINE", "STATE", "CREATED", "TRIGGER",
              "BY");
  for (const auto& r : At(*page, "runs")) {
    std::printf("%-8s %-24s %-10s %-25s %-8s %s\n", Text(At(r, "id")).c_str(),
                Text(At(r, "pipeline")).c_str(), Text(At(r, "state")).c_str(),
                Text(At(r, "created_at")).c_str(), Text(At(r, "trigger")).c_str(),
                Text(At(r, "created_by")).c_str());
  }
  return 0;
}

int ClientShow(const ClientOptions& options, const std::string& run_id) {
  if (!ValidRunId(run_id)) {
    return Fail(Status::Error("run id '" + run_id + "' must be a positive integer"));
  }
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  auto run = client->Get("/api/v1/runs/" + run_id);
  if (!run.ok()) return Fail(run.status());
  // Who approved or rejected its approval tasks, and why. The run is shown without them when
  // they cannot be read: not found is a daemon older than the list (the run was found).
  auto decisions = client->Get("/api/v1/runs/" + run_id + "/decisions");
  if (decisions.ok()) {
    (*run)["decisions"] = At(*decisions, "decisions");
  } else if (decisions.status().code() != ErrorCode::kNotFound) {
    std::fprintf(stderr, "kiln: warning: the run's decisions could not be read: %s\n",
                 decisions.message().c_str());
  }
  options.output == "json" ? PrintJson(*run) : PrintRun(*run);
  return 0;
}

int ClientCancel(const ClientOptions& options, const std::string& run_id) {
  if (!ValidRunId(run_id)) {
    return Fail(Status::Error("run id '" + run_id + "' must be a positive integer"));
  }
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  auto run = client->Post("/api/v1/runs/" + run_id + "/cancel", json::object());
  if (!run.ok()) return Fail(run.status());
  if (options.output == "json") {
    PrintJson(*run);
  } else {
    std::printf("run %s: cancelling\n", run_id.c_str());
  }
  return 0;
}

int ClientRetry(const ClientOptions& options, const RetryOptions& retry) {
  if (!ValidRunId(retry.run)) {
    return Fail(Status::Error("run id '" + retry.run + "' must be a positive integer"));
  }
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  json body = retry.from.empty() ? json{{"mode", "failed"}} : json{{"from", retry.from}};
  auto result = client->Post("/api/v1/runs/" + retry.run + "/retry", body);
  if (!result.ok()) return Fail(result.status());
  if (retry.wait) {
    const json& from = At(*result, "event_id");
    return WaitForRun(*client, options, At(*result, "run"),
                      from.is_number() ? from.get<int64_t>() : 0);
  }
  if (options.output == "json") {
    PrintJson(*result);
    return 0;
  }
  std::string tasks;
  for (const auto& t : At(*result, "tasks")) tasks += (tasks.empty() ? "" : ", ") + Text(t);
  std::printf("run %s: running again: %s\n", retry.run.c_str(), tasks.c_str());
  return 0;
}

int ClientPause(const ClientOptions& options, const std::string& pipeline, bool pause) {
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  auto result = client->Post(
      "/api/v1/pipelines/" + UrlEncode(pipeline) + (pause ? "/pause" : "/unpause"), json::object());
  if (!result.ok()) return Fail(result.status());
  if (options.output == "json") {
    PrintJson(*result);
  } else {
    std::printf("pipeline %s: %s\n", pipeline.c_str(), pause ? "paused" : "unpaused");
  }
  return 0;
}

int ClientReload(const ClientOptions& options) {
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  auto result = client->Post("/api/v1/reload", json::object());
  if (!result.ok()) return Fail(result.status());
  if (options.output == "json") {
    PrintJson(*result);
    return 0;
  }
  std::printf("reload asked of every daemon on the database\n");
  // What the daemon asked did with its kiln.toml, when it changed anything (an older daemon's
  // answer has no "config").
  const json config = result->value("config", json::object());
  auto keys = [&](const char* name) {
    std::string out;
    for (const json& key : config.value(name, json::array())) {
      if (key.is_string()) out += (out.empty() ? "" : ", ") + key.get<std::string>();
    }
    return out;
  };
  const std::string applied = keys("applied"), restart = keys("restart_needed");
  const json refused = config.value("refused", json::array());
  if (applied.empty() && restart.empty() && refused.empty()) return 0;
  const json file = config.value("file", json());
  std::printf("kiln.toml reloaded here%s: %s\n",
              file.is_string() ? (" (" + file.get<std::string>() + ")").c_str() : "",
              applied.empty() ? "nothing applied" : (applied + " applied").c_str());
  if (!restart.empty()) {
    std::printf("  changed, but read only at start (restart kiln to apply): %s\n", restart.c_str());
  }
  for (const json& r : refused) {
    if (!r.is_object()) continue;
    std::printf("  not applied: %s: %s\n", r.value("key", "").c_str(), r.value("why", "").c_str());
  }
  return 0;
}

}  // namespace kiln::cli
