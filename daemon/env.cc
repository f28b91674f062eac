// The real seams of daemon/env.h: PostgreSQL through a pool (reads retry once on a lost
// connection), the event hub, the disk.
#include "daemon/env.h"

#include "daemon/db_pool.h"
#include "daemon/event_hub.h"
#include "daemon/log_files.h"
#include "daemon/run_creator.h"
#include "plugins/registry.h"

namespace kiln::daemon {

namespace {

// Database connections for API requests: enough to keep both cores of a small machine busy with
// short queries; more only adds contention.
constexpr int kPoolSize = 16;

using store::Database;

class PgDaemonStore final : public DaemonStore {
 public:
  explicit PgDaemonStore(const std::string& url)
      : pool_(url, DbPoolOptions{.max_connections = kPoolSize}), creator_(pool_) {}
  ~PgDaemonStore() override { creator_.Stop(); }

  Status Start() override {
    if (Status s = pool_.Warm(kPoolSize); !s.ok()) return s;
    creator_.Start();
    return Status::Ok();
  }
  void Stop() override { creator_.Stop(); }

  Result<store::CreatedRun> CreateRun(const store::NewRun& run) override {
    return creator_.Create(run);
  }
  Result<scheduler::RunRecord> GetRun(RunId id) override {
    return pool_.Read([&](Database& db) { return db.GetRun(id); });
  }
  Result<scheduler::RunPage> ListRuns(const scheduler::RunFilter& filter) override {
    return pool_.Read([&](Database& db) { return db.ListRuns(filter); });
  }
  Result<std::vector<scheduler::RunRecord>> QueuedRuns(const std::string& pipeline) override {
    return pool_.Read([&](Database& db) { return db.QueuedRuns(pipeline); });
  }
  Result<std::map<std::string, std::vector<std::pair<RunId, dag::RunState>>>> RecentRuns(
      int per_pipeline) override {
    return pool_.Read([&](Database& db) { return db.RecentRuns(per_pipeline); });
  }
  Result<scheduler::GridPage> Grid(const std::string& pipeline, std::optional<RunId> before,
                                   int limit) override {
    return pool_.Read([&](Database& db) { return db.Grid(pipeline, before, limit); });
  }
  Result<std::vector<scheduler::AttemptRecord>> RunAttempts(RunId id) override {
    return pool_.Read([&](Database& db) { return db.RunAttempts(id); });
  }
  Result<bool> ClaimRun(RunId run, const std::string& owner) override {
    return pool_.With([&](Database& db) { return db.ClaimRun(run, owner); });
  }
  Result<std::string> RequestCancel(RunId run, std::string_view actor,
                                    const std::string& reason) override {
    return pool_.With([&](Database& db) { return db.RequestCancel(run, actor, reason); });
  }
  Result<bool> CancelOrphanedRun(RunId run, std::string_view actor,
                                 const std::string& reason) override {
    return pool_.With([&](Database& db) { return db.CancelOrphanedRun(run, actor, reason); });
  }
  Result<scheduler::RunRecord> PrepareRetry(RunId run, std::span<const std::string> tasks,
                                            std::string_view actor, int64_t* event_id,
                                            const store::Reopen& reopen) override {
    return pool_.With(
        [&](Database& db) { return db.PrepareRetry(run, tasks, actor, event_id, reopen); });
  }
  Result<scheduler::RunRecord> MarkTaskInEndedRun(
      RunId run, const std::string& task, dag::TaskState state, const std::string& reason,
      std::string_view actor,
      const std::function<dag::RunState(const scheduler::RunRecord&)>& outcome) override {
    return pool_.With([&](Database& db) {
      return db.MarkTaskInEndedRun(run, task, state, reason, actor, outcome);
    });
  }
  Status RecordEvent(std::string_view kind, RunId run, std::string_view actor,
                     const std::string& detail_json) override {
    return pool_.With([&](Database& db) { return db.RecordEvent(kind, run, actor, detail_json); });
  }
  Status RecordPipelineEvent(std::string_view pipeline, std::string_view kind,
                             std::string_view actor, const std::string& detail_json) override {
    return pool_.With(
        [&](Database& db) { return db.RecordPipelineEvent(pipeline, kind, actor, detail_json); });
  }
  Result<std::map<std::string, bool>> PausedPipelines() override {
    return pool_.Read([&](Database& db) { return db.PausedPipelines(); });
  }
  Status SetPaused(const std::string& pipeline, bool paused, std::string_view actor,
                   std::optional<bool> was) override {
    return pool_.With([&](Database& db) { return db.SetPaused(pipeline, paused, actor, was); });
  }
  Status AskReload(const std::string& asker) override {
    return pool_.With([&](Database& db) { return db.AskReload(asker); });
  }
  Result<store::FireResult> FireSchedule(
      const std::string& pipeline, const std::string& version_hash, const std::string& source,
      const std::function<store::FireDecision(const store::ScheduleState&)>& decide,
      const std::optional<store::LeaderFence>& fence) override {
    return pool_.With([&](Database& db) {
      return db.FireSchedule(pipeline, version_hash, source, decide, fence);
    });
  }
  Result<std::map<std::string, store::ScheduleState>> ScheduleStates() override {
    return pool_.Read([&](Database& db) { return db.ScheduleStates(); });
  }
  Result<std::pair<int64_t, int64_t>> CreateBackfill(const store::NewBackfill& backfill,
                                                     std::span<const store::NewRun> runs) override {
    return pool_.With([&](Database& db) { return db.CreateBackfill(backfill, runs); });
  }
  Result<std::vector<RunId>> BackfillRuns(int64_t id) override {
    return pool_.Read([&](Database& db) { return db.BackfillRuns(id); });
  }
  Result<scheduler::BackfillRecord> GetBackfill(int64_t id) override {
    return pool_.Read([&](Database& db) { return db.GetBackfill(id); });
  }
  Result<std::vector<scheduler::BackfillRecord>> ListBackfills(const std::string& pipeline,
                                                               int limit) override {
    return pool_.Read([&](Database& db) { return db.ListBackfills(pipeline, limit); });
  }
  Result<std::vector<RunId>> CancelBackfill(int64_t id, std::string_view actor) override {
    return pool_.With([&](Database& db) { return db.CancelBackfill(id, actor); });
  }
  Result<std::vector<scheduler::AttemptRecord>> ListAttempts(RunId id,
                                                             std::string_view task) override {
    return pool_.Read([&](Database& db) { return db.ListAttempts(id, task); });
  }
  Result<std::pair<std::string, uint64_t>> ReadShippedLog(const scheduler::AttemptKey& key,
                                                          uint64_t offset,
                                                          size_t max_bytes) override {
    return pool_.Read([&](Database& db) { return db.ReadShippedLog(key, offset, max_bytes); });
  }
  Result<scheduler::AttemptRecord> GetAttempt(RunId id, std::string_view task,
                                              int attempt) override {
    return pool_.Read([&](Database& db) { return db.GetAttempt(id, task, attempt); });
  }
  Result<scheduler::MetricsPage> PipelineMetrics(const std::string& pipeline,
                                                 const std::optional<std::string>& task,
                                                 std::optional<RunId> before, int limit) override {
    return pool_.Read(
        [&](Database& db) { return db.PipelineMetrics(pipeline, task, before, limit); });
  }
  Result<scheduler::LineageFile> Lineage(const scheduler::LineageQuery& query) override {
    return pool_.Read([&](Database& db) { return db.Lineage(query); });
  }
  Result<std::vector<scheduler::ApprovalRecord>> ListApprovals(int limit) override {
    return pool_.Read([&](Database& db) { return db.ListApprovals(limit); });
  }
  Result<std::vector<scheduler::DecisionRecord>> ListDecisions(RunId run) override {
    return pool_.Read([&](Database& db) { return db.ListDecisions(run); });
  }
  Result<int64_t> InvalidateCache(const std::string& pipeline,
                                  const std::optional<std::string>& task,
                                  std::string_view actor) override {
    return pool_.With([&](Database& db) { return db.InvalidateCache(pipeline, task, actor); });
  }
  Result<std::vector<store::PendingAsk>> PendingDriftAsks(Duration window,
                                                          const std::string& owner) override {
    return pool_.Read([&](Database& db) { return db.PendingDriftAsks(window, owner); });
  }
  Result<std::vector<store::PendingAsk>> PendingRegistrations(Duration window,
                                                              const std::string& owner) override {
    return pool_.Read([&](Database& db) { return db.PendingRegistrations(window, owner); });
  }
  Result<store::Registered> RegisterModelVersion(
      const store::NewModelVersion& version,
      const std::function<bool(const std::optional<std::string>&)>& make_champion) override {
    return pool_.With(
        [&](Database& db) { return db.RegisterModelVersion(version, make_champion); });
  }
  Result<std::vector<scheduler::ModelRecord>> ListModels() override {
    return pool_.Read([&](Database& db) { return db.ListModels(); });
  }
  Result<scheduler::ModelRecord> GetModel(const std::string& name) override {
    return pool_.Read([&](Database& db) { return db.GetModel(name); });
  }
  Result<scheduler::ModelRecord> PromoteModel(const std::string& name, int version,
                                              std::string_view actor) override {
    return pool_.With([&](Database& db) { return db.PromoteModel(name, version, actor); });
  }
  Result<scheduler::ModelRecord> RollbackModel(const std::string& name,
                                               std::string_view actor) override {
    return pool_.With([&](Database& db) { return db.RollbackModel(name, actor); });
  }
  Result<std::vector<scheduler::LineageFile>> RunInputs(RunId run) override {
    return pool_.Read([&](Database& db) { return db.RunInputs(run); });
  }
  Result<std::vector<scheduler::EventRecord>> ListEvents(
      const scheduler::EventFilter& filter) override {
    return pool_.Read([&](Database& db) { return db.ListEvents(filter); });
  }
  Result<int64_t> LastEventId() override {
    return pool_.Read([&](Database& db) { return db.LastEventId(); });
  }
  Result<std::vector<store::ActiveRun>> ActiveRunsOf(const std::string& owner) override {
    return pool_.Read([&](Database& db) { return db.ActiveRunsOf(owner); });
  }
  Result<std::vector<store::ActiveRun>> ActiveRuns(std::span<const RunId> runs) override {
    return pool_.Read([&](Database& db) { return db.ActiveRuns(runs); });
  }
  Result<std::string> PipelineSource(const std::string& pipeline,
                                     const std::string& hash) override {
    return pool_.Read([&](Database& db) { return db.PipelineSource(pipeline, hash); });
  }
  Status RecordLoaded(std::span<const store::LoadedVersion> versions) override {
    return pool_.With([&](Database& db) { return db.RecordLoaded(versions); });
  }
  Status ForgetLoadedFiles(std::span<const std::string> files) override {
    return pool_.With([&](Database& db) { return db.ForgetLoadedFiles(files); });
  }
  Result<std::optional<store::LastLoaded>> LastLoadedVersion(const std::string& pipeline,
                                                             const std::string& file) override {
    return pool_.Read([&](Database& db) { return db.LastLoadedVersion(pipeline, file); });
  }
  Status Ping() override {
    return pool_.Read([&](Database& db) { return db.Ping(); });
  }

