// `kiln serve`: the daemon. The main thread runs the scheduler's io_context; cpp-httplib serves
// on its own threads and reaches the scheduler only through DaemonService (posted handlers).
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "cli/commands.h"
#include "cli/engine.h"
#include "cli/runtime.h"
#include "common/log.h"
#include "config/pipeline_loader.h"
#include "scheduler/scheduler.h"
#include "scheduler/service.h"
#include "web/server.h"

namespace kiln::cli {

namespace asio = boost::asio;

namespace {

class DaemonService final : public scheduler::Service {
 public:
  DaemonService(asio::io_context& io, scheduler::Scheduler& sched, std::string url)
      : io_(io), sched_(sched), url_(std::move(url)) {}

  void SetPipelines(std::map<std::string, dag::PipelinePtr> pipelines) {
    std::lock_guard lock(mu_);
    pipelines_ = std::move(pipelines);
  }

  // From now on triggers are refused with 503.
  void StopAccepting() {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }

  Result<scheduler::TriggerResult> Trigger(const scheduler::TriggerRequest& request) override {
    dag::PipelinePtr pipeline;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return Status::Error(ErrorCode::kUnavailable, "the daemon is stopping");
      auto it = pipelines_.find(request.pipeline);
      if (it == pipelines_.end()) {
        return Status::Error(ErrorCode::kNotFound, "no pipeline named '" + request.pipeline + "'");
      }
      pipeline = it->second;
    }
    auto params = dag::ResolveParams(pipeline->spec, request.params);
    if (!params.ok()) return params.status();
    Instant now = NowUtc();
    store::NewRun row = MakeNewRun(*pipeline, *params, "manual", now);
    row.idempotency_key = request.idempotency_key;
    row.created_by = request.actor;
    row.note = request.note;
    auto created = WithConnection([&](store::Database& db) { return db.CreateRun(row); });
    if (!created.ok()) return created.status();
    if (!created->existing) {
      scheduler::RunContext ctx;
      ctx.id = created->id;
      ctx.pipeline = pipeline;
      ctx.params = std::move(params).value();
      ctx.logical_date = ctx.data_interval_start = ctx.data_interval_end = now;
      asio::post(io_, [this, ctx = std::move(ctx)]() mutable { sched_.AddRun(std::move(ctx)); });
    }
    return scheduler::TriggerResult{created->id, created->existing};
  }

  // Temporary until the v1 API is wired to the store and the scheduler.
  std::vector<scheduler::PipelineInfo> ListPipelines() override { return {}; }
  Result<scheduler::PipelineInfo> GetPipeline(const std::string&) override { return Todo(); }
  Status SetPaused(const std::string&, bool, const std::string&) override { return Todo(); }
  Result<scheduler::RunPage> ListRuns(const scheduler::RunFilter&) override { return Todo(); }
  Result<scheduler::RunRecord> GetRun(RunId) override { return Todo(); }
  Status CancelRun(RunId, const std::string&) override { return Todo(); }
  Result<scheduler::RetryResult> RetryRun(const scheduler::RetryRequest&) override {
    return Todo();
  }
  Status MarkTask(const scheduler::MarkRequest&) override { return Todo(); }
  Result<std::vector<scheduler::AttemptRecord>> ListAttempts(RunId, const std::string&) override {
    return Todo();
  }
  Result<scheduler::LogChunk> ReadLog(RunId, const std::string&, int, uint64_t, size_t) override {
    return Todo();
  }
  void WaitForLog(RunId, const std::string&, int, uint64_t, std::chrono::milliseconds) override {}
  Result<std::vector<scheduler::EventRecord>> ListEvents(const scheduler::EventFilter&) override {
    return Todo();
  }
  bool WaitForEvents(int64_t, std::chrono::milliseconds) override { return false; }
  Status Ready() override { return Status::Ok(); }
  scheduler::MetricsSnapshot Metrics() override { return {}; }
  static Status Todo() { return Status::Error(ErrorCode::kInternal, "not built yet"); }

