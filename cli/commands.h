// The subcommands of `kiln`. Each returns the process exit code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::cli {

// `config`: kiln.toml, for the secret names pipelines may use (none declared without it).
int Validate(const std::vector<std::string>& paths, const std::string& config);
// Grows the heap in one step backed by transparent huge pages where the kernel offers them: a
// large pipeline's parse tree then costs a few dozen page faults instead of thousands.
void UseHugePagesForHeap();

int Graph(const std::string& file, const std::string& format);

struct RunOptions {
  std::string file;
  std::vector<std::string> params;   // name=value
  std::string output = "text";       // text | json
  std::string config;                // kiln.toml, optional
  std::string data_dir;              // overrides the config's data_dir when set
  int parallel = 0;                  // overrides max_parallel_tasks when > 0
  std::vector<std::string> approve;  // approval tasks to approve (the others are rejected)
};
int Run(const RunOptions& options);

struct ServeOptions {
  std::string config;
  std::string pipelines;
  std::string listen;
  std::string data_dir;
};
int Serve(const ServeOptions& options);

struct WorkerCmdOptions {
  std::string config;
  std::string database;
  std::vector<std::string> pools;
  int slots = 4;
  std::string name;
  std::string data_dir = ".kiln-worker";
  std::string lease = "30s";
};
// `kiln worker` (daemon/worker.h).
int Worker(const WorkerCmdOptions& options);

struct ScheduleNextOptions {
  std::string expression;  // a schedule, or empty with `pipeline`
  std::string tz;          // zone of `expression` (default UTC)
  std::string from;        // RFC 3339; default now
  int count = 5;
  std::string pipeline;  // a pipeline file whose schedule and timezone to use
};
// Prints the next `count` fires after `from`, one per line, RFC 3339 in the zone's offset.
int ScheduleNext(const ScheduleNextOptions& options);

struct SuperviseOptions {
  std::string data_dir;
  std::string daemon;
  int64_t lease_ms = 0;
  int ready_fd = -1;
  bool embedded = false;
  std::string pg_bin_dir;
};
// `kiln supervise`, started by `kiln serve` (daemon/supervision.h).
int Supervise(const SuperviseOptions& options);

// `kiln task KIND --options JSON`: one attempt of a task of a built-in kind (plugins/api.h),
// started by the executor; the exit code is the attempt's.
int Task(const std::string& kind, const std::string& options_json);

// `kiln token new --name NAME --role ROLE`: prints the token and the kiln.toml lines declaring it.
int TokenNew(const std::string& name, const std::string& role);

}  // namespace kiln::cli
