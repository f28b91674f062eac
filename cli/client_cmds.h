// The client subcommands of `kiln` (talking to a daemon over HTTP). Each returns the exit code:
// 0 done, 1 an error (one line on stderr) or, with --wait, a run that did not succeed.
#pragma once

#include <string>
#include <vector>

#include "cli/client.h"

namespace kiln::cli {

struct TriggerOptions {
  std::string pipeline;
  std::vector<std::string> params;  // name=value
  std::string key;                  // idempotency key
  std::string note;
  bool wait = false;
};
int ClientTrigger(const ClientOptions& options, const TriggerOptions& trigger);

struct RunsOptions {
  std::string pipeline;
  std::string state;
  int limit = 20;
};
int ClientRuns(const ClientOptions& options, const RunsOptions& runs);

int ClientShow(const ClientOptions& options, const std::string& run);

struct LogsOptions {
  std::string run;
  std::string task;
  int attempt = 0;  // 0 = the latest
  bool follow = false;
};
int ClientLogs(const ClientOptions& options, const LogsOptions& logs);

int ClientCancel(const ClientOptions& options, const std::string& run);

struct RetryOptions {
  std::string run;
  std::string from;  // empty: re-run failed tasks
  bool wait = false;
};
int ClientRetry(const ClientOptions& options, const RetryOptions& retry);

int ClientPause(const ClientOptions& options, const std::string& pipeline, bool pause);
// `kiln reload`: every daemon on the database reads its kiln.toml and pipelines folder again;
// what the daemon asked did with its kiln.toml is printed when it changed anything.
int ClientReload(const ClientOptions& options);

struct BackfillOptions {
  std::string pipeline;
  std::string from;  // RFC 3339, or a date (its midnight UTC)
  std::string to;
  int max_active_runs = 0;  // 0: the pipeline's
  bool wait = false;
  std::string status;  // a backfill id to show instead
  std::string cancel;  // a backfill id to cancel instead
};
// Exit code with --wait: 0 when every run of the backfill succeeded.
int ClientBackfill(const ClientOptions& options, const BackfillOptions& backfill);

struct LineageOptions {
  std::string path;    // made absolute against the working folder
  std::string sha256;  // instead of a path
};
// Which run, params, pipeline version and inputs made a file, transitively.
int ClientLineage(const ClientOptions& options, const LineageOptions& lineage);

struct MetricsOptions {
  std::string pipeline;
  std::string task;  // only this task's
  int limit = 20;    // runs
};
// The metrics of a pipeline's recent runs, newest first.
int ClientMetrics(const ClientOptions& options, const MetricsOptions& metrics);

struct ModelsOptions {
  std::string action;  // "" (list, or one model), promote, rollback
  std::string name;
  int version = 0;  // promote
};
int ClientModels(const ClientOptions& options, const ModelsOptions& models);

struct DecideOptions {
  std::string run;
  std::string task;
  bool approve = true;  // false: reject
  std::string note;
};
// Approves or rejects an approval task that is waiting.
int ClientDecide(const ClientOptions& options, const DecideOptions& decide);
// The approval tasks waiting for a decision.
int ClientApprovals(const ClientOptions& options);

// `kiln pipelines`: what the daemons have loaded; exit 1 when a file has load errors.
int ClientPipelines(const ClientOptions& options);

struct MarkOptions {
  std::string run;
  std::string task;
  std::string state;  // success | failed
  std::string reason;
};
// `kiln mark RUN TASK STATE`: sets a task's state by hand (admin).
int ClientMark(const ClientOptions& options, const MarkOptions& mark);
// Forgets the cached results of a pipeline's tasks (of `task` only unless empty).
int ClientInvalidateCache(const ClientOptions& options, const std::string& pipeline,
                          const std::string& task);

}  // namespace kiln::cli
