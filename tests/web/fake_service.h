// A scheduler::Service for web tests: scripted results, a log of every call, and logs and events
// that a test can grow while a stream reads them. Thread-safe: the server calls it from its
// threads while the test mutates it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "scheduler/service.h"

namespace kiln::web::testing {

class FakeService final : public scheduler::Service {
 public:
  // Scripted results. Set them before the requests that read them.
  std::vector<scheduler::PipelineInfo> pipelines;
  std::map<int64_t, scheduler::RunRecord> runs;
  scheduler::TriggerResult trigger_result{RunId{12}, false, false, std::nullopt};
  scheduler::RunPage run_page;
  scheduler::RetryResult retry_result{RunId{12}, {"train", "evaluate"}};
  std::vector<scheduler::AttemptRecord> attempts;  // ListAttempts and RunAttempts
  scheduler::GridPage grid;
  scheduler::MetricsPage metrics_page;  // PipelineMetrics
  scheduler::LineageFile lineage;       // Lineage
  scheduler::ModelRecord model;         // the model registry's answers
  // PipelineVersion: these versions by content hash; none given: the pipeline's in `pipelines`.
  std::map<std::string, dag::PipelinePtr> versions;
  std::vector<scheduler::ApprovalRecord> approvals;
  std::vector<scheduler::DecisionRecord> decisions;
  scheduler::BackfillRecord backfill;  // what every backfill call returns
  scheduler::MetricsSnapshot metrics;
  scheduler::ConfigReload config_reload;
  Status ready = Status::Ok();
  // Method name ("Trigger", "GetRun", ...) -> the error it returns instead.
  std::map<std::string, Status> errors;

  // Every call but ListEvents and the waits, one line each, oldest first.
  std::vector<std::string> Calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  scheduler::RunFilter LastRunFilter() {
    std::lock_guard lock(mu_);
    return last_run_filter_;
  }

