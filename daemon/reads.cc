// DaemonService's reads of attempts, logs and events, grids and old pipeline versions, and its
// health and metrics: the part of the facade that only looks.
#include <filesystem>

#include "config/pipeline_loader.h"
#include "daemon/log_files.h"
#include "daemon/loop_call.h"
#include "daemon/service.h"
#include "plugins/registry.h"

namespace kiln::daemon {

namespace {

// How long readiness and the metrics wait for the scheduler's loop.
constexpr std::chrono::seconds kLoopReadWait{5};

Status NoLoopAnswer() {
  return Status::Error(ErrorCode::kUnavailable,
                       "the scheduler has not answered for 5 s (it is very busy, or stuck)");
}

}  // namespace

// ---- attempts, logs, events ----

Result<std::vector<scheduler::AttemptRecord>> DaemonService::ListAttempts(RunId run,
                                                                          const std::string& task) {
  auto attempts = store_.ListAttempts(run, task);
  if (!attempts.ok() || !attempts->empty()) return attempts;
  // No attempt yet: tell an unknown run or task apart from one that has not started.
  auto record = GetRun(run);
  if (!record.ok()) return record.status();
  for (const auto& t : record->tasks) {
    if (t.task_id == task) return attempts;
  }
  return Status::Error(ErrorCode::kNotFound,
                       "run " + ToString(run) + " has no task '" + task + "'");
}

Result<std::vector<scheduler::AttemptRecord>> DaemonService::RunAttempts(RunId run) {
  return store_.RunAttempts(run);
}

Result<scheduler::MetricsPage> DaemonService::PipelineMetrics(
    const std::string& pipeline, const std::optional<std::string>& task,
    std::optional<RunId> before, int limit) {
  auto page = store_.PipelineMetrics(pipeline, task, before, limit);
  if (!page.ok() || !page->points.empty() || before) return page;
  // Nothing recorded: an unknown pipeline or task is an error, a known one has no metrics yet.
  if (!GetPipeline(pipeline).ok()) {
    return Status::Error(ErrorCode::kNotFound, "pipeline '" + pipeline + "' not found");
  }
  if (task) {
    if (Status s = CheckTaskOf(pipeline, *task); !s.ok()) return s;
  }
  return page;
}

Result<scheduler::LineageFile> DaemonService::Lineage(const scheduler::LineageQuery& query) {
  return store_.Lineage(query);
}

bool DaemonService::Declared(const std::string& name) {
  std::lock_guard lock(mu_);
  return pipelines_.count(name) != 0;
}

Result<dag::PipelinePtr> DaemonService::PipelineVersion(const std::string& name,
                                                        const std::optional<std::string>& version) {
  dag::PipelinePtr current;
  {
    std::lock_guard lock(mu_);
    auto it = pipelines_.find(name);
    // No longer loaded (its file deleted): a version its runs used is still drawn.
    if (it == pipelines_.end() && !version) {
      return Status::Error(ErrorCode::kNotFound, "no pipeline named '" + name + "'");
    }
    if (it != pipelines_.end()) current = it->second.entry.pipeline;
  }
  if (current && (!version || *version == current->spec.content_hash)) return current;
  if (!version) {
    return Status::Error(ErrorCode::kConflict,
                         "pipeline '" + name + "' has never loaded: its file has errors");
  }
  auto text = store_.PipelineSource(name, *version);
  if (text.status().code() == ErrorCode::kNotFound && !current) {
    return Status::Error(ErrorCode::kNotFound,
                         "no pipeline named '" + name + "' with version " + version->substr(0, 12));
  }
  if (!text.ok()) return text.status();
  const std::filesystem::path file =
      current ? current->spec.file : std::filesystem::path(name + "@" + version->substr(0, 12));
  config::LoadResult loaded = config::ParsePipeline(*text, file, plugins::Builtins());
  if (!loaded.pipeline) {
    return Status::Error(ErrorCode::kConflict, "pipeline '" + name + "' version " +
                                                   version->substr(0, 12) + " no longer loads");
  }
  return loaded.pipeline;
}

Result<scheduler::GridPage> DaemonService::Grid(const std::string& pipeline,
                                                std::optional<RunId> before, int limit) {
  auto page = store_.Grid(pipeline, before, limit);
  // No longer loaded (its file deleted): its runs are still shown while there are any.
  if (page.ok() && page->runs.empty() && !before && !Declared(pipeline)) {
    return Status::Error(ErrorCode::kNotFound, "no pipeline named '" + pipeline + "'");
  }
  return page;
}

Result<scheduler::LogChunk> DaemonService::ReadLog(RunId run, const std::string& task, int attempt,
                                                   uint64_t offset, size_t max_bytes) {
  auto record = store_.GetAttempt(run, task, attempt);
  if (!record.ok()) return record.status();
  scheduler::LogChunk chunk;
  chunk.offset = offset;
  // Whether it ended is read before the file: an ended attempt's log is complete.
  chunk.finished = record->state != "running";
  if (!record->worker.empty()) {
    // Run by a worker: its log is in the database, shipped as it grew.
    auto shipped =
        store_.ReadShippedLog(scheduler::AttemptKey{run, task, attempt}, offset, max_bytes);
    if (!shipped.ok()) return shipped.status();
    chunk.data = std::move(shipped->first);
    chunk.size = shipped->second;
    return chunk;
  }
  auto range = disk_.ReadLogRange(options_.logs_dir, record->log_path, offset, max_bytes);
  if (!range.ok()) return range.status();
  chunk.data = std::move(range->data);
  chunk.size = range->size;
  return chunk;
}

bool DaemonService::WaitForLog(RunId run, const std::string& task, int attempt, uint64_t offset,
                               std::chrono::milliseconds timeout) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
  }
  auto record = store_.GetAttempt(run, task, attempt);
  if (!record.ok() || record->state != "running") return true;
  const int64_t seen = events_.last_id();
  if (!record->worker.empty()) {
    const uint64_t generation = events_.log_generation();
    if (auto now = store_.ReadShippedLog(scheduler::AttemptKey{run, task, attempt}, 0, 0);
        now.ok() && now->second > offset) {
      return true;
    }
    return events_.WaitForShippedLogs(generation, seen, timeout);
  }
  bool closed = false;
  // Without a watch (no log folder yet) the attempt's events are what can change.
  if (!disk_.WaitForLogChange(options_.logs_dir, record->log_path, offset, timeout, &closed)) {
    return events_.WaitForEvents(seen, timeout);
  }
  // The writer closed the log: the attempt's end is being committed; its event follows.
  if (closed) return events_.WaitForEvents(seen, timeout);
  std::lock_guard lock(mu_);
  return !stopping_;
}

