#include "config/config_changes.h"

#include "dag/template.h"

namespace kiln::config {
namespace {

bool SameTokens(const std::vector<AuthToken>& a, const std::vector<AuthToken>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].role != b[i].role || a[i].sha256 != b[i].sha256) {
      return false;
    }
  }
  return true;
}

bool SameNotify(const std::vector<dag::NotifySpec>& a, const std::vector<dag::NotifySpec>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].on != b[i].on || a[i].webhook != b[i].webhook || a[i].format != b[i].format) {
      return false;
    }
  }
  return true;
}

bool SameRetention(const RetentionConfig& a, const RetentionConfig& b) {
  return a.runs == b.runs && a.min_runs == b.min_runs && a.events == b.events &&
         a.interval == b.interval && a.batch == b.batch;
}

bool SameSecrets(const SecretRefs& a, const SecretRefs& b) {
  if (a.size() != b.size()) return false;
  for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
    if (i->first != j->first || i->second.from != j->second.from ||
        i->second.where != j->second.where) {
      return false;
    }
  }
  return true;
}

bool SameUids(const std::optional<UidRange>& a, const std::optional<UidRange>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (a->first == b->first && a->count == b->count);
}

}  // namespace

bool SamePools(const DaemonConfig& a, const DaemonConfig& b) {
  return a.pools == b.pools && a.max_parallel_tasks == b.max_parallel_tasks;
}

ConfigChanges DiffDaemonConfig(const DaemonConfig& running, const DaemonConfig& read) {
  ConfigChanges c;
  auto applied = [&](bool same, const char* key) {
    if (!same) c.applied.emplace_back(key);
  };
  applied(SameTokens(running.tokens, read.tokens), "auth.tokens");
  applied(SamePools(running, read), "pools");
  // A webhook may only name secrets the running [secrets] has: those are read at start.
  bool notify_waits = false;
  if (!SameNotify(running.notify, read.notify)) {
    for (const dag::NotifySpec& n : read.notify) {
      for (std::string_view name : dag::SecretNamesIn(n.webhook)) {
        notify_waits = notify_waits || running.secrets.find(name) == running.secrets.end();
      }
    }
    if (!notify_waits) c.applied.emplace_back("notify");
  }
  applied(running.public_url == read.public_url, "public_url");
  applied(SameRetention(running.retention, read.retention), "retention");
  applied(running.on_stop == read.on_stop, "daemon.on_stop");

  auto restart = [&](bool same, const char* key) {
    if (!same) c.restart_needed.emplace_back(key);
  };
  restart(running.data_dir == read.data_dir, "data_dir");
  restart(running.pipelines_dir == read.pipelines_dir, "pipelines");
  restart(running.listen == read.listen, "server.listen");
  restart(running.database_url == read.database_url, "database.url");
  restart(running.pg_bin_dir == read.pg_bin_dir, "database.pg_bin_dir");
  restart(running.log_cap_bytes == read.log_cap_bytes, "executor.log_cap");
  restart(running.kill_grace == read.kill_grace, "executor.kill_grace");
  restart(running.allow_absolute_paths == read.allow_absolute_paths,
          "executor.allow_absolute_paths");
  restart(running.run_as == read.run_as, "executor.run_as");
  restart(SameUids(running.run_uids, read.run_uids), "executor.run_uids");
  restart(running.executor_mode == read.executor_mode, "executor.mode");
  restart(running.worker_pools == read.worker_pools, "executor.worker_pools");
  restart(running.catchup_cap == read.catchup_cap, "scheduler.catchup_cap");
  restart(running.clock_offset == read.clock_offset, "scheduler.clock_offset");
  restart(running.lease == read.lease, "daemon.lease");
  restart(SameSecrets(running.secrets, read.secrets), "secrets");
  if (notify_waits) c.restart_needed.emplace_back("notify");
  return c;
}

}  // namespace kiln::config