  // The log of run/task/attempt; waits see the change.
  void SetLog(int64_t run, const std::string& task, int attempt, std::string text, bool finished) {
    std::lock_guard lock(mu_);
    logs_[LogKey(run, task, attempt)] = {std::move(text), finished};
    changed_.notify_all();
  }
  void AppendLog(int64_t run, const std::string& task, int attempt, const std::string& text,
                 bool finished) {
    std::lock_guard lock(mu_);
    auto& log = logs_[LogKey(run, task, attempt)];
    log.first += text;
    log.second = finished;
    changed_.notify_all();
  }
  // Appends an event (ids must increase); waits see it.
  void AddEvent(scheduler::EventRecord event) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(event));
    changed_.notify_all();
  }
  // From now on every wait returns at once, and WaitForEvents returns false.
  void Stop() {
    std::lock_guard lock(mu_);
    stopping_ = true;
    changed_.notify_all();
  }

  std::vector<scheduler::PipelineInfo> ListPipelines() override {
    Record("ListPipelines");
    return pipelines;
  }
  Result<scheduler::PipelineInfo> GetPipeline(const std::string& name) override {
    Record("GetPipeline " + name);
    if (auto e = Error("GetPipeline")) return *e;
    for (const auto& p : pipelines) {
      if (p.name == name) return p;
    }
    return Status::Error(ErrorCode::kNotFound, "no pipeline named '" + name + "'");
  }
  Result<scheduler::ConfigReload> ReloadPipelines(const std::string& actor) override {
    Record("ReloadPipelines " + actor);
    if (auto e = Error("ReloadPipelines")) return *e;
    return config_reload;
  }
  Status SetPaused(const std::string& name, bool paused, const std::string& actor) override {
    Record("SetPaused " + name + " " + (paused ? "true" : "false") + " " + actor);
    if (auto e = Error("SetPaused")) return *e;
    for (auto& p : pipelines) {
      if (p.name == name) p.paused = paused;
    }
    return Status::Ok();
  }
  Result<scheduler::TriggerResult> Trigger(const scheduler::TriggerRequest& r) override {
    std::string line = "Trigger " + r.pipeline;
    for (const auto& [name, value] : r.params) line += " " + name + "=" + value;
    if (r.idempotency_key) line += " key=" + *r.idempotency_key;
    if (!r.note.empty()) line += " note=" + r.note;
    Record(line + " actor=" + r.actor);
    if (auto e = Error("Trigger")) return *e;
    return trigger_result;
  }
  Result<scheduler::RunPage> ListRuns(const scheduler::RunFilter& filter) override {
    {
      std::lock_guard lock(mu_);
      last_run_filter_ = filter;
    }
    Record("ListRuns");
    if (auto e = Error("ListRuns")) return *e;
    return run_page;
  }
  Result<scheduler::RunRecord> GetRun(RunId id) override {
    Record("GetRun " + ToString(id));
    if (auto e = Error("GetRun")) return *e;
    auto it = runs.find(Value(id));
    if (it == runs.end()) return Status::Error(ErrorCode::kNotFound, "no run " + ToString(id));
    return it->second;
  }
  Status CancelRun(RunId id, const std::string& actor) override {
    Record("CancelRun " + ToString(id) + " " + actor);
    if (auto e = Error("CancelRun")) return *e;
    return Status::Ok();
  }
  Result<scheduler::RetryResult> RetryRun(const scheduler::RetryRequest& r) override {
    Record("RetryRun " + ToString(r.run) + (r.failed ? " failed" : "") +
           (r.from_task ? " from=" + *r.from_task : "") + " " + r.actor);
    if (auto e = Error("RetryRun")) return *e;
    return retry_result;
  }
  Status MarkTask(const scheduler::MarkRequest& r) override {
    Record("MarkTask " + ToString(r.run) + " " + r.task + " " + std::string(dag::Name(r.state)) +
           " " + r.reason + " " + r.actor);
    if (auto e = Error("MarkTask")) return *e;
    return Status::Ok();
  }
  Status DecideApproval(const scheduler::ApprovalRequest& r) override {
    Record("DecideApproval " + ToString(r.run) + " " + r.task + " " +
           (r.approve ? "approve" : "reject") + " [" + r.note + "] " + r.actor);
    if (auto e = Error("DecideApproval")) return *e;
    return Status::Ok();
  }
  Result<std::vector<scheduler::ApprovalRecord>> ListApprovals() override {
    Record("ListApprovals");
    if (auto e = Error("ListApprovals")) return *e;
    return approvals;
  }
  Result<std::vector<scheduler::DecisionRecord>> ListDecisions(RunId run) override {
    Record("ListDecisions " + ToString(run));
    if (auto e = Error("ListDecisions")) return *e;
    return decisions;
  }
  Result<int64_t> InvalidateCache(const std::string& pipeline,
                                  const std::optional<std::string>& task,
                                  const std::string& actor) override {
    Record("InvalidateCache " + pipeline + " " + task.value_or("-") + " " + actor);
    if (auto e = Error("InvalidateCache")) return *e;
    return int64_t{3};
  }
  Result<dag::PipelinePtr> PipelineVersion(const std::string& name,
                                           const std::optional<std::string>& version) override {
    Record("PipelineVersion " + name + " " + version.value_or("-"));
    if (auto e = Error("PipelineVersion")) return *e;
    if (version) {
      if (auto it = versions.find(*version); it != versions.end()) return it->second;
      return Status::Error(ErrorCode::kNotFound, "pipeline '" + name + "' version " +
                                                     version->substr(0, 12) + " is not kept");
    }
    for (const auto& p : pipelines) {
      if (p.name == name && p.pipeline) return p.pipeline;
    }
    return Status::Error(ErrorCode::kNotFound, "no pipeline named '" + name + "'");
  }
  Result<scheduler::GridPage> Grid(const std::string& pipeline, std::optional<RunId> before,
                                   int limit) override {
    Record("Grid " + pipeline + " " + (before ? ToString(*before) : "-") + " " +
           std::to_string(limit));
    if (auto e = Error("Grid")) return *e;
    return grid;
  }
  Result<scheduler::MetricsPage> PipelineMetrics(const std::string& pipeline,
                                                 const std::optional<std::string>& task,
                                                 std::optional<RunId> before, int limit) override {
    Record("PipelineMetrics " + pipeline + " " + task.value_or("-") + " " +
           (before ? ToString(*before) : "-") + " " + std::to_string(limit));
    if (auto e = Error("PipelineMetrics")) return *e;
    return metrics_page;
  }
  Result<scheduler::LineageFile> Lineage(const scheduler::LineageQuery& query) override {
    Record("Lineage " + query.path.value_or("-") + " " + query.sha256.value_or("-"));
    if (auto e = Error("Lineage")) return *e;
    return lineage;
  }
  Result<std::vector<scheduler::ModelRecord>> ListModels() override {
    Record("ListModels");
    if (auto e = Error("ListModels")) return *e;
    return std::vector<scheduler::ModelRecord>{model};
  }
  Result<scheduler::ModelRecord> GetModel(const std::string& name) override {
    Record("GetModel " + name);
    if (auto e = Error("GetModel")) return *e;
    return model;
  }
  Result<scheduler::ModelRecord> PromoteModel(const std::string& name, int version,
                                              const std::string& actor) override {
    Record("PromoteModel " + name + " " + std::to_string(version) + " " + actor);
    if (auto e = Error("PromoteModel")) return *e;
    return model;
  }
  Result<scheduler::ModelRecord> RollbackModel(const std::string& name,
                                               const std::string& actor) override {
    Record("RollbackModel " + name + " " + actor);
    if (auto e = Error("RollbackModel")) return *e;
    return model;
  }
  Result<std::string> ModelCard(const std::string& name, int version) override {
    Record("ModelCard " + name + " " + std::to_string(version));
    if (auto e = Error("ModelCard")) return *e;
    return std::string("# " + name + ", version " + std::to_string(version) + "\n");
  }
  Result<std::vector<scheduler::AttemptRecord>> RunAttempts(RunId run) override {
    Record("RunAttempts " + ToString(run));
    if (auto e = Error("RunAttempts")) return *e;
    return attempts;
  }
  Result<std::vector<scheduler::AttemptRecord>> ListAttempts(RunId run,
                                                             const std::string& task) override {
    Record("ListAttempts " + ToString(run) + " " + task);
    if (auto e = Error("ListAttempts")) return *e;
    return attempts;
  }
  Result<scheduler::LogChunk> ReadLog(RunId run, const std::string& task, int attempt,
                                      uint64_t offset, size_t max_bytes) override {
    Record("ReadLog " + ToString(run) + " " + task + " " + std::to_string(attempt) + " " +
           std::to_string(offset) + " " + std::to_string(max_bytes));
    if (auto e = Error("ReadLog")) return *e;
    std::lock_guard lock(mu_);
    auto it = logs_.find(LogKey(Value(run), task, attempt));
    if (it == logs_.end()) {
      return Status::Error(ErrorCode::kNotFound, "task '" + task + "' of run " + ToString(run) +
                                                     " has no attempt " + std::to_string(attempt));
    }
    const auto& [text, finished] = it->second;
    scheduler::LogChunk chunk;
    chunk.offset = std::min<uint64_t>(offset, text.size());
    chunk.data = text.substr(chunk.offset, max_bytes);
    chunk.size = text.size();
    chunk.finished = finished;
    return chunk;
  }
  bool WaitForLog(RunId run, const std::string& task, int attempt, uint64_t offset,
                  std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, timeout, [&] {
      auto it = logs_.find(LogKey(Value(run), task, attempt));
      return stopping_ || it == logs_.end() || it->second.second ||
             it->second.first.size() > offset;
    });
    return !stopping_;
  }
  Result<std::vector<scheduler::EventRecord>> ListEvents(
      const scheduler::EventFilter& filter) override {
    std::lock_guard lock(mu_);
    ++list_events_calls_;
    std::vector<scheduler::EventRecord> out;
    for (const auto& e : events_) {
      if (static_cast<int>(out.size()) >= filter.limit) break;
      if (e.id <= filter.after) continue;
      if (filter.pipeline && e.pipeline != *filter.pipeline) continue;
      if (filter.run && e.run != filter.run) continue;
      out.push_back(e);
    }
    return out;
  }
  Result<int64_t> LastEventId() override {
    std::lock_guard lock(mu_);
    return events_.empty() ? int64_t{0} : events_.back().id;
  }
  int64_t NewestEventSeen() override { return LastEventId().value(); }
  bool WaitForEvents(int64_t after, std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, timeout,
                      [&] { return stopping_ || (!events_.empty() && events_.back().id > after); });
    return !stopping_;
  }
  int ListEventsCalls() {
    std::lock_guard lock(mu_);
    return list_events_calls_;
  }
  Result<scheduler::BackfillRecord> CreateBackfill(
      const scheduler::BackfillRequest& request) override {
    Record("CreateBackfill " + request.pipeline + " " + FormatRfc3339(request.from) + " " +
           FormatRfc3339(request.to) + " " +
           (request.max_active_runs ? std::to_string(*request.max_active_runs) : "-") + " " +
           request.actor);
    if (auto e = Error("CreateBackfill")) return *e;
    return backfill;
  }
  Result<std::vector<scheduler::BackfillRecord>> ListBackfills(const std::string& name) override {
    Record("ListBackfills " + name);
    if (auto e = Error("ListBackfills")) return *e;
    return std::vector<scheduler::BackfillRecord>{backfill};
  }
  Result<scheduler::BackfillRecord> GetBackfill(int64_t id) override {
    Record("GetBackfill " + std::to_string(id));
    if (auto e = Error("GetBackfill")) return *e;
    return backfill;
  }
  Result<scheduler::BackfillRecord> CancelBackfill(int64_t id, const std::string& actor) override {
    Record("CancelBackfill " + std::to_string(id) + " " + actor);
    if (auto e = Error("CancelBackfill")) return *e;
    return backfill;
  }
  Status Ready() override {
    Record("Ready");
    return ready;
  }
  Result<scheduler::MetricsSnapshot> Metrics() override {
    Record("Metrics");
    return metrics;
  }

 private:
  static std::string LogKey(int64_t run, const std::string& task, int attempt) {
    return std::to_string(run) + "/" + task + "/" + std::to_string(attempt);
  }
  void Record(std::string line) {
    std::lock_guard lock(mu_);
    calls_.push_back(std::move(line));
  }
  std::optional<Status> Error(const std::string& method) {
    auto it = errors.find(method);
    if (it == errors.end()) return std::nullopt;
    return it->second;
  }

  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::string> calls_;
  scheduler::RunFilter last_run_filter_;
  std::map<std::string, std::pair<std::string, bool>> logs_;  // text, finished
  std::vector<scheduler::EventRecord> events_;
  int list_events_calls_ = 0;
  bool stopping_ = false;
};

}  // namespace kiln::web::testing
