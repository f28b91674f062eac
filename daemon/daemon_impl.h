// Private to daemon/daemon.cc and daemon/config_reload.cc: the daemon process of `kiln serve`
// (daemon/daemon.h).
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/time.h"
#include "config/daemon_config.h"
#include "daemon/daemon.h"
#include "daemon/engine.h"
#include "daemon/env.h"
#include "daemon/foreign_attempts.h"
#include "daemon/lease_keeper.h"
#include "daemon/notifier.h"
#include "daemon/retention.h"
#include "daemon/runtime.h"
#include "daemon/service.h"
#include "daemon/supervision.h"
#include "daemon/tokens.h"
#include "executor/supervised_runner.h"
#include "scheduler/scheduler.h"
#include "web/server.h"

namespace kiln::daemon {

namespace asio = boost::asio;

// Now, in whole seconds since the epoch (for /metrics).
inline int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(NowUtc().time_since_epoch()).count();
}

// The API's tokens from kiln.toml's (roles checked).
Result<std::vector<web::Token>> ServerTokens(const std::vector<config::AuthToken>& tokens);

// The daemon from start to exit. Its parts, in the order they start:
//   the data folder's lock -> the database and the engine (store, scheduler, and the runner on
//   the supervisor, started when none runs) -> the lease -> the service with the pipelines
//   folder -> the runs of before (resumed) -> HTTP -> schedules and the folder's watch.
// SIGHUP, `kiln reload` and a reload asked by another daemon read kiln.toml and the pipelines
// folder again (ReloadConfig).
// Stopping (SIGINT, SIGTERM): no new requests, then the scheduler stops (leaving attempts to the
// supervisor, or cancelling them with on_stop = "cancel"), the last commit and acknowledgements,
// then the lease (given up when nothing is left to drive).
class Daemon {
 public:
  Daemon(const config::DaemonConfig& config, ConfigSource source)
      : cfg_(config), source_(std::move(source)), running_(config) {
    cancel_on_stop_ = config.on_stop == "cancel";
  }
  int Run();

 private:
  Status Open();
  Result<std::unique_ptr<scheduler::TaskRunner>> MakeRunner(asio::io_context& io,
                                                            const std::string& url);
  Status SetPoolSlots(const std::string& url, const std::map<std::string, int>& pools);
  void Announce(const std::string& base, const DaemonTokens& tokens, size_t total, size_t broken);
  void OnSignal();
  // Reads kiln.toml again and applies what may change while running (daemon/config_reload.cc):
  // DaemonServiceOptions::reload_config. Never on the loop thread: pools are changed there.
  Result<scheduler::ConfigReload> ReloadConfig();
  void ApplyChanges(const config::DaemonConfig& next, scheduler::ConfigReload& out);
  Status ApplyTokens(const config::DaemonConfig& next);
  Status ApplyPools(const config::DaemonConfig& next);
  // With workers, writes running_.pools to the database (pools_unwritten_ while that fails).
  Status WritePoolsForWorkers();

  // As read at start: what a reload cannot change is read from here.
  const config::DaemonConfig& cfg_;
  const ConfigSource source_;
  std::mutex reload_mu_;               // one reload at a time
  config::DaemonConfig running_;       // under reload_mu_: cfg_ with the reloads applied
  std::atomic<bool> cancel_on_stop_;   // daemon.on_stop, as reloaded
  std::atomic<bool> serving_ = false;  // from the first request on, until the stop begins
  bool pools_unwritten_ = false;       // under reload_mu_: see WritePoolsForWorkers
  std::shared_ptr<ConfigHealth> config_health_ = std::make_shared<ConfigHealth>();
  std::string listen_host_;
  std::filesystem::path data_dir_;
  std::string name_;
  std::unique_ptr<DataDirLock> lock_;
  std::unique_ptr<ForeignAttempts> foreign_;
  executor::SupervisedRunner* supervised_ = nullptr;
  // With workers: the supervised runner, under the runner that hands attempts out.
  std::unique_ptr<scheduler::TaskRunner> local_runner_;
  std::unique_ptr<Runtime> runtime_;
  // The service's seams (daemon/env.h), declared before it: they outlive it.
  std::unique_ptr<DaemonStore> store_;
  std::unique_ptr<EventSource> events_;
  std::unique_ptr<DaemonFiles> files_;
  scheduler::SystemClock clock_;
  std::unique_ptr<Notifier> notifier_;  // outlives service_, which tells it
  std::unique_ptr<DaemonService> service_;
  std::unique_ptr<LeaseKeeper> keeper_;
  std::shared_ptr<LeaseClock> lease_clock_;
  TaskUsers task_users_;  // whose rights tasks run with (and a gate's artifact is read with)
  std::unique_ptr<Retention> retention_;
  std::unique_ptr<web::Server> server_;
  std::thread http_;
  std::thread stopper_;
  scheduler::StopMode mode_ = scheduler::StopMode::kLeave;
};

}  // namespace kiln::daemon