 private:
  // One connection per concurrent request, kept for reuse.
  template <typename F>
  auto WithConnection(F&& f) -> decltype(f(std::declval<store::Database&>())) {
    std::unique_ptr<store::Database> db;
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        db = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    if (!db) {
      auto connected = store::Database::Connect(url_);
      if (!connected.ok()) return Status::Error(ErrorCode::kUnavailable, connected.message());
      db = std::move(connected).value();
    }
    auto result = f(*db);
    // A connection that failed is dropped; the next request connects afresh.
    if (!result.ok() && result.status().code() == ErrorCode::kUnavailable) return result;
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(db));
    return result;
  }

  asio::io_context& io_;
  scheduler::Scheduler& sched_;
  std::string url_;
  std::mutex mu_;
  bool stopping_ = false;
  std::map<std::string, dag::PipelinePtr> pipelines_;
  std::vector<std::unique_ptr<store::Database>> idle_;
};

std::map<std::string, dag::PipelinePtr> LoadPipelines(const std::filesystem::path& dir) {
  std::map<std::string, dag::PipelinePtr> out;
  if (dir.empty()) return out;
  for (auto& result : config::LoadPipelineDir(dir)) {
    for (const auto& d : result.diagnostics) log::Error(d.ToString());
    if (!result.pipeline) continue;
    const auto& name = result.pipeline->spec.name;
    if (out.count(name)) {
      log::Error(result.pipeline->spec.file.string() + ": pipeline.name: '" + name +
                 "' is already used by " + out[name]->spec.file.string() + "; file ignored");
      continue;
    }
    out.emplace(name, result.pipeline);
  }
  return out;
}

}  // namespace

int Serve(const ServeOptions& o) {
  auto cfg = LoadConfig(o.config);
  if (!cfg) return 1;
  if (!o.data_dir.empty()) cfg->data_dir = o.data_dir;
  if (!o.pipelines.empty()) cfg->pipelines_dir = o.pipelines;
  if (!o.listen.empty()) cfg->listen = o.listen;
  auto listen = web::ParseListen(cfg->listen);
  if (!listen.ok()) {
    std::cerr << "kiln: " << listen.message() << '\n';
    return 1;
  }

  auto pipelines = LoadPipelines(cfg->pipelines_dir);
  auto runtime = StartRuntime(*cfg);
  if (!runtime.ok()) {
    std::cerr << "kiln: " << runtime.message() << '\n';
    return 1;
  }
  asio::io_context& io = (*runtime)->engine->io;
  scheduler::Scheduler& sched = *(*runtime)->engine->scheduler;

  DaemonService service(io, sched, (*runtime)->database.url);
  service.SetPipelines(pipelines);
  web::ServerOptions web_options;
  web_options.host = listen->first;
  web_options.port = listen->second;
  web::Server server(service, web_options);
  if (Status s = server.Bind(); !s.ok()) {
    std::cerr << "kiln: " << s.message() << '\n';
    return 1;
  }
  std::thread http([&server] { server.Run(); });
  server.WaitUntilReady();

  std::string host =
      listen->first.find(':') != std::string::npos ? "[" + listen->first + "]" : listen->first;
  std::cout << "kiln: " << pipelines.size() << " pipelines loaded; serving on http://" << host
            << ":" << server.port() << "/" << std::endl;

  // Stopping, in this order: no new HTTP requests (and the ones in flight have posted their
  // runs), then every active run is cancelled and its processes stopped, then the last commit.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::steady_timer deadline(io);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    log::Info("stopping: active runs are cancelled");
    service.StopAccepting();
    server.Stop();
    http.join();
    asio::post(io, [&] { sched.Shutdown("the daemon stopped", [&] { io.stop(); }); });
    deadline.expires_after(cfg->kill_grace + std::chrono::seconds(10));
    deadline.async_wait([&](const boost::system::error_code& e) {
      if (e) return;
      log::Error("stopping: gave up waiting for the last tasks and commits");
      io.stop();
    });
  });
  auto guard = asio::make_work_guard(io);
  io.run();
  if (http.joinable()) {
    server.Stop();
    http.join();
  }
  return 0;
}

}  // namespace kiln::cli
