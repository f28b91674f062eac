// The daemon's life: load, serve, fire, stop. The main thread runs the scheduler's io_context;
// cpp-httplib serves on its own threads and reaches the scheduler only through DaemonService
// (posted handlers).
#include "daemon/daemon.h"

#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "config/pipeline_loader.h"
#include "daemon/engine.h"
#include "daemon/runtime.h"
#include "daemon/service.h"
#include "daemon/tokens.h"
#include "scheduler/scheduler.h"
#include "scheduler/service.h"
#include "web/server.h"

namespace kiln::daemon {

namespace asio = boost::asio;

namespace {

// The host part of a URL for `host` (IPv6 in brackets).
std::string UrlHost(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

Result<std::vector<web::Token>> ServerTokens(const std::vector<config::AuthToken>& tokens) {
  std::vector<web::Token> out;
  for (const auto& t : tokens) {
    auto role = web::ParseRole(t.role);
    if (!role) return Status::Error("auth.tokens: unknown role '" + t.role + "'");
    out.push_back(web::Token{t.name, *role, t.sha256});
  }
  return out;
}

}  // namespace

int Serve(const config::DaemonConfig& config) {
  const config::DaemonConfig* cfg = &config;
  auto listen = web::ParseListen(cfg->listen);
  if (!listen.ok()) {
    std::cerr << "kiln: " << listen.message() << '\n';
    return 1;
  }
  if (cfg->tokens.empty() && !IsLoopbackHost(listen->first)) {
    std::cerr << "kiln: refusing to listen on " << cfg->listen
              << " without API tokens: anyone who can reach it could run commands. Declare "
                 "[[auth.tokens]] in kiln.toml (kiln token new prints them) or listen on "
                 "127.0.0.1\n";
    return 1;
  }
  auto tokens = LoadDaemonTokens(*cfg);
  if (!tokens.ok()) {
    std::cerr << "kiln: " << tokens.message() << '\n';
    return 1;
  }
  auto server_tokens = ServerTokens(tokens->tokens);
  if (!server_tokens.ok()) {
    std::cerr << "kiln: " << server_tokens.message() << '\n';
    return 1;
  }

  auto pipelines = LoadPipelineEntries(cfg->pipelines_dir);
  const size_t total = pipelines.size();
  size_t broken = 0;
  for (const auto& [name, entry] : pipelines) broken += entry.pipeline ? 0 : 1;
  const std::string name = DaemonName(cfg->data_dir);
  auto runtime = StartRuntime(*cfg, name);
  if (!runtime.ok()) {
    std::cerr << "kiln: " << runtime.message() << '\n';
    return 1;
  }
  asio::io_context& io = (*runtime)->engine->io;
  scheduler::Scheduler& sched = *(*runtime)->engine->scheduler;

  DaemonServiceOptions service_options;
  service_options.logs_dir = MakeSchedulerOptions(*cfg, name).logs_dir;
  service_options.catchup_cap = cfg->catchup_cap;
  service_options.owner = name;
  service_options.clock_offset = cfg->clock_offset;
  DaemonService service(io, sched, (*runtime)->database.url, std::move(service_options));
  sched.SetObserver(&service);
  if (Status s = service.Start(std::move(pipelines)); !s.ok()) {
    std::cerr << "kiln: " << s.message() << '\n';
    return 1;
  }
  web::ServerOptions web_options;
  web_options.host = listen->first;
  web_options.port = listen->second;
  web_options.tokens = std::move(server_tokens).value();
  web::Server server(service, web_options);
  if (Status s = server.Bind(); !s.ok()) {
    std::cerr << "kiln: " << s.message() << '\n';
    return 1;
  }
  std::thread http([&server] { server.Run(); });
  server.WaitUntilReady();

  const std::string base =
      "http://" + UrlHost(listen->first) + ":" + std::to_string(server.port()) + "/";
  std::cout << "kiln: " << (total - broken) << " pipelines loaded"
            << (broken ? ", " + std::to_string(broken) + " with errors" : "") << "; serving on "
            << base << std::endl;
  if (tokens->fresh) {
    std::cout << "kiln: sign in: " << base << "?token=" << *tokens->fresh << "\n"
              << "kiln: this admin token is shown once; only its hash is kept in "
              << tokens->hash_file.string() << std::endl;
  } else if (!tokens->hash_file.empty()) {
    std::cout << "kiln: sign in with the admin token printed at first start (delete "
              << tokens->hash_file.string() << " to have a new one made)" << std::endl;
  }
  service.StartSchedules();
  if (!cfg->pipelines_dir.empty()) {
    if (Status s = service.WatchPipelines(cfg->pipelines_dir); !s.ok()) {
      log::Error(s.message() + "; changes to pipeline files need a restart");
    }
  }

  // Stopping, in this order: no new HTTP requests and every stream ended (on a thread of its own,
  // since requests in flight may still need the loop), then every active run is cancelled and its
  // processes stopped, then the last commit.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::steady_timer deadline(io);
  std::thread stopper;
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    log::Info("stopping: active runs are cancelled");
    stopper = std::thread([&] {
      service.StopAccepting();
      server.Stop();
      http.join();
      asio::post(io, [&] {
        sched.Shutdown(scheduler::StopMode::kCancel, "the daemon stopped", [&] { io.stop(); });
        deadline.expires_after(cfg->kill_grace + std::chrono::seconds(10));
        deadline.async_wait([&](const boost::system::error_code& e) {
          if (e) return;
          log::Error("stopping: gave up waiting for the last tasks and commits");
          io.stop();
        });
      });
    });
  });
  auto guard = asio::make_work_guard(io);
  io.run();
  if (stopper.joinable()) stopper.join();
  if (http.joinable()) {
    server.Stop();
    http.join();
  }
  return 0;
}

}  // namespace kiln::daemon
