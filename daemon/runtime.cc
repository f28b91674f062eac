#include "daemon/runtime.h"

#include <unistd.h>

#include <cstdlib>
#include <iostream>

namespace kiln::daemon {

Result<DatabaseHandle> OpenDatabase(const config::DaemonConfig& config) {
  DatabaseHandle handle;
  if (config.database_url.empty()) {
    store::EmbeddedOptions options;
    options.data_dir = std::filesystem::absolute(config.data_dir);
    options.pg_bin_dir = config.pg_bin_dir;
    auto embedded = store::EmbeddedPostgres::Start(options);
    if (!embedded.ok()) return embedded.status();
    handle.embedded = std::move(embedded).value();
    handle.url = handle.embedded->url();
  } else {
    handle.url = config.database_url;
  }
  auto db = store::Database::Connect(handle.url);
  if (!db.ok()) return db.status();
  handle.db = std::move(db).value();
  if (Status s = handle.db->Migrate(); !s.ok()) return s;
  return handle;
}

std::vector<std::pair<std::string, std::string>> BaseTaskEnv() {
  std::vector<std::pair<std::string, std::string>> env;
  for (const char* name : {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR"}) {
    if (const char* v = std::getenv(name)) env.emplace_back(name, v);
  }
  if (!std::getenv("PATH")) {
    env.emplace_back("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  }
  return env;
}

scheduler::SchedulerOptions MakeSchedulerOptions(const config::DaemonConfig& config,
                                                 const std::string& supervisor) {
  scheduler::SchedulerOptions options;
  options.pools = config.pools;
  options.max_parallel_tasks = config.max_parallel_tasks;
  options.lease_owner = supervisor;
  options.logs_dir = std::filesystem::absolute(config.data_dir) / "logs";
  options.runs_dir = std::filesystem::absolute(config.data_dir) / "runs";
  options.base_env = BaseTaskEnv();
  return options;
}

std::string DaemonName(const std::filesystem::path& data_dir) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::error_code ec;
  auto absolute = std::filesystem::absolute(data_dir, ec);
  return std::string(host) + ":" + (ec ? data_dir : absolute).lexically_normal().string();
}

std::string SupervisorName(const std::string& daemon) { return daemon + "/supervisor"; }

std::string ForegroundName(const std::filesystem::path& data_dir) {
  return DaemonName(data_dir) + ":run:" + std::to_string(getpid());
}

store::NewRun MakeNewRun(const dag::Pipeline& pipeline, const dag::ParamList& params,
                         const std::string& trigger, Instant now) {
  store::NewRun run;
  run.pipeline = pipeline.spec.name;
  run.version_hash = pipeline.spec.content_hash;
  run.source = pipeline.spec.source;
  run.trigger = trigger;
  run.logical_date = now;
  run.data_interval_start = now;
  run.data_interval_end = now;
  run.params = params;
  for (const auto& task : pipeline.spec.tasks) {
    run.tasks.push_back(store::NewRun::Task{task.id, task.pool, task.priority});
  }
  return run;
}

}  // namespace kiln::daemon
