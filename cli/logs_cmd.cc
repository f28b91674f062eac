// `kiln logs RUN TASK [--attempt N] [-f]`: a task's log, read or followed over the v1 API.
//
// Followed without --attempt, the command follows the task rather than one attempt: it waits
// for the task to start, follows its attempt, and when that attempt ends and the task goes on
// (a retry, an attempt lost with its worker), says so on stderr and follows the next one, until
// the task ends. Nothing is polled: waits are the run's event stream, and a log is one streamed
// response, taken up again from the bytes printed when the server ends an idle one.
#include <chrono>
#include <cstdio>
#include <optional>

#include "cli/client_cmds.h"
#include "cli/client_util.h"
#include "dag/spec.h"

namespace kiln::cli {

namespace {

struct TaskNow {
  int attempt = 0;       // its latest attempt, 0 before the first
  std::string state;     // as the API says it
  bool ended = false;    // a terminal state
  int64_t event_id = 0;  // the run's latest event, read with the rest
};

Result<TaskNow> ReadTask(ApiClient& client, const LogsOptions& logs) {
  auto run = client.Get("/api/v1/runs/" + logs.run);
  if (!run.ok()) return run.status();
  for (const auto& t : At(*run, "tasks")) {
    if (At(t, "id") != logs.task) continue;
    TaskNow now;
    now.attempt = AsInt(At(t, "attempt"));
    now.state = Text(At(t, "state"));
    auto state = dag::ParseTaskState(now.state);
    now.ended = state && dag::IsTerminal(*state);
    now.event_id =
        At(*run, "event_id").is_number_integer() ? At(*run, "event_id").get<int64_t>() : 0;
    return now;
  }
  return Status::Error("run " + logs.run + " has no task '" + logs.task + "'");
}

std::string LogPath(const LogsOptions& logs, int attempt) {
  return "/api/v1/runs/" + logs.run + "/tasks/" + UrlEncode(logs.task) + "/attempts/" +
         std::to_string(attempt) + "/log";
}

struct AttemptNow {
  std::string state;   // "running", "success", ...
  std::string reason;  // why it ended ("exit code 3", "lost: ..."), or ""
};

// Attempt `n` of the task as the API has it now, or an error.
Result<AttemptNow> AttemptState(ApiClient& client, const LogsOptions& logs, int n) {
  auto attempts =
      client.Get("/api/v1/runs/" + logs.run + "/tasks/" + UrlEncode(logs.task) + "/attempts");
  if (!attempts.ok()) return attempts.status();
  for (const auto& a : At(*attempts, "attempts")) {
    if (AsInt(At(a, "attempt")) != n) continue;
    return AttemptNow{Text(At(a, "state")),
                      At(a, "reason").is_string() ? At(a, "reason").get<std::string>() : ""};
  }
  return Status::Error("task '" + logs.task + "' of run " + logs.run + " has no attempt " +
                       std::to_string(n));
}

// Prints attempt `n`'s log from the start until the attempt ends. A daemon restarted meanwhile
// is found again and the log read on from the bytes printed.
Status FollowAttempt(ApiClient& client, const LogsOptions& logs, int n) {
  size_t printed = 0;
  Reconnect reconnect("the task goes on without this command");
  for (;;) {
    const size_t before = printed;
    const auto started = std::chrono::steady_clock::now();
    Status s = client.Stream(
        LogPath(logs, n) + "?follow=true&offset=" + std::to_string(printed),
        [&](std::string_view data) {
          std::fwrite(data.data(), 1, data.size(), stdout);
          std::fflush(stdout);
          printed += data.size();
          return true;
        },
        [&] { reconnect.Reset(); });
    // The stream ends when the attempt does, or after minutes without output, or with its daemon.
    auto state = s.ok() ? AttemptState(client, logs, n) : Result<AttemptNow>(s);
    if (state.ok() && state->state != "running") return Status::Ok();
    if (!state.ok()) {
      if (!reconnect.Again(state.status())) return state.status();
      continue;
    }
    // Still running and the daemon answers: the stream ended after minutes of silence (taken up
    // again at once), or at once with nothing (the daemon is stopping: after a pause).
    if (printed != before ||
        std::chrono::steady_clock::now() - started >= std::chrono::seconds(5)) {
      reconnect.Reset();
      continue;
    }
    reconnect.Again(Status::Ok());
  }
}

// Waits on the run's events after `after` for the task to start an attempt or to end.
// `alive` runs whenever the stream sends anything.
Status WaitForTask(ApiClient& client, const LogsOptions& logs, int64_t after,
                   const std::function<void()>& alive) {
  return client.Events(
      "/api/v1/events?after=" + std::to_string(after) + "&run=" + logs.run,
      [&logs](const json& e) {
        if (At(e, "kind") != "task_state" || At(e, "task") != logs.task) return true;
        const std::string to = Text(At(e, "to"));
        auto state = dag::ParseTaskState(to);
        return !(to == "running" || (state && dag::IsTerminal(*state)));
      },
      alive);
}

int FollowTask(ApiClient& client, const LogsOptions& logs) {
  int followed = 0;  // the last attempt followed to its end
  Reconnect reconnect("the task goes on without this command");
  for (;;) {
    auto now = ReadTask(client, logs);
    if (!now.ok()) {
      if (reconnect.Again(now.status())) continue;
      return Fail(now.status());
    }
    reconnect.Reset();
    if (now->attempt > followed) {
      if (followed > 0) {
        std::fprintf(stderr, "kiln: following attempt %d of %s\n", now->attempt, logs.task.c_str());
      }
      if (Status s = FollowAttempt(client, logs, now->attempt); !s.ok()) return Fail(s);
      followed = now->attempt;
      auto state = AttemptState(client, logs, followed);
      if (!state.ok()) return Fail(state.status());
      auto after = ReadTask(client, logs);
      if (!after.ok()) return Fail(after.status());
      if (after->ended && after->attempt == followed) return 0;
      // The task goes on: another attempt has started, or will.
      std::fprintf(stderr, "kiln: attempt %d of %s ended %s%s\n", followed, logs.task.c_str(),
                   state->state.c_str(),
                   state->reason.empty() ? "" : (" (" + state->reason + ")").c_str());
      continue;
    }
    if (now->ended) {
      if (followed > 0) return 0;
      return Fail(Status::Error("task '" + logs.task + "' of run " + logs.run + " ended " +
                                now->state + " without an attempt: it has no log"));
    }
    // Not started yet (or its next attempt not yet): the events say when. A lost stream is
    // taken up again by the read above.
    Status s = WaitForTask(client, logs, now->event_id, [&] { reconnect.Reset(); });
    if (!s.ok() && !reconnect.Again(s)) return Fail(s);
  }
}

}  // namespace

int ClientLogs(const ClientOptions& options, const LogsOptions& logs) {
  if (!ValidRunId(logs.run)) {
    return Fail(Status::Error("run id '" + logs.run + "' must be a positive integer"));
  }
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  if (logs.follow && logs.attempt <= 0) return FollowTask(*client, logs);
  int attempt = logs.attempt;
  if (attempt <= 0) {
    auto now = ReadTask(*client, logs);
    if (!now.ok()) return Fail(now.status());
    attempt = now->attempt;
    if (attempt == 0 && now->ended) {
      return Fail(Status::Error("task '" + logs.task + "' of run " + logs.run + " ended " +
                                now->state + " without an attempt: it has no log"));
    }
    if (attempt == 0) {
      return Fail(Status::Error("task '" + logs.task + "' of run " + logs.run +
                                " has not started yet (kiln logs -f waits for it)"));
    }
  }
  if (logs.follow) {
    Status s = FollowAttempt(*client, logs, attempt);
    return s.ok() ? 0 : Fail(s);
  }
  Status s = client->Stream(LogPath(logs, attempt), [](std::string_view data) {
    std::fwrite(data.data(), 1, data.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  return s.ok() ? 0 : Fail(s);
}

}  // namespace kiln::cli
