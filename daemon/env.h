// The daemon's seams, after leveldb's Env: everything DaemonService does to the outside world
// goes through these interfaces, so that its logic (run lifecycle, schedules, reload, backfills,
// operator actions, event streams) is unit-tested with fakes, without a database, processes or
// a file system. The real ones: PgDaemonStore (PostgreSQL through a pool of connections),
// EventHub (LISTEN/NOTIFY), DiskFiles, scheduler::SystemClock.
//
// Thread safety: every implementation is thread-safe; the service calls them from HTTP threads,
// the fire timer's, the watcher's and the lease keeper's.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "config/pipeline_loader.h"
#include "scheduler/clock.h"
#include "store/database.h"

namespace kiln::daemon {

// The database, as the daemon uses it. Each method is store::Database's of the same name (see
// store/database.h for what it does and its errors), made on a connection of a pool; CreateRun
// groups concurrent calls into one commit.
class DaemonStore {
 public:
  virtual ~DaemonStore() = default;
  virtual Result<store::CreatedRun> CreateRun(const store::NewRun& run) = 0;
  virtual Result<scheduler::RunRecord> GetRun(RunId id) = 0;
  virtual Result<scheduler::RunPage> ListRuns(const scheduler::RunFilter& filter) = 0;
  virtual Result<std::vector<scheduler::RunRecord>> QueuedRuns(const std::string& pipeline) = 0;
  virtual Result<std::map<std::string, std::vector<std::pair<RunId, dag::RunState>>>> RecentRuns(
      int per_pipeline) = 0;
  virtual Result<scheduler::GridPage> Grid(const std::string& pipeline, std::optional<RunId> before,
                                           int limit) = 0;
  virtual Result<std::vector<scheduler::AttemptRecord>> RunAttempts(RunId id) = 0;
  virtual Result<bool> ClaimRun(RunId run, const std::string& owner) = 0;
  virtual Result<std::string> RequestCancel(RunId run, std::string_view actor,
                                            const std::string& reason) = 0;
  virtual Result<bool> CancelOrphanedRun(RunId run, std::string_view actor,
                                         const std::string& reason) = 0;
  virtual Result<scheduler::RunRecord> PrepareRetry(RunId run, std::span<const std::string> tasks,
                                                    std::string_view actor, int64_t* event_id,
                                                    const store::Reopen& reopen) = 0;
  virtual Result<scheduler::RunRecord> MarkTaskInEndedRun(
      RunId run, const std::string& task, dag::TaskState state, const std::string& reason,
      std::string_view actor,
      const std::function<dag::RunState(const scheduler::RunRecord&)>& outcome) = 0;
  virtual Status RecordEvent(std::string_view kind, RunId run, std::string_view actor,
                             const std::string& detail_json) = 0;
  virtual Status RecordPipelineEvent(std::string_view pipeline, std::string_view kind,
                                     std::string_view actor, const std::string& detail_json) = 0;
  virtual Result<std::map<std::string, bool>> PausedPipelines() = 0;
  virtual Status SetPaused(const std::string& pipeline, bool paused, std::string_view actor,
                           std::optional<bool> was) = 0;
  virtual Status AskReload(const std::string& asker) = 0;
  virtual Result<store::FireResult> FireSchedule(
      const std::string& pipeline, const std::string& version_hash, const std::string& source,
      const std::function<store::FireDecision(const store::ScheduleState&)>& decide,
      const std::optional<store::LeaderFence>& fence) = 0;
  virtual Result<std::map<std::string, store::ScheduleState>> ScheduleStates() = 0;
  virtual Result<std::pair<int64_t, int64_t>> CreateBackfill(
      const store::NewBackfill& backfill, std::span<const store::NewRun> runs) = 0;
  virtual Result<std::vector<RunId>> BackfillRuns(int64_t id) = 0;
  virtual Result<scheduler::BackfillRecord> GetBackfill(int64_t id) = 0;
  virtual Result<std::vector<scheduler::BackfillRecord>> ListBackfills(const std::string& pipeline,
                                                                       int limit) = 0;
  virtual Result<std::vector<RunId>> CancelBackfill(int64_t id, std::string_view actor) = 0;
  virtual Result<std::vector<scheduler::AttemptRecord>> ListAttempts(RunId id,
                                                                     std::string_view task) = 0;
  // A log a worker shipped (Database::ReadShippedLog): bytes from `offset`, and its size.
  virtual Result<std::pair<std::string, uint64_t>> ReadShippedLog(
      const scheduler::AttemptKey& /*key*/, uint64_t /*offset*/, size_t /*max_bytes*/) {
    return Status::Error(ErrorCode::kUnavailable, "logs shipped by workers cannot be read here");
  }
  virtual Result<scheduler::AttemptRecord> GetAttempt(RunId id, std::string_view task,
                                                      int attempt) = 0;
  virtual Result<scheduler::MetricsPage> PipelineMetrics(const std::string& pipeline,
                                                         const std::optional<std::string>& task,
                                                         std::optional<RunId> before,
                                                         int limit) = 0;
  virtual Result<scheduler::LineageFile> Lineage(const scheduler::LineageQuery& query) = 0;
  virtual Result<std::vector<scheduler::ApprovalRecord>> ListApprovals(int limit) = 0;
  virtual Result<std::vector<scheduler::DecisionRecord>> ListDecisions(RunId run) = 0;
  virtual Result<int64_t> InvalidateCache(const std::string& pipeline,
                                          const std::optional<std::string>& task,
                                          std::string_view actor) = 0;
  virtual Result<std::vector<store::PendingAsk>> PendingDriftAsks(Duration window,
                                                                  const std::string& owner) = 0;
  virtual Result<std::vector<store::PendingAsk>> PendingRegistrations(Duration window,
                                                                      const std::string& owner) = 0;
  virtual Result<store::Registered> RegisterModelVersion(
      const store::NewModelVersion& version,
      const std::function<bool(const std::optional<std::string>&)>& make_champion) = 0;
  virtual Result<std::vector<scheduler::ModelRecord>> ListModels() = 0;
  virtual Result<scheduler::ModelRecord> GetModel(const std::string& name) = 0;
  virtual Result<scheduler::ModelRecord> PromoteModel(const std::string& name, int version,
                                                      std::string_view actor) = 0;
  virtual Result<scheduler::ModelRecord> RollbackModel(const std::string& name,
                                                       std::string_view actor) = 0;
  virtual Result<std::vector<scheduler::LineageFile>> RunInputs(RunId run) = 0;
  virtual Result<std::vector<scheduler::EventRecord>> ListEvents(
      const scheduler::EventFilter& filter) = 0;
  virtual Result<int64_t> LastEventId() = 0;
  virtual Result<std::vector<store::ActiveRun>> ActiveRunsOf(const std::string& owner) = 0;
  virtual Result<std::vector<store::ActiveRun>> ActiveRuns(std::span<const RunId> runs) = 0;
  virtual Result<std::string> PipelineSource(const std::string& pipeline,
                                             const std::string& hash) = 0;
  virtual Status RecordLoaded(std::span<const store::LoadedVersion> versions) = 0;
  virtual Status ForgetLoadedFiles(std::span<const std::string> files) = 0;
  virtual Result<std::optional<store::LastLoaded>> LastLoadedVersion(const std::string& pipeline,
                                                                     const std::string& file) = 0;
  virtual Status Ping() = 0;
  // Opens the connections (so that the first requests do not pay for them) and starts what runs
  // on threads of its own. Stop: requests waiting get kUnavailable.
  virtual Status Start() = 0;
  virtual void Stop() = 0;
};

// Notifications of new events, by any process on the database.
class EventSource {
 public:
  virtual ~EventSource() = default;
  virtual void Start() = 0;
  // Wakes every waiter (they return false). Idempotent.
  virtual void Stop() = 0;
  // Blocks until an event with id > `after` may exist, `timeout` passes, or Stop(): false then.
  virtual bool WaitForEvents(int64_t after, std::chrono::milliseconds timeout) = 0;
  // The newest event id seen (0 before the first).
  virtual int64_t last_id() const = 0;
  // How many times logs shipped by workers grew ('kiln_logs'), and a wait for it to pass
  // `after` or for an event after `after_event`. Without workers: events only.
  virtual uint64_t log_generation() const { return 0; }
  virtual bool WaitForShippedLogs(uint64_t /*after*/, int64_t after_event,
                                  std::chrono::milliseconds timeout) {
    return WaitForEvents(after_event, timeout);
  }
};

// The file system: pipeline files and attempt logs.
class DaemonFiles {
 public:
  virtual ~DaemonFiles() = default;
  virtual config::LoadResult LoadPipelineFile(const std::filesystem::path& file) = 0;
  virtual Result<std::vector<std::filesystem::path>> ListPipelineFiles(
      const std::filesystem::path& dir) = 0;
  virtual bool IsRegularFile(const std::filesystem::path& file) = 0;
  // As daemon/log_files.h.
  struct LogRange {
    std::string data;
    uint64_t size = 0;
  };
  virtual Result<LogRange> ReadLogRange(const std::filesystem::path& root,
                                        const std::filesystem::path& file, uint64_t offset,
                                        size_t max_bytes) = 0;
  virtual bool WaitForLogChange(const std::filesystem::path& root,
                                const std::filesystem::path& file, uint64_t offset,
                                std::chrono::milliseconds timeout, bool* closed) = 0;
};

// What a DaemonService runs on. Not owned.
struct DaemonEnv {
  DaemonStore* store = nullptr;
  EventSource* events = nullptr;
  DaemonFiles* files = nullptr;
  scheduler::Clock* clock = nullptr;  // the wall clock (schedules add clock_offset to it)
};

// The real ones.
std::unique_ptr<DaemonStore> MakePgDaemonStore(const std::string& url);
std::unique_ptr<EventSource> MakeEventHub(const std::string& url);
// `secrets`: the names kiln.toml declares, for loading pipeline files.
std::unique_ptr<DaemonFiles> MakeDiskFiles(dag::SecretNames secrets);

}  // namespace kiln::daemon