Result<int64_t> DaemonService::LastEventId() { return store_.LastEventId(); }

int64_t DaemonService::NewestEventSeen() { return events_.last_id(); }

Result<std::vector<scheduler::EventRecord>> DaemonService::ListEvents(
    const scheduler::EventFilter& filter) {
  return store_.ListEvents(filter);
}

bool DaemonService::WaitForEvents(int64_t after, std::chrono::milliseconds timeout) {
  return events_.WaitForEvents(after, timeout);
}

Status DaemonService::Ready() {
  {
    // First: once the lease keeper has seen the database go, starts wait for their commit
    // (LeaseClock), and the answer says so.
    std::lock_guard lock(mu_);
    if (!healthy_) {
      return Status::Error(ErrorCode::kUnavailable, "the daemon's lease cannot be renewed");
    }
  }
  Status ping = store_.Ping();
  if (!ping.ok()) return Status::Error(ErrorCode::kUnavailable, ping.message());
  auto failing = ReadOnLoop<std::optional<Instant>>(io_, kLoopReadWait,
                                                    [this] { return sched_.failing_since(); });
  if (!failing) return NoLoopAnswer();
  if (*failing) {
    return Status::Error(ErrorCode::kUnavailable, "state changes cannot be committed since " +
                                                      FormatRfc3339(**failing) +
                                                      "; they are kept and tried again");
  }
  return Status::Ok();
}

Result<scheduler::MetricsSnapshot> DaemonService::Metrics() {
  auto read = ReadOnLoop<scheduler::MetricsSnapshot>(io_, kLoopReadWait,
                                                     [this] { return sched_.Metrics(); });
  if (!read) return NoLoopAnswer();
  scheduler::MetricsSnapshot& m = *read;
  m.leader_term = options_.leadership ? options_.leadership->Term() : 0;
  if (options_.config_health) {
    m.config_reload_ok = options_.config_health->ok;
    m.config_loaded_at_s = options_.config_health->loaded_at_s;
  }
  return std::move(*read);
}

}  // namespace kiln::daemon