 private:
  DbPool pool_;
  RunCreator creator_;
};

class DiskFiles final : public DaemonFiles {
 public:
  explicit DiskFiles(dag::SecretNames secrets) : secrets_(std::move(secrets)) {}
  config::LoadResult LoadPipelineFile(const std::filesystem::path& file) override {
    return config::LoadPipelineFile(file, plugins::Builtins(), &secrets_);
  }
  Result<std::vector<std::filesystem::path>> ListPipelineFiles(
      const std::filesystem::path& dir) override {
    return config::ListPipelineFiles(dir);
  }
  bool IsRegularFile(const std::filesystem::path& file) override {
    std::error_code ec;
    return std::filesystem::is_regular_file(file, ec);
  }
  Result<LogRange> ReadLogRange(const std::filesystem::path& root,
                                const std::filesystem::path& file, uint64_t offset,
                                size_t max_bytes) override {
    auto range = daemon::ReadLogRange(root, file, offset, max_bytes);
    if (!range.ok()) return range.status();
    return LogRange{std::move(range->data), range->size};
  }
  bool WaitForLogChange(const std::filesystem::path& root, const std::filesystem::path& file,
                        uint64_t offset, std::chrono::milliseconds timeout, bool* closed) override {
    return daemon::WaitForLogChange(root, file, offset, timeout, closed);
  }

 private:
  const dag::SecretNames secrets_;
};

}  // namespace

std::unique_ptr<DaemonStore> MakePgDaemonStore(const std::string& url) {
  return std::make_unique<PgDaemonStore>(url);
}

std::unique_ptr<EventSource> MakeEventHub(const std::string& url) {
  return std::make_unique<EventHub>(url);
}

std::unique_ptr<DaemonFiles> MakeDiskFiles(dag::SecretNames secrets) {
  return std::make_unique<DiskFiles>(std::move(secrets));
}

}  // namespace kiln::daemon
