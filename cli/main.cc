// The composition root: parses the command line and runs one subcommand.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/client_cmds.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"kiln: a workflow orchestrator for machine-learning pipelines"};
  app.require_subcommand(1);
  // CLI11's PositiveNumber says "not in range 0.000000 to 1.797...e308" for 0.
  const CLI::Validator kAtLeastOne(
      [](std::string& text) -> std::string {
        long long n = 0;
        size_t used = 0;
        try {
          n = std::stoll(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != text.size() || n < 1 || n > 2147483647) {
          return "must be a whole number from 1 to 2147483647, not '" + text + "'";
        }
        return "";
      },
      "N >= 1");
  app.set_version_flag("--version", "kiln 0.1.0");

  std::vector<std::string> validate_paths;
  auto* validate = app.add_subcommand("validate", "Check pipeline files (or folders of them)");
  validate->add_option("paths", validate_paths, "Pipeline files or folders")->required();
  std::string validate_config;
  validate->add_option("--config", validate_config,
                       "Daemon config file (kiln.toml) declaring the [secrets] pipelines use");

  std::string graph_file, graph_format = "dot";
  auto* graph = app.add_subcommand("graph", "Print a pipeline's task graph");
  graph->add_option("file", graph_file, "Pipeline file")->required();
  graph->add_option("--format", graph_format, "dot or mermaid")
      ->check(CLI::IsMember({"dot", "mermaid"}));

  kiln::cli::RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "Run a pipeline once, to completion");
  run_cmd->add_option("file", run.file, "Pipeline file")->required();
  run_cmd->add_option("-p,--param", run.params, "Override a param: name=value (repeatable)");
  run_cmd->add_option("--output", run.output, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  run_cmd->add_option("--config", run.config, "Daemon config file (kiln.toml)");
  run_cmd->add_option("--data-dir", run.data_dir, "Data folder (default .kiln)");
  run_cmd->add_option("--approve", run.approve,
                      "Approve this approval task when it waits (repeatable); the others are "
                      "rejected");
  run_cmd->add_option("-j,--parallel", run.parallel, "Tasks running at once")->check(kAtLeastOne);

  kiln::cli::ServeOptions serve;
  auto* serve_cmd = app.add_subcommand("serve", "Run the daemon");
  serve_cmd->add_option("--config", serve.config, "Daemon config file (kiln.toml)");
  serve_cmd->add_option("--pipelines", serve.pipelines, "Folder of pipeline files");
  serve_cmd->add_option("--listen", serve.listen, "HOST:PORT (default 127.0.0.1:8080)");
  serve_cmd->add_option("--data-dir", serve.data_dir, "Data folder (default .kiln)");

  kiln::cli::WorkerCmdOptions worker;
  auto* worker_cmd = app.add_subcommand(
      "worker", "Run tasks of some pools on this machine, claimed from the database");
  worker_cmd->add_option("--config", worker.config,
                         "kiln.toml: [executor] run_as, run_uids, kill_grace, log_cap, and "
                         "[database] url");
  worker_cmd->add_option("--database", worker.database,
                         "PostgreSQL URL (default: $KILN_DATABASE_URL, which keeps a password "
                         "out of the process list)");
  worker_cmd->add_option("--pools", worker.pools, "Pools it runs, e.g. gpu,default")
      ->delimiter(',')
      ->required();
  worker_cmd->add_option("--slots", worker.slots, "Attempts at once (default 4)")
      ->check(kAtLeastOne);
  worker_cmd->add_option("--name", worker.name, "Its name (default HOST:DATA_DIR)");
  worker_cmd->add_option("--data-dir", worker.data_dir,
                         "Its folder: supervisor, logs (default .kiln-worker)");
  worker_cmd->add_option("--lease", worker.lease, "Its lease (default 30s)");

  kiln::cli::ScheduleNextOptions next;
  auto* schedule = app.add_subcommand("schedule", "Work out when schedules fire");
  schedule->require_subcommand(1);
  auto* schedule_next = schedule->add_subcommand(
      "next", "Print a schedule's next fire instants, RFC 3339 with the zone's offset");
  schedule_next->add_option("expression", next.expression,
                            "Cron expression, preset (@daily) or interval (\"every 15m\")");
  schedule_next->add_option("--tz", next.tz, "IANA time zone of the expression (default UTC)");
  schedule_next->add_option("--from", next.from, "Start after this RFC 3339 instant (default now)");
  schedule_next->add_option("--count", next.count, "How many instants (default 5)")
      ->check(CLI::Range(1, 10000));
  schedule_next->add_option("--pipeline", next.pipeline,
                            "A pipeline file: its schedule in its timezone");

  std::string token_name, token_role;
  auto* token = app.add_subcommand("token", "Manage API tokens");
  token->require_subcommand(1);
  auto* token_new = token->add_subcommand(
      "new", "Print a new random token and the kiln.toml lines that declare it");
  token_new->add_option("--name", token_name, "Name recorded with every change it makes")
      ->required();
  token_new->add_option("--role", token_role, "viewer, operator or admin")
      ->required()
      ->check(CLI::IsMember({"viewer", "operator", "admin"}));

  // Client commands: they talk to a running daemon over its API.
  kiln::cli::ClientOptions client;
  // `output`: whether the command has a JSON form (a log has none: it prints the log as it is).
  auto add_client = [&client](CLI::App* cmd, bool output = true) {
    cmd->add_option("--server", client.server,
                    "Daemon URL (default $KILN_SERVER or http://127.0.0.1:8080)");
    cmd->add_option("--token", client.token, "API token (default $KILN_TOKEN)");
    if (output) {
      cmd->add_option("--output", client.output, "text or json")
          ->check(CLI::IsMember({"text", "json"}));
    }
    return cmd;
  };
  kiln::cli::TriggerOptions trigger;
  auto* trigger_cmd =
      add_client(app.add_subcommand("trigger", "Start a run of a pipeline on the daemon"));
  trigger_cmd->add_option("pipeline", trigger.pipeline, "Pipeline name")->required();
  trigger_cmd->add_option("-p,--param", trigger.params, "name=value (repeatable)");
  trigger_cmd->add_option("--key", trigger.key,
                          "Idempotency key: the same key never starts a second run");
  trigger_cmd->add_option("--note", trigger.note, "A note kept with the run");
  trigger_cmd->add_flag("--wait", trigger.wait,
                        "Show progress until the run ends; exit 1 unless it succeeded");

  kiln::cli::RunsOptions runs;
  auto* runs_cmd = add_client(app.add_subcommand("runs", "List recent runs, newest first"));
  runs_cmd->add_option("pipeline", runs.pipeline, "Only runs of this pipeline");
  runs_cmd->add_option("--state", runs.state, "Only runs in this state");
  runs_cmd->add_option("--limit", runs.limit, "How many (1-100)")->check(CLI::Range(1, 100));

  std::string run_id;
  auto* show_cmd = add_client(app.add_subcommand("show", "Show a run and its tasks"));
  show_cmd->add_option("run", run_id, "Run id")->required();

  kiln::cli::LogsOptions logs;
  auto* logs_cmd = add_client(app.add_subcommand("logs", "Print a task's log"), /*output=*/false);
  logs_cmd->add_option("run", logs.run, "Run id")->required();
  logs_cmd->add_option("task", logs.task, "Task id")->required();
  logs_cmd->add_option("--attempt", logs.attempt, "Attempt number (default: the latest)")
      ->check(kAtLeastOne);
  logs_cmd->add_flag("-f,--follow", logs.follow,
                     "Keep printing as the log grows: waits for the task to start, and follows "
                     "its retries until it ends (with --attempt: until that attempt ends)");

  kiln::cli::MarkOptions mark;
  auto* mark_cmd = add_client(app.add_subcommand(
      "mark", "Set a task's state by hand, as Airflow's mark success/failed (admin)"));
  mark_cmd->add_option("run", mark.run, "Run id")->required();
  mark_cmd->add_option("task", mark.task, "Task id")->required();
  mark_cmd->add_option("state", mark.state, "success or failed")
      ->required()
      ->check(CLI::IsMember({"success", "failed"}));
  mark_cmd->add_option("--reason", mark.reason, "Why, kept with the mark");

  auto* pipelines_cmd = add_client(app.add_subcommand(
      "pipelines", "List the pipelines the daemon has loaded, paused ones and load errors"));

  auto* cancel_cmd = add_client(app.add_subcommand("cancel", "Cancel a run"));
  cancel_cmd->add_option("run", run_id, "Run id")->required();

  kiln::cli::RetryOptions retry;
  bool retry_failed = false;
  auto* retry_cmd = add_client(app.add_subcommand("retry", "Run an ended run's tasks again"));
  retry_cmd->add_option("run", retry.run, "Run id")->required();
  auto* failed_flag = retry_cmd->add_flag("--failed", retry_failed,
                                          "Re-run failed tasks and their downstream (the default)");
  retry_cmd
      ->add_option("--from", retry.from,
                   "Re-run this task (or one instance, 'train[3]') and its downstream")
      ->excludes(failed_flag);
  retry_cmd->add_flag("--wait", retry.wait, "Show progress until the run ends");

  std::string pipeline_name;
  auto* pause_cmd =
      add_client(app.add_subcommand("pause", "Stop a pipeline's schedule; triggered runs wait"));
  pause_cmd->add_option("pipeline", pipeline_name, "Pipeline name")->required();
  auto* unpause_cmd = add_client(app.add_subcommand("unpause", "Resume a paused pipeline"));
  unpause_cmd->add_option("pipeline", pipeline_name, "Pipeline name")->required();
  auto* reload_cmd = add_client(app.add_subcommand(
      "reload", "Have every daemon on the database read its kiln.toml and pipelines folder again"));

  kiln::cli::BackfillOptions backfill;
  auto* backfill_cmd = add_client(app.add_subcommand(
      "backfill", "Run a pipeline for every fire of its schedule in a range, oldest first"));
  backfill_cmd->add_option("pipeline", backfill.pipeline, "Pipeline name");
  backfill_cmd->add_option("--from", backfill.from, "First instant (RFC 3339, or a date)");
  backfill_cmd->add_option("--to", backfill.to, "Last instant, included (RFC 3339, or a date)");
  backfill_cmd
      ->add_option("--max-active-runs", backfill.max_active_runs,
                   "Runs of the backfill at once (default: the pipeline's)")
      ->check(CLI::Range(1, 1000));
  backfill_cmd->add_flag("--wait", backfill.wait,
                         "Show progress until every run ended; exit 1 unless all succeeded");
  backfill_cmd->add_option("--status", backfill.status, "Show the progress of a backfill");
  backfill_cmd->add_option("--cancel", backfill.cancel, "Cancel a backfill");

  kiln::cli::LineageOptions lineage;
  auto* lineage_cmd = add_client(
      app.add_subcommand("lineage", "Which run, params, pipeline version and inputs made a file"));
  auto* lineage_path = lineage_cmd->add_option("path", lineage.path, "The file (a path)");
  lineage_cmd->add_option("--sha256", lineage.sha256, "The file's content hash instead of a path")
      ->excludes(lineage_path);

  kiln::cli::MetricsOptions metrics;
  auto* metrics_cmd =
      add_client(app.add_subcommand("metrics", "The metrics a pipeline's runs recorded"));
  metrics_cmd->add_option("pipeline", metrics.pipeline, "Pipeline name")->required();
  metrics_cmd->add_option("--task", metrics.task, "Only this task's metrics");
  metrics_cmd->add_option("--limit", metrics.limit, "How many runs (1-100)")
      ->check(CLI::Range(1, 100));

  kiln::cli::ModelsOptions models;
  auto* models_cmd = add_client(app.add_subcommand(
      "models", "The model registry: models, a model's versions, promote, roll back"));
  models_cmd->add_option("name", models.name, "A model: its versions");
  auto* promote_cmd =
      add_client(models_cmd->add_subcommand("promote", "Make a version the model's champion"));
  promote_cmd->add_option("name", models.name, "Model name")->required();
  promote_cmd->add_option("version", models.version, "Version number")
      ->required()
      ->check(kAtLeastOne);
  auto* rollback_cmd = add_client(models_cmd->add_subcommand(
      "rollback", "Make the champion before the current one the champion again"));
  rollback_cmd->add_option("name", models.name, "Model name")->required();

  kiln::cli::DecideOptions decide;
  auto* approve_cmd = add_client(
      app.add_subcommand("approve", "Approve an approval task that is waiting: it succeeds"));
  auto* reject_cmd =
      add_client(app.add_subcommand("reject", "Reject an approval task that is waiting: it fails"));
  for (auto* cmd : {approve_cmd, reject_cmd}) {
    cmd->add_option("run", decide.run, "Run id")->required();
    cmd->add_option("task", decide.task, "Task id")->required();
    cmd->add_option("--note", decide.note, "Why (recorded with the decision)");
  }
  auto* approvals_cmd =
      add_client(app.add_subcommand("approvals", "The approval tasks waiting for a decision"));

  std::string cache_pipeline;
  std::string cache_task;
  auto* cache_cmd = app.add_subcommand("cache", "The result cache of tasks with cache = true");
  auto* invalidate_cmd = add_client(cache_cmd->add_subcommand(
      "invalidate", "Forget a pipeline's cached results: its tasks run again"));
  invalidate_cmd->add_option("pipeline", cache_pipeline, "Pipeline name")->required();
  invalidate_cmd->add_option("--task", cache_task, "Only this task's results");
  cache_cmd->require_subcommand(1);

  // Started by `kiln serve` for itself; hidden from the help.
  kiln::cli::SuperviseOptions supervise;
  auto* supervise_cmd = app.add_subcommand("supervise", "Supervise a daemon's task attempts");
  supervise_cmd->group("");
  supervise_cmd->add_option("--data-dir", supervise.data_dir)->required();
  supervise_cmd->add_option("--daemon", supervise.daemon)->required();
  supervise_cmd->add_option("--lease-ms", supervise.lease_ms)->required();
  supervise_cmd->add_option("--ready-fd", supervise.ready_fd)->required();
  supervise_cmd->add_flag("--embedded", supervise.embedded);
  supervise_cmd->add_option("--pg-bin-dir", supervise.pg_bin_dir);

  // Started by the executor for a task of a built-in kind; hidden from the help.
  std::string task_kind;
  std::string task_options;
  auto* task_cmd = app.add_subcommand("task", "Run one attempt of a task of a built-in kind");
  task_cmd->group("");
  task_cmd->add_option("kind", task_kind)->required();
  task_cmd->add_option("--options", task_options)->required();

  // An unknown command word is named, with the commands there are (CLI11 says only "A
  // subcommand is required").
  {
    CLI::App* level = &app;
    for (int i = 1; i < argc && argv[i][0] != '-'; ++i) {
      auto subs = level->get_subcommands([](CLI::App*) { return true; });
      // A word may also be a positional argument where no command is required (kiln models NAME).
      if (subs.empty() || level->get_require_subcommand_min() == 0) break;
      CLI::App* next = nullptr;
      std::string known;
      for (CLI::App* sub : subs) {
        if (sub->check_name(argv[i])) next = sub;
        known += (known.empty() ? "" : ", ") + sub->get_name();
      }
      if (next == nullptr) {
        std::cerr << "kiln: unknown command '" << argv[i] << "'"
                  << (level == &app ? "" : " of '" + level->get_name() + "'")
                  << " (commands: " << known << ")\n";
        return 2;
      }
      level = next;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and exit 0; every usage error is exit 2, one line on stderr.
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  if (*validate) {
    kiln::cli::UseHugePagesForHeap();
    return kiln::cli::Validate(validate_paths, validate_config);
  }
  if (*graph) return kiln::cli::Graph(graph_file, graph_format);
  if (*run_cmd) return kiln::cli::Run(run);
  if (*serve_cmd) return kiln::cli::Serve(serve);
  if (*supervise_cmd) return kiln::cli::Supervise(supervise);
  if (*worker_cmd) return kiln::cli::Worker(worker);
  if (*task_cmd) return kiln::cli::Task(task_kind, task_options);
  if (*schedule_next) return kiln::cli::ScheduleNext(next);
  if (*token_new) return kiln::cli::TokenNew(token_name, token_role);
  if (*trigger_cmd) return kiln::cli::ClientTrigger(client, trigger);
  if (*runs_cmd) return kiln::cli::ClientRuns(client, runs);
  if (*show_cmd) return kiln::cli::ClientShow(client, run_id);
  if (*logs_cmd) return kiln::cli::ClientLogs(client, logs);
  if (*cancel_cmd) return kiln::cli::ClientCancel(client, run_id);
  if (*mark_cmd) return kiln::cli::ClientMark(client, mark);
  if (*pipelines_cmd) return kiln::cli::ClientPipelines(client);
  if (*retry_cmd) return kiln::cli::ClientRetry(client, retry);
  if (*backfill_cmd) return kiln::cli::ClientBackfill(client, backfill);
  if (*pause_cmd) return kiln::cli::ClientPause(client, pipeline_name, true);
  if (*unpause_cmd) return kiln::cli::ClientPause(client, pipeline_name, false);
  if (*reload_cmd) return kiln::cli::ClientReload(client);
  if (*lineage_cmd) return kiln::cli::ClientLineage(client, lineage);
  if (*metrics_cmd) return kiln::cli::ClientMetrics(client, metrics);
  if (*promote_cmd) models.action = "promote";
  if (*rollback_cmd) models.action = "rollback";
  if (*models_cmd) return kiln::cli::ClientModels(client, models);
  if (*approve_cmd || *reject_cmd) {
    decide.approve = static_cast<bool>(*approve_cmd);
    return kiln::cli::ClientDecide(client, decide);
  }
  if (*approvals_cmd) return kiln::cli::ClientApprovals(client);
  if (*invalidate_cmd) return kiln::cli::ClientInvalidateCache(client, cache_pipeline, cache_task);
  return 2;
}
