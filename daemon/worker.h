// `kiln worker`: runs attempts of its pools on any machine that reaches the database.
//
// A worker is a daemon without runs: it has a supervisor of its own (daemon/supervision.h, in
// its data folder), and instead of deciding starts it claims the attempts that daemons handed
// to workers (daemon/dispatch.h; Database::Claim, FOR UPDATE SKIP LOCKED, woken by
// 'kiln_dispatch'). A claimed attempt is held by the lease of the worker's supervisor, which runs
// it with the same process layer as local tasks (process groups, timeouts, rusage, cgroups) and
// kills it on its own when it cannot renew that lease (self-fencing). The worker ships the log
// to the database as it grows ('kiln_logs'), records the end (Database::RecordWorkerEnds, fenced
// by the attempt), and the daemon that drives the run decides it. It needs no inbound port.
//
// One thread runs the loop (the supervisor's connection); one thread does every database call
// (claims, ends, logs, the worker's lease row) and waits on the notifications, the log files'
// inotify and a wake-up descriptor at once.
//
// Stopping (SIGTERM, SIGINT): no more claims; the attempts under way finish and are recorded,
// then the worker exits. A second signal exits at once: the supervisor keeps the attempts and
// records their ends itself (their logs stop being shipped). A SIGKILL of the worker is the
// same; a SIGKILL of the worker and its supervisor (a machine that stops) leaves the attempts
// held by a lease nobody renews: once it expires the daemon declares them lost, and their
// retry policy runs them again, on another worker.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/time.h"
#include "config/daemon_config.h"

namespace kiln::daemon {

struct WorkerOptions {
  std::string database_url;
  std::vector<std::string> pools;  // the pools it runs
  int slots = 4;                   // pool slots at once (a task takes its `slots`)
  std::string name;                // default: <host>:<data folder> (DaemonName)
  std::filesystem::path data_dir;  // its supervisor, records and logs
  Duration lease = std::chrono::seconds(30);
  // kiln.toml's [executor] as this machine has it (--config; defaults otherwise): who tasks run
  // as here (run_as, run_uids: the worker's own choice, whatever the daemon's is), kill grace
  // and the log cap.
  config::DaemonConfig config = config::DefaultDaemonConfig();
};

// Checks the options (pool names, slots), takes the data folder, starts the supervisor and
// serves until stopped. Returns the exit code; errors are printed to stderr.
int RunWorker(WorkerOptions options);

}  // namespace kiln::daemon
