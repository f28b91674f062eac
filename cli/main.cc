// The composition root: parses the command line and runs one subcommand.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"kiln: a workflow orchestrator for machine-learning pipelines"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kiln 0.1.0");

  std::vector<std::string> validate_paths;
  auto* validate = app.add_subcommand("validate", "Check pipeline files (or folders of them)");
  validate->add_option("paths", validate_paths, "Pipeline files or folders")->required();

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
  run_cmd->add_option("-j,--parallel", run.parallel, "Tasks running at once")
      ->check(CLI::PositiveNumber);

  kiln::cli::ServeOptions serve;
  auto* serve_cmd = app.add_subcommand("serve", "Run the daemon");
  serve_cmd->add_option("--config", serve.config, "Daemon config file (kiln.toml)");
  serve_cmd->add_option("--pipelines", serve.pipelines, "Folder of pipeline files");
  serve_cmd->add_option("--listen", serve.listen, "HOST:PORT (default 127.0.0.1:8080)");
  serve_cmd->add_option("--data-dir", serve.data_dir, "Data folder (default .kiln)");

  CLI11_PARSE(app, argc, argv);

  if (*validate) {
    kiln::cli::UseHugePagesForHeap();
    return kiln::cli::Validate(validate_paths);
  }
  if (*graph) return kiln::cli::Graph(graph_file, graph_format);
  if (*run_cmd) return kiln::cli::Run(run);
  if (*serve_cmd) return kiln::cli::Serve(serve);
  return 2;
}
