// The daemon's own configuration file (kiln.toml): folders, listen address, database, executor
// limits and pools. Read once at start into plain values; environment overrides are applied by
// the caller (cli/), not here.
//
//   data_dir = ".kiln"              # relative paths are resolved against this file's folder
//   pipelines = "pipelines"
//   [server]    listen = "127.0.0.1:8080"
//   [database]  url = "postgresql://..."     pg_bin_dir = "/opt/pgsql/bin"
//   [executor]  max_parallel_tasks = 16      log_cap = "64MiB"     kill_grace = "10s"
//               allow_absolute_paths = false
//               mode = "local" | "workers" | "both"   worker_pools = ["gpu"]   (mode "both")
//   [pools]     gpu = 2                      # NAME = size (>= 1)
//   [daemon]    lease = "30s"                on_stop = "leave"
//   [retention] runs = "90d"  min_runs = 20  events = "30d"  interval = "1h"  batch = 500
//   [[auth.tokens]]  name = "ci"  role = "operator"  sha256 = "<64 hex digits>"
//   [secrets]   NAME = { file = "/etc/kiln/secrets/x" } | { env = "VAR" }   (config/secrets.h)
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/time.h"
#include "common/users.h"
#include "config/secrets.h"
#include "dag/spec.h"

namespace kiln::config {

// A bearer token of the API, declared by the SHA-256 of its text (the token itself is never
// stored). Names are unique; they are recorded as the actor of every change the token makes.
struct AuthToken {
  std::string name;    // ^[A-Za-z0-9_.@-]{1,64}$
  std::string role;    // viewer | operator | admin
  std::string sha256;  // 64 lowercase hex digits
};

// [retention]: what the daemon deletes, in small batches, every `interval`. A duration of 0 keeps
// forever. Runs that have not ended are never deleted, nor anything of them.
struct RetentionConfig {
  Duration runs = std::chrono::hours(24 * 90);    // ended runs, with their logs and run folders
  int min_runs = 20;                              // the newest runs of each pipeline always stay
  Duration events = std::chrono::hours(24 * 30);  // events of ended or deleted runs, and others
  Duration interval = std::chrono::hours(1);
  int batch = 500;  // rows per transaction
};

struct DaemonConfig {
  std::filesystem::path data_dir = ".kiln";
  std::filesystem::path pipelines_dir;  // empty = none
  std::string listen = "127.0.0.1:8080";
  std::string database_url;          // empty = embedded PostgreSQL under data_dir
  std::filesystem::path pg_bin_dir;  // empty = found automatically
  int max_parallel_tasks = 16;
  uint64_t log_cap_bytes = 64ull << 20;  // per attempt
  Duration kill_grace = std::chrono::seconds(10);
  // Tasks' inputs, outputs and metrics may name absolute paths outside the run folder and the
  // pipeline's folder (default: refused when the task ends).
  bool allow_absolute_paths = false;
  // Who tasks run as. Unset: `kiln serve` run as root uses "kiln-task", otherwise kiln's own user
  // (see daemon/runtime.h TaskUser).
  std::optional<std::string> run_as;
  // The user ids tasks take, one per run ("FIRST-LAST"; "" = none: every task runs as run_as).
  // Unset: see daemon/runtime.h TaskUser.
  std::optional<UidRange> run_uids;
  // Pool name -> slots. Always has "default"; unless the file sizes it, its size is
  // max_parallel_tasks.
  std::map<std::string, int> pools;
  // [executor] mode: where attempts run. "local": by the daemon's own supervisor; "workers": by
  // `kiln worker` processes, which claim them from the database; "both": the pools named in
  // worker_pools on workers, the others here.
  std::string executor_mode = "local";
  std::vector<std::string> worker_pools;
  std::vector<AuthToken> tokens;  // empty: `kiln serve` makes an admin token at first start
  // [scheduler]
  int catchup_cap = 100;  // at most this many catch-up runs per pipeline and check
  // Added to the clock that schedules are read with (and nothing else): for trying out catch-up
  // and clock steps without waiting for them. Zero in production.
  Duration clock_offset{0};
  // [daemon]
  // How long a daemon's lease (and its supervisor's) lasts without renewal: after a crash,
  // another daemon takes the runs over this long after the last renewal. Renewed every third.
  Duration lease = std::chrono::seconds(30);
  std::string on_stop = "leave";  // leave: running tasks go on (adopted at the next start); cancel
  RetentionConfig retention;
  // [secrets]: names pipelines may refer to; values are read when used.
  SecretRefs secrets;
  // [[notify]]: webhooks told about the runs of every pipeline (beside each pipeline's own).
  std::vector<dag::NotifySpec> notify;
  // [notify] (a table beside the array is not possible in TOML, so these are top-level keys):
  // the address run links in notifications point at; empty = http://<server.listen>/.
  std::string public_url;
};

struct DaemonConfigResult {
  DaemonConfig config;                       // defaults for anything missing or invalid
  std::vector<dag::Diagnostic> diagnostics;  // every problem, in file order; empty = valid
};

// The configuration used without a file: the defaults above, pools = {"default": 16}.
DaemonConfig DefaultDaemonConfig();

// Reads `file` (named in diagnostics as given). Unknown keys, wrong types, bad sizes and
// durations, out-of-range numbers are reported with file:line:col; an unreadable file is one
// diagnostic. Paths given in the file are made absolute against the file's folder; the default
// data_dir stays relative (to the working folder). An empty string for pipelines, database.url or
// database.pg_bin_dir means none / automatic, as when the key is absent. Never throws.
DaemonConfigResult LoadDaemonConfig(const std::filesystem::path& file);
// The same for `text` as if read from `file`.
DaemonConfigResult ParseDaemonConfig(std::string_view text, const std::filesystem::path& file);

// A SHA-256 as kiln keeps it: 64 lowercase hex digits.
bool IsSha256Hex(std::string_view hex);

// "64MiB" -> 67108864. Units B, KiB, MiB, GiB, TiB (powers of 1024) and KB, MB, GB, TB (powers of
// 1000); a plain number is bytes. The error says what is accepted.
Result<uint64_t> ParseByteSize(std::string_view text);

}  // namespace kiln::config
