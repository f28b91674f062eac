// The daemon's life: load, serve, fire, stop. The main thread runs the scheduler's io_context;
// the web front (web/server.h) serves on its own threads and reaches the scheduler only through
// DaemonService (posted handlers).
#include "daemon/daemon.h"

#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "config/pipeline_loader.h"
#include "daemon/daemon_impl.h"
#include "daemon/dispatch.h"
#include "daemon/engine.h"
#include "daemon/foreign_attempts.h"
#include "daemon/lease_keeper.h"
#include "daemon/retention.h"
#include "daemon/runtime.h"
#include "daemon/service.h"
#include "daemon/supervision.h"
#include "daemon/tokens.h"
#include "executor/supervised_runner.h"
#include "scheduler/scheduler.h"
#include "scheduler/service.h"
#include "web/server.h"

namespace kiln::daemon {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

// The host part of a URL for `host` (IPv6 in brackets).
std::string UrlHost(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// Where links to this daemon lead from elsewhere (notifications): listening on every address,
// the machine's name, not 0.0.0.0.
std::string LinkHost(const std::string& host) {
  if (host == "0.0.0.0" || host == "::" || host == "[::]") {
    char name[256] = {};
    if (::gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0') return name;
  }
  return UrlHost(host);
}

// A SIGHUP before the daemon serves: kept for the first reload (the default action would end the
// process; ignoring it would pass SIG_IGN on to every process started meanwhile).
std::atomic<bool> early_hangup = false;
static_assert(std::atomic<bool>::is_always_lock_free);  // set in a signal handler
extern "C" void OnEarlyHangup(int) { early_hangup = true; }

}  // namespace

Result<std::vector<web::Token>> ServerTokens(const std::vector<config::AuthToken>& tokens) {
  std::vector<web::Token> out;
  for (const auto& t : tokens) {
    auto role = web::ParseRole(t.role);
    if (!role) return Status::Error("auth.tokens: unknown role '" + t.role + "'");
    out.push_back(web::Token{t.name, *role, t.sha256});
  }
  return out;
}

Result<std::unique_ptr<scheduler::TaskRunner>> Daemon::MakeRunner(asio::io_context& io,
                                                                  const std::string& url) {
  SupervisionOptions supervision;
  supervision.data_dir = data_dir_;
  supervision.daemon = name_;
  supervision.database_url = url;
  supervision.lease = cfg_.lease;
  supervision.embedded = cfg_.database_url.empty();
  supervision.pg_bin_dir = cfg_.pg_bin_dir;
  foreign_ = std::make_unique<ForeignAttempts>(io);
  executor::SupervisedRunnerOptions options;
  options.dir = SupervisorDir(data_dir_);
  options.daemon = name_;
  options.log_cap_bytes = cfg_.log_cap_bytes;
  options.kill_grace = cfg_.kill_grace;
  options.spawn = [supervision] { return SpawnSupervisor(supervision); };
  // Launch while the start commits (docs/design.md), while this daemon surely holds its lease.
  options.early_starts = [clock = lease_clock_] { return clock->Held(); };
  options.adopt_foreign = [this](const scheduler::AdoptRequest& request,
                                 std::function<void(scheduler::AttemptOutcome)> on_exit) {
    foreign_->Watch(request, std::move(on_exit));
    if (keeper_) keeper_->Wake();
  };
  auto dialed = executor::Dial(options);
  if (!dialed.ok()) return dialed.status();
  if (dialed->welcome.supervisor != SupervisorName(name_)) {
    // Its attempts are recorded under its name: this daemon would record its own under another.
    ::close(dialed->fd);
    return Status::Error(ErrorCode::kConflict,
                         "the supervisor of " + options.dir.string() + " runs as '" +
                             dialed->welcome.supervisor + "', not '" + SupervisorName(name_) +
                             "' (the data folder or the host is named differently than when it "
                             "started): start kiln with the data folder as it was named then, or "
                             "wait until that supervisor has no attempts left and exits");
  }
  auto runner = std::make_unique<executor::SupervisedRunner>(io, std::move(options));
  runner->Attach(std::move(dialed).value());
  supervised_ = runner.get();
  if (cfg_.executor_mode == "local")
    return std::unique_ptr<scheduler::TaskRunner>(std::move(runner));
  // Attempts of worker pools are handed out through the database (daemon/dispatch.h).
  if (Status s = SetPoolSlots(url, cfg_.pools); !s.ok()) return s;
  DispatchRunner::Options dispatch;
  dispatch.pools.mode =
      cfg_.executor_mode == "workers" ? WorkerPools::Mode::kWorkers : WorkerPools::Mode::kBoth;
  dispatch.pools.pools.insert(cfg_.worker_pools.begin(), cfg_.worker_pools.end());
  dispatch.url = url;
  dispatch.supervisor = runner->supervisor();
  dispatch.kiln_exe = SelfExe();
  dispatch.kill_grace = cfg_.kill_grace;
  dispatch.log_cap_bytes = cfg_.log_cap_bytes;
  local_runner_ = std::move(runner);
  return std::unique_ptr<scheduler::TaskRunner>(
      std::make_unique<DispatchRunner>(io, *local_runner_, *foreign_, std::move(dispatch)));
}

// The pools' slots hold across every daemon and worker of the database: claims count against
// what the daemons wrote (the last one to start wins when their files differ).
Status Daemon::SetPoolSlots(const std::string& url, const std::map<std::string, int>& pools) {
  auto db = store::Database::Connect(url);
  if (!db.ok()) return db.status();
  return (*db)->SetPools(name_, pools);
}

Status Daemon::Open() {
  data_dir_ = fs::absolute(cfg_.data_dir).lexically_normal();
  std::error_code ec;
  fs::create_directories(data_dir_, ec);
  auto lock = DataDirLock::Take(data_dir_);
  if (!lock.ok()) return lock.status();
  lock_ = std::move(lock).value();
  name_ = DaemonName(data_dir_);
  auto task_user = TaskUser(cfg_, /*daemon=*/true);
  if (!task_user.ok()) return task_user.status();
  if (CurrentIdentity().uid == 0 && !task_user->user.switch_user) {
    log::Warn("tasks run as root (executor.run_as): they can read and change everything kiln has");
  } else if (task_user->uids.count > 0) {
    log::Info("tasks run as '" + task_user->user.name +
              "' with a user id of their run's own, from " + std::to_string(task_user->uids.first) +
              " on (" + std::to_string(task_user->uids.count) + " ids)");
  }
  task_users_ = *task_user;
  lease_clock_ = std::make_shared<LeaseClock>(cfg_.lease);
  auto runtime = StartRuntime(
      cfg_, name_, SupervisorName(name_), *task_user,
      [this](asio::io_context& io, const std::string& url) { return MakeRunner(io, url); });
  if (!runtime.ok()) return runtime.status();
  runtime_ = std::move(runtime).value();
  return Status::Ok();
}

void Daemon::Announce(const std::string& base, const DaemonTokens& tokens, size_t total,
                      size_t broken) {
  std::cout << "kiln: " << (total - broken) << " pipelines loaded"
            << (broken ? ", " + std::to_string(broken) + " with errors" : "") << "; serving on "
            << base << std::endl;
  if (tokens.fresh) {
    std::cout << "kiln: sign in: " << base << "?token=" << *tokens.fresh << "\n"
              << "kiln: this admin token is shown once; only its hash is kept in "
              << tokens.hash_file.string() << std::endl;
  } else if (!tokens.hash_file.empty()) {
    std::cout << "kiln: sign in with the admin token printed at first start (delete "
              << tokens.hash_file.string() << " to have a new one made)" << std::endl;
  }
}

void Daemon::OnSignal() {
  serving_ = false;  // a reload from now on changes nothing
  mode_ = cancel_on_stop_ ? scheduler::StopMode::kCancel : scheduler::StopMode::kLeave;
  log::Info(mode_ == scheduler::StopMode::kCancel
                ? "stopping: active runs are cancelled"
                : "stopping: running tasks go on; the next start adopts them");
  asio::io_context& io = runtime_->engine->io;
  // On a thread of its own, since requests in flight may still need the loop.
  // Another daemon fires the schedules from now on, not once this one has drained.
  keeper_->StopLeading();
  stopper_ = std::thread([this, &io] {
    service_->StopAccepting();
    server_->Stop();
    http_.join();
    asio::post(io, [this, &io] {
      scheduler::Scheduler& sched = *runtime_->engine->scheduler;
      auto deadline = std::make_shared<asio::steady_timer>(io);
      sched.Shutdown(mode_, "the daemon stopped", [this, &io, deadline] {
        // The last acknowledgements reach the supervisor before the loop ends.
        supervised_->Drain([&io, deadline] {
          deadline->cancel();
          io.stop();
        });
      });
      deadline->expires_after(cfg_.kill_grace + std::chrono::seconds(10));
      deadline->async_wait([&io](const boost::system::error_code& e) {
        if (e) return;
        log::Error("stopping: gave up waiting for the last tasks and commits");
        io.stop();
      });
    });
  });
}

int Daemon::Run() {
  struct sigaction hangup {};
  hangup.sa_handler = OnEarlyHangup;
  hangup.sa_flags = SA_RESTART;
  sigemptyset(&hangup.sa_mask);
  ::sigaction(SIGHUP, &hangup, nullptr);
  // The API holds up to 1,024 connections (web/server.h) besides the database's and the
  // logs': more than the usual soft limit of 1,024 descriptors.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  auto listen = web::ParseListen(cfg_.listen);
  if (!listen.ok()) {
    std::cerr << "kiln: " << listen.message() << '\n';
    return 1;
  }
  if (cfg_.tokens.empty() && !IsLoopbackHost(listen->first)) {
    std::cerr << "kiln: refusing to listen on " << cfg_.listen
              << " without API tokens: anyone who can reach it could run commands. Declare "
                 "[[auth.tokens]] in kiln.toml (kiln token new prints them) or listen on "
                 "127.0.0.1\n";
    return 1;
  }
  auto tokens = LoadDaemonTokens(cfg_);
  auto server_tokens = tokens.ok() ? ServerTokens(tokens->tokens) : tokens.status();
  if (!server_tokens.ok()) {
    std::cerr << "kiln: " << server_tokens.message() << '\n';
    return 1;
  }
  if (!cfg_.pipelines_dir.empty()) {
    // A folder that is not there is a mistyped path far more often than one still to come.
    std::error_code ec;
    if (!std::filesystem::is_directory(cfg_.pipelines_dir, ec)) {
      std::cerr << "kiln: the pipelines folder " << cfg_.pipelines_dir.string()
                << (std::filesystem::exists(cfg_.pipelines_dir, ec) ? " is not a folder"
                                                                    : " does not exist")
                << "; create it (an empty folder serves no pipelines yet) or name another with "
                   "--pipelines or pipelines = \"...\" in kiln.toml\n";
      return 1;
    }
  }
  if (cfg_.pipelines_dir.empty()) {
    std::cerr << "kiln: no pipelines folder was given (--pipelines DIR, or pipelines = \"DIR\" in "
                 "kiln.toml): no pipeline is loaded\n";
  }
  // Taken before the folder is read: what changes after it is loaded again once it is watched.
  const int64_t racy_from = RacyFrom(std::chrono::system_clock::now());
  const FolderStamps stamps = StampPipelineFiles(cfg_.pipelines_dir);
  auto pipelines = LoadPipelineEntries(cfg_.pipelines_dir, SecretNamesOf(cfg_));
  const size_t total = pipelines.size();
  size_t broken = 0;
  for (const auto& [name, entry] : pipelines) broken += entry.pipeline ? 0 : 1;
  if (Status s = Open(); !s.ok()) {
    std::cerr << "kiln: " << s.message() << '\n';
    return 1;
  }
  asio::io_context& io = runtime_->engine->io;
  scheduler::Scheduler& sched = *runtime_->engine->scheduler;
  const std::string& url = runtime_->database.url;
  // Caught from here on (delivered once the loop runs): a SIGTERM just after the announcement
  // stops the daemon as any other, instead of killing it with its database left running.
  asio::signal_set signals(io, SIGINT, SIGTERM);

  DaemonServiceOptions service_options;
  service_options.logs_dir = MakeSchedulerOptions(cfg_, name_).logs_dir;
  service_options.catchup_cap = cfg_.catchup_cap;
  service_options.owner = name_;
  service_options.clock_offset = cfg_.clock_offset;
  service_options.runs_dir = MakeSchedulerOptions(cfg_, name_).runs_dir;
  service_options.models_dir = data_dir_ / "models";
  service_options.task_user = task_users_.user;
  service_options.task_uids = task_users_.uids;
  service_options.champions = runtime_->champions;
  auto leadership = std::make_shared<Leadership>(name_);
  service_options.leadership = leadership;
  service_options.reload_config = [this] { return ReloadConfig(); };
  config_health_->loaded_at_s = NowSeconds();  // read by the command line just before
  service_options.config_health = config_health_;
  listen_host_ = listen->first;
  NotifierOptions notify;
  notify.database_url = url;
  notify.public_url = cfg_.public_url;
  notify.global = cfg_.notify;
  notify.secret = config::SecretReader(cfg_.secrets);
  notify.rules = [this](const std::string& pipeline) { return service_->NotifyRulesOf(pipeline); };
  notify.slas = [this] { return service_->Slas(); };
  notifier_ = std::make_unique<Notifier>(std::move(notify));
  service_options.notifier = notifier_.get();
  store_ = MakePgDaemonStore(url);
  events_ = MakeEventHub(url);
  files_ = MakeDiskFiles(SecretNamesOf(cfg_));
  service_ = std::make_unique<DaemonService>(
      io, sched, DaemonEnv{store_.get(), events_.get(), files_.get(), &clock_},
      std::move(service_options));
  sched.SetObserver(service_.get());
  DaemonService& service = *service_;
  LeaseKeeperHooks hooks;
  hooks.on_cancels = [&service](const std::vector<std::pair<RunId, std::string>>& cancels) {
    for (const auto& [run, reason] : cancels) service.OnCancelRequested(run, reason);
  };
  hooks.on_lapsed = [&service] { service.OnLapsed(); };
  hooks.on_taken = [&service](const store::Takeover& taken) { service.OnTaken(taken); };
  hooks.on_command = [&service](RunId run, const std::string& reason) {
    service.OnCancelRequested(run, reason);
  };
  hooks.on_tick = [this](store::Database& db) { foreign_->Check(db); };
  hooks.on_outcomes = [this](store::Database& db, const std::set<RunId>& runs) {
    foreign_->Check(db, &runs);
  };
  hooks.on_health = [&service](bool healthy) { service.SetHealthy(healthy); };
  hooks.on_leading = [&service](int64_t term) { service.OnLeading(term); };
  hooks.on_pipelines = [&service](const std::string& what) { service.OnPipelinesNotified(what); };
  keeper_ = std::make_unique<LeaseKeeper>(
      LeaseKeeperOptions{url, name_, cfg_.lease, true, leadership, lease_clock_}, std::move(hooks));
  if (Status s = keeper_->Start(); !s.ok()) {
    std::cerr << "kiln: " << s.message() << '\n';
    return 1;
  }
  if (Status s = service.Start(std::move(pipelines)); !s.ok()) {
    std::cerr << "kiln: " << s.message() << '\n';
    return 1;
  }
  if (Status s = service.Recover(); !s.ok()) {
    std::cerr << "kiln: " << s.message() << '\n';
    return 1;
  }
  web::ServerOptions web_options;
  web_options.host = listen->first;
  web_options.port = listen->second;
  web_options.tokens = std::move(server_tokens).value();
  server_ = std::make_unique<web::Server>(service, web_options);
  if (Status s = server_->Bind(); !s.ok()) {
    std::cerr << "kiln: " << s.message() << '\n';
    return 1;
  }
  // Before the server's thread: a failure here returns with nothing to join.
  if (Status s = notifier_->Start("http://" + LinkHost(listen->first) + ":" +
                                  std::to_string(server_->port()) + "/");
      !s.ok()) {
    std::cerr << "kiln: notifications: " << s.message() << '\n';
    return 1;
  }
  // The last step that can fail: a start that fails before keeps no token nobody was shown.
  if (Status s = SaveFreshToken(*tokens); !s.ok()) {
    std::cerr << "kiln: " << s.message() << '\n';
    return 1;
  }
  // Everything a reload changes exists before the first request: from the address printed on,
  // a reload through the API applies at once (pool sizes wait for the loop, which runs soon).
  const scheduler::SchedulerOptions folders = MakeSchedulerOptions(cfg_, name_);
  retention_ = std::make_unique<Retention>(cfg_.retention, url, folders.logs_dir, folders.runs_dir,
                                           [leadership] { return leadership->Term() >= 0; });
  // A reload asks the service to rescan this folder: known before any reload can come.
  service.SetPipelinesDir(cfg_.pipelines_dir);
  {
    std::lock_guard lock(reload_mu_);
    serving_ = true;
  }
  http_ = std::thread([this] { server_->Run(); });
  server_->WaitUntilReady();
  Announce("http://" + UrlHost(listen->first) + ":" + std::to_string(server_->port()) + "/",
           *tokens, total, broken);
  service.StartSchedules();
  retention_->Start();
  if (!cfg_.pipelines_dir.empty()) {
    if (Status s = service.WatchPipelines(cfg_.pipelines_dir); !s.ok()) {
      log::Error(s.message() + "; changes to pipeline files need a restart");
    }
    // Written while the daemon started, before the watch began: inotify did not see it.
    service.LoadChangedSinceStart(
        ChangedFiles(stamps, StampPipelineFiles(cfg_.pipelines_dir), racy_from));
  }

  signals.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) OnSignal();
  });
  // SIGHUP: kiln.toml and the pipelines folder again, on the schedules' thread (never here: the
  // pools are changed on this loop).
  asio::signal_set hangups(io, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_hangup =
      [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        log::Info("SIGHUP: reading kiln.toml and the pipelines folder again");
        service.ReloadHere("SIGHUP");
        hangups.async_wait(on_hangup);
      };
  hangups.async_wait(on_hangup);
  if (early_hangup.exchange(false)) service.ReloadHere("SIGHUP while the daemon started");
  auto guard = asio::make_work_guard(io);
  io.run();
  guard.reset();  // before the loop it guards is destroyed with the runtime, below
  if (stopper_.joinable()) stopper_.join();
  if (http_.joinable()) {
    server_->Stop();
    http_.join();
  }
  // The lease stays while runs are left to the next start (it takes them back at once).
  const bool left = mode_ == scheduler::StopMode::kLeave && sched.active_runs() > 0;
  retention_->Stop();
  keeper_->Stop(/*release=*/!left);
  notifier_->Stop();  // what is queued stays queued for the next start
  service_.reset();
  // With runs left to the supervisor, the embedded database stays up for it: it stops it once
  // it is done and no daemon holds the data folder. Otherwise the database stops with the last
  // kiln process that uses it, this one or the supervisor.
  if (left && runtime_->database.embedded) runtime_->database.embedded->KeepRunning();
  lock_.reset();
  runtime_.reset();
  return 0;
}

int Serve(const config::DaemonConfig& config, ConfigSource source) {
  return Daemon(config, std::move(source)).Run();
}

}  // namespace kiln::daemon
