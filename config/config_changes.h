// What a reload of kiln.toml changes in a running daemon: the keys whose new values take effect at
// once, and those whose new values wait for a restart (the running values stay). Pure.
#pragma once

#include <string>
#include <vector>

#include "config/daemon_config.h"

namespace kiln::config {

struct ConfigChanges {
  // Keys applied without a restart, in this order when they differ: "auth.tokens", "pools"
  // (with executor.max_parallel_tasks, which sizes "default" and bounds all pools), "notify"
  // (the [[notify]] tables), "public_url", "retention", "daemon.on_stop".
  std::vector<std::string> applied;
  // Keys that differ but are read only at start: "data_dir", "pipelines", "server.listen",
  // "database.url", "database.pg_bin_dir", "executor.log_cap", "executor.kill_grace",
  // "executor.allow_absolute_paths", "executor.run_as", "executor.run_uids", "executor.mode",
  // "executor.worker_pools", "scheduler.catchup_cap", "scheduler.clock_offset", "daemon.lease",
  // "secrets"; and "notify" when a webhook names a secret the running [secrets] lacks.
  std::vector<std::string> restart_needed;
  bool empty() const { return applied.empty() && restart_needed.empty(); }
};

// Compares the configuration a daemon runs with against one just read. Source positions are not
// compared: moving a table in the file changes nothing.
ConfigChanges DiffDaemonConfig(const DaemonConfig& running, const DaemonConfig& read);

// The keys the pools of `config` depend on: its [pools] and executor.max_parallel_tasks.
bool SamePools(const DaemonConfig& a, const DaemonConfig& b);

}  // namespace kiln::config
