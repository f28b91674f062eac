// A reload of kiln.toml while the daemon runs: what may change takes effect, the rest waits for
// a restart (config::DiffDaemonConfig, docs/configuration.md "Reloading kiln.toml").
#include <algorithm>

#include "common/log.h"
#include "common/text.h"
#include "config/config_changes.h"
#include "daemon/daemon_impl.h"
#include "daemon/loop_call.h"
#include "daemon/tokens.h"

namespace kiln::daemon {

Status Daemon::ApplyTokens(const config::DaemonConfig& next) {
  if (next.tokens.empty() && !IsLoopbackHost(listen_host_)) {
    return Status::Error(ErrorCode::kConflict,
                         "a daemon listening on " + cfg_.listen +
                             " needs [[auth.tokens]]: without them anyone who can reach it "
                             "could run commands");
  }
  config::DaemonConfig with = running_;
  with.tokens = next.tokens;
  auto tokens = LoadDaemonTokens(with);
  if (!tokens.ok()) return tokens.status();
  if (tokens->fresh) {
    // It would have to be shown, and only a start prints it.
    return Status::Error(ErrorCode::kConflict,
                         "without [[auth.tokens]] kiln uses the admin token made at its first "
                         "start, and none is kept in " +
                             tokens->hash_file.string() +
                             ": restart kiln to have one made and printed");
  }
  auto server_tokens = ServerTokens(tokens->tokens);
  if (!server_tokens.ok()) return server_tokens.status();
  if (Status set = server_->SetTokens(std::move(server_tokens).value()); !set.ok()) return set;
  running_.tokens = next.tokens;
  return Status::Ok();
}

Status Daemon::ApplyPools(const config::DaemonConfig& next) {
  // On the loop, which owns the scheduler's pools; all or nothing, so never after the wait gave
  // up (SetPools answers before it returns to the loop).
  scheduler::Scheduler& sched = *runtime_->engine->scheduler;
  const LoopAnswer set = CallOnLoop(
      runtime_->engine->io, std::chrono::seconds(10),
      [&sched, pools = next.pools, parallel = next.max_parallel_tasks](auto done) {
        done(sched.SetPools(pools, parallel));
      },
      /*finish_begun=*/true);
  if (set.state != LoopAnswer::State::kAnswered) {
    return Status::Error(ErrorCode::kUnavailable,
                         "the scheduler did not answer within 10 s (is the daemon stopping?)");
  }
  if (!set.status.ok()) return set.status;
  running_.pools = next.pools;
  running_.max_parallel_tasks = next.max_parallel_tasks;
  return WritePoolsForWorkers();
}

Status Daemon::WritePoolsForWorkers() {
  // Workers claim against the sizes in the database (the last daemon to write them wins).
  pools_unwritten_ = cfg_.executor_mode != "local";
  if (!pools_unwritten_) return Status::Ok();
  if (Status written = SetPoolSlots(runtime_->database.url, running_.pools); !written.ok()) {
    return Status::Error(ErrorCode::kUnavailable,
                         "the new sizes hold for this daemon's own starts, but writing them for "
                         "the workers failed (the next reload writes them again): " +
                             written.message());
  }
  pools_unwritten_ = false;
  return Status::Ok();
}

// Applies each key of `next` that differs from running_ and may change now; fills `out`.
void Daemon::ApplyChanges(const config::DaemonConfig& next, scheduler::ConfigReload& out) {
  config::ConfigChanges changes = config::DiffDaemonConfig(running_, next);
  out.restart_needed = changes.restart_needed;
  // Sizes in effect that an earlier reload could not write for the workers: written now.
  std::vector<std::string>& keys = changes.applied;
  if (pools_unwritten_ && std::find(keys.begin(), keys.end(), "pools") == keys.end()) {
    auto at = keys.begin();
    if (at != keys.end() && *at == "auth.tokens") ++at;  // the diff's order
    keys.insert(at, "pools");
  }
  bool notify = false;
  for (const std::string& key : changes.applied) {
    Status applied;
    if (key == "auth.tokens") {
      applied = ApplyTokens(next);
    } else if (key == "pools") {
      applied = config::SamePools(running_, next) ? WritePoolsForWorkers() : ApplyPools(next);
    } else if (key == "notify") {
      running_.notify = next.notify;
      notify = true;
    } else if (key == "public_url") {
      running_.public_url = next.public_url;
      notify = true;
    } else if (key == "retention") {
      running_.retention = next.retention;
      retention_->SetConfig(next.retention);
    } else if (key == "daemon.on_stop") {
      running_.on_stop = next.on_stop;
      cancel_on_stop_ = next.on_stop == "cancel";
    }
    if (applied.ok()) {
      out.applied.push_back(key);
    } else {
      out.refused.emplace_back(key, applied.message());
    }
  }
  if (notify) notifier_->SetGlobal(running_.notify, running_.public_url);
}

Result<scheduler::ConfigReload> Daemon::ReloadConfig() {
  std::lock_guard lock(reload_mu_);
  scheduler::ConfigReload out;
  out.file = source_.file;
  // Set before the first request and the first reload asked through the database.
  if (!serving_) return Status::Error(ErrorCode::kUnavailable, "the daemon is stopping");
  if (!source_.read) return out;
  config::DaemonConfigResult read = source_.read();
  if (!read.diagnostics.empty()) {
    std::vector<std::string> errors;
    for (const dag::Diagnostic& d : read.diagnostics) errors.push_back(d.ToString());
    const std::string message =
        (source_.file.empty() ? "the configuration" : source_.file) +
        " has errors, so nothing was reloaded and the running configuration stays: " +
        Join(errors, "; ");
    log::Error(message);
    config_health_->ok = false;
    return Status::Error(ErrorCode::kConflict, message);
  }
  ApplyChanges(read.config, out);
  config_health_->ok = out.refused.empty();
  if (out.refused.empty()) config_health_->loaded_at_s = NowSeconds();
  if (!out.applied.empty())
    log::Info("kiln.toml reloaded: " + Join(out.applied, ", ") + " applied");
  for (const auto& [key, why] : out.refused) {
    log::Error("kiln.toml reloaded: " + key + " kept as it was: " + why);
  }
  if (!out.restart_needed.empty()) {
    log::Warn("kiln.toml reloaded: " + Join(out.restart_needed, ", ") +
              " changed, but take effect only when kiln restarts; the values it started with "
              "hold until then");
  }
  return out;
}

}  // namespace kiln::daemon
