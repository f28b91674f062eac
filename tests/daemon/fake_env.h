// The daemon's unit-test harness: an in-memory database that is both the daemon's store and the
// scheduler's (DaemonStore and StateStore, with the same fencing rules as PostgreSQL's), a runner
// whose attempts the test ends, in-memory pipeline files, a fixed clock, and a DaemonService on a
// real Scheduler with its loop on a thread. No database, no processes, no files.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "config/pipeline_loader.h"
#include "daemon/env.h"
#include "daemon/service.h"
#include "scheduler/scheduler.h"

namespace daemon_test {

namespace asio = boost::asio;
using namespace kiln;
using dag::RunState;
using dag::TaskState;
using scheduler::RunRecord;

inline const std::string kOwner = "host:/data";

class FakeDb final : public daemon::DaemonStore, public scheduler::StateStore {
 public:
  explicit FakeDb(asio::io_context& io) : io_(io) {}

  // ---- what tests set up and look at (lock mu) ----
  struct Row {
    RunRecord run;
    std::string owner;
    std::optional<std::string> cancel_reason;
    std::map<std::string, std::string> supervisors;  // task -> supervisor of its attempt
  };
  std::map<int64_t, Row> runs;
  std::vector<std::string> events;  // "kind pipeline run actor"
  std::map<std::string, store::ScheduleState> schedules;
  std::map<std::string, bool> paused;
  std::map<int64_t, scheduler::BackfillRecord> backfills;
  std::map<std::pair<std::string, std::string>, std::string> versions;
  std::map<std::string, store::LastLoaded> last_by_name, last_by_file;  // RecordLoaded
  bool down = false;  // every call fails as if the database were away
  // The live leader lease: a fenced FireSchedule commits only under it (kConflict otherwise).
  std::optional<store::LeaderFence> leader;
  int fences_refused = 0;
  mutable std::recursive_mutex mu;

  std::string State(int64_t id) {
    std::lock_guard lock(mu);
    return std::string(dag::Name(runs.at(id).run.state));
  }
  // "task:state:attempt,..." in pipeline order.
  std::string Tasks(int64_t id) {
    std::lock_guard lock(mu);
    std::string out;
    for (const auto& t : runs.at(id).run.tasks) {
      if (!out.empty()) out += ",";
      out += t.task_id + ":" + std::string(dag::Name(t.state)) + ":" + std::to_string(t.attempt);
    }
    return out;
  }
  std::vector<std::string> Events(const std::string& kind) {
    std::lock_guard lock(mu);
    std::vector<std::string> out;
    for (const auto& e : events) {
      if (e.starts_with(kind + " ")) out.push_back(e);
    }
    return out;
  }

  // ---- scheduler::StateStore ----
  void Commit(scheduler::Batch batch, std::function<void(scheduler::CommitResult)> done) override {
    scheduler::CommitResult result;
    {
      std::lock_guard lock(mu);
      if (down) {
        result.status = Status::Error(ErrorCode::kUnavailable, "database: down");
      } else {
        for (size_t i = 0; i < batch.runs.size(); ++i) {
          const auto& u = batch.runs[i];
          auto it = runs.find(Value(u.run));
          if (it == runs.end() || dag::IsTerminal(it->second.run.state) || !Mine(it->second)) {
            result.refused.push_back({true, i, false, ""});
            continue;
          }
          it->second.run.state = u.state;
          AddEvent("run_state", it->second.run.pipeline, u.run, kOwner);
        }
        for (size_t i = 0; i < batch.tasks.size(); ++i) {
          if (!Apply(batch.tasks[i])) result.refused.push_back({false, i, false, ""});
        }
      }
    }
    asio::post(io_, [done, result] { done(result); });
  }

  // ---- daemon::DaemonStore ----
  Status Start() override { return Status::Ok(); }
  void Stop() override {}
  Result<store::CreatedRun> CreateRun(const store::NewRun& n) override {
    std::lock_guard lock(mu);
    if (down) return Down();
    return Insert(n);
  }
  Result<RunRecord> GetRun(RunId id) override {
    std::lock_guard lock(mu);
    if (down) return Down();
    auto it = runs.find(Value(id));
    if (it == runs.end())
      return Status::Error(ErrorCode::kNotFound, "run " + ToString(id) + " not found");
    return it->second.run;
  }
  Result<scheduler::RunPage> ListRuns(const scheduler::RunFilter& f) override {
    std::lock_guard lock(mu);
    scheduler::RunPage page;
    for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
      if (f.pipeline && it->second.run.pipeline != *f.pipeline) continue;
      if (static_cast<int>(page.runs.size()) == f.limit) break;
      page.runs.push_back(it->second.run);
    }
    return page;
  }
  Result<std::vector<RunRecord>> QueuedRuns(const std::string& pipeline) override {
    std::lock_guard lock(mu);
    std::vector<RunRecord> out;
    for (const auto& [id, row] : runs) {
      if (row.run.pipeline == pipeline && row.run.state == RunState::kQueued)
        out.push_back(row.run);
    }
    return out;
  }
  Result<std::map<std::string, std::vector<std::pair<RunId, RunState>>>> RecentRuns(
      int per_pipeline) override {
    std::lock_guard lock(mu);
    std::map<std::string, std::vector<std::pair<RunId, RunState>>> out;
    for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
      auto& list = out[it->second.run.pipeline];
      if (list.size() < static_cast<size_t>(per_pipeline)) {
        list.emplace_back(it->second.run.id, it->second.run.state);
      }
    }
    return out;
  }
  // The runs of `pipeline` newest first with their tasks' letters; the paging is the store's.
  Result<scheduler::GridPage> Grid(const std::string& pipeline, std::optional<RunId>,
                                   int limit) override {
    std::lock_guard lock(mu);
    scheduler::GridPage page;
    for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
      const RunRecord& run = it->second.run;
      if (run.pipeline != pipeline || page.runs.size() == static_cast<size_t>(limit)) continue;
      scheduler::GridRun g;
      g.run = run;
      auto ids = std::make_shared<std::vector<std::string>>();
      for (const auto& t : run.tasks) {
        ids->push_back(t.task_id);
        g.states += dag::StateLetter(t.state);
      }
      g.run.tasks.clear();
      g.task_ids = std::move(ids);
      page.runs.push_back(std::move(g));
    }
    return page;
  }
  Result<std::vector<scheduler::AttemptRecord>> RunAttempts(RunId) override {
    return std::vector<scheduler::AttemptRecord>{};
  }
  Result<bool> ClaimRun(RunId run, const std::string& owner) override {
    std::lock_guard lock(mu);
    Row& row = runs.at(Value(run));
    if (row.run.state != RunState::kQueued || !(row.owner.empty() || row.owner == owner)) {
      return false;
    }
    row.owner = owner;
    return true;
  }
  Result<std::string> RequestCancel(RunId run, std::string_view actor,
                                    const std::string& reason) override {
    std::lock_guard lock(mu);
    auto it = runs.find(Value(run));
    if (it == runs.end())
      return Status::Error(ErrorCode::kNotFound, "run " + ToString(run) + " not found");
    if (dag::IsTerminal(it->second.run.state)) {
      return Status::Error(ErrorCode::kConflict, "run " + ToString(run) + " has already ended (" +
                                                     std::string(dag::Name(it->second.run.state)) +
                                                     ")");
    }
    it->second.cancel_reason = reason;
    AddEvent("cancel_requested", it->second.run.pipeline, run, std::string(actor));
    return it->second.owner;
  }
  Result<bool> CancelOrphanedRun(RunId run, std::string_view actor, const std::string&) override {
    std::lock_guard lock(mu);
    Row& row = runs.at(Value(run));
    if (dag::IsTerminal(row.run.state)) return false;
    for (auto& t : row.run.tasks) {
      if (!dag::IsTerminal(t.state)) t.state = TaskState::kCancelled;
    }
    row.run.state = RunState::kCancelled;
    AddEvent("run_state", row.run.pipeline, run, std::string(actor));
    return true;
  }
  Result<RunRecord> PrepareRetry(RunId run, std::span<const std::string> tasks,
                                 std::string_view actor, int64_t* event_id,
                                 const kiln::store::Reopen& /*reopen*/) override {
    std::lock_guard lock(mu);
    Row& row = runs.at(Value(run));
    for (auto& t : row.run.tasks) {
      if (std::find(tasks.begin(), tasks.end(), t.task_id) == tasks.end()) continue;
      t.state = TaskState::kPending;
      t.round_base = t.attempt;
    }
    row.run.state = RunState::kQueued;
    row.owner.clear();
    row.cancel_reason.reset();
    AddEvent("run_retried", row.run.pipeline, run, std::string(actor));
    if (event_id) *event_id = static_cast<int64_t>(events.size());
    return row.run;
  }
  Result<RunRecord> MarkTaskInEndedRun(
      RunId run, const std::string& task, TaskState state, const std::string&,
      std::string_view actor, const std::function<RunState(const RunRecord&)>& outcome) override {
    std::lock_guard lock(mu);
    Row& row = runs.at(Value(run));
    if (!dag::IsTerminal(row.run.state)) {
      return Status::Error(ErrorCode::kConflict, "run " + ToString(run) + " is still " +
                                                     std::string(dag::Name(row.run.state)) +
                                                     "; it has not ended");
    }
    for (auto& t : row.run.tasks) {
      if (t.task_id == task) t.state = state;
    }
    row.run.state = outcome(row.run);
    AddEvent("task_marked", row.run.pipeline, run, std::string(actor));
    return row.run;
  }
  Status RecordEvent(std::string_view kind, RunId run, std::string_view actor,
                     const std::string&) override {
    std::lock_guard lock(mu);
    AddEvent(std::string(kind), runs.at(Value(run)).run.pipeline, run, std::string(actor));
    return Status::Ok();
  }
  Status RecordPipelineEvent(std::string_view pipeline, std::string_view kind,
                             std::string_view actor, const std::string&) override {
    std::lock_guard lock(mu);
    AddEvent(std::string(kind), std::string(pipeline), RunId(0), std::string(actor));
    return Status::Ok();
  }
  Result<std::map<std::string, bool>> PausedPipelines() override {
    std::lock_guard lock(mu);
    if (down) return Down();
    return paused;
  }
  Status AskReload(const std::string&) override {
    std::lock_guard lock(mu);
    if (down) return Down();
    return Status::Ok();
  }
  Status SetPaused(const std::string& pipeline, bool p, std::string_view actor,
                   std::optional<bool> was) override {
    std::lock_guard lock(mu);
    paused[pipeline] = p;
    if (was == p) return Status::Ok();
    AddEvent(p ? "pipeline_paused" : "pipeline_unpaused", pipeline, RunId(0), std::string(actor));
    return Status::Ok();
  }
  Result<store::FireResult> FireSchedule(
      const std::string& pipeline, const std::string&, const std::string&,
      const std::function<store::FireDecision(const store::ScheduleState&)>& decide,
      const std::optional<store::LeaderFence>& fence) override {
    std::lock_guard lock(mu);
    if (down) return Down();
    if (fence && (!leader || leader->holder != fence->holder || leader->term != fence->term)) {
      ++fences_refused;
      return Status::Error(ErrorCode::kConflict, "not the leader");
    }
    store::FireResult result;
    result.before = schedules[pipeline];
    result.before.active.clear();
    for (const auto& [id, row] : runs) {
      if (row.run.pipeline == pipeline && !dag::IsTerminal(row.run.state) && !row.run.backfill) {
        result.before.active.push_back(row.run.id);
      }
    }
    store::FireDecision d = decide(result.before);
    for (const auto& n : d.runs) {
      auto created = Insert(n);
      if (!created.ok()) return created.status();
      result.runs.push_back(*created);
    }
    if (d.cursor) schedules[pipeline].cursor = d.cursor;
    schedules[pipeline].fires_skipped += d.skipped;
    return result;
  }
  Result<std::map<std::string, store::ScheduleState>> ScheduleStates() override {
    std::lock_guard lock(mu);
    return schedules;
  }
  Result<std::pair<int64_t, int64_t>> CreateBackfill(const store::NewBackfill& b,
                                                     std::span<const store::NewRun> news) override {
    std::lock_guard lock(mu);
    const int64_t id = static_cast<int64_t>(backfills.size()) + 1;
    scheduler::BackfillRecord& r = backfills[id];
    r.id = id;
    r.pipeline = b.pipeline;
    r.max_active_runs = b.max_active_runs;
    for (store::NewRun n : news) {
      n.backfill = id;
      auto created = Insert(n);
      if (!created.ok()) return created.status();
    }
    AddEvent("backfill_created", b.pipeline, RunId(0), b.created_by);
    return std::pair<int64_t, int64_t>(id, static_cast<int64_t>(events.size()));
  }
  Result<std::vector<RunId>> BackfillRuns(int64_t id) override {
    std::lock_guard lock(mu);
    std::vector<RunId> out;
    for (const auto& [rid, row] : runs) {
      if (row.run.backfill == id) out.push_back(row.run.id);
    }
    return out;
  }
  Result<scheduler::BackfillRecord> GetBackfill(int64_t id) override {
    std::lock_guard lock(mu);
    scheduler::BackfillRecord r = backfills.at(id);
    for (const auto& [rid, row] : runs) {
      if (row.run.backfill != id) continue;
      ++r.total;
      switch (row.run.state) {
        case RunState::kQueued:
          ++r.queued;
          break;
        case RunState::kRunning:
          ++r.running;
          break;
        case RunState::kSuccess:
          ++r.succeeded;
          break;
        case RunState::kFailed:
          ++r.failed;
          break;
        case RunState::kCancelled:
          ++r.cancelled;
          break;
      }
    }
    return r;
  }
  Result<std::vector<scheduler::BackfillRecord>> ListBackfills(const std::string&, int) override {
    return std::vector<scheduler::BackfillRecord>{};
  }
  Result<std::vector<RunId>> CancelBackfill(int64_t id, std::string_view) override {
    std::lock_guard lock(mu);
    backfills.at(id).cancel_requested = true;
    std::vector<RunId> out;
    for (const auto& [rid, row] : runs) {
      if (row.run.backfill == id && !dag::IsTerminal(row.run.state)) out.push_back(row.run.id);
    }
    return out;
  }
  Result<std::vector<scheduler::AttemptRecord>> ListAttempts(RunId, std::string_view) override {
    return std::vector<scheduler::AttemptRecord>{};
  }
  Result<scheduler::AttemptRecord> GetAttempt(RunId id, std::string_view task, int) override {
    return Status::Error(ErrorCode::kNotFound, "run " + ToString(id) + " task '" +
                                                   std::string(task) + "' has no such attempt");
  }
  Result<scheduler::MetricsPage> PipelineMetrics(const std::string&,
                                                 const std::optional<std::string>&,
                                                 std::optional<RunId>, int) override {
    return scheduler::MetricsPage{};
  }
  Result<std::vector<store::PendingAsk>> PendingDriftAsks(Duration, const std::string&) override {
    return std::vector<store::PendingAsk>{};
  }
  Result<std::vector<store::PendingAsk>> PendingRegistrations(Duration,
                                                              const std::string&) override {
    return std::vector<store::PendingAsk>{};
  }
  Result<store::Registered> RegisterModelVersion(
      const store::NewModelVersion&,
      const std::function<bool(const std::optional<std::string>&)>&) override {
    return Status::Error(ErrorCode::kUnavailable, "no registry in the fake store");
  }
  Result<std::vector<scheduler::ModelRecord>> ListModels() override {
    return std::vector<scheduler::ModelRecord>{};
  }
  Result<scheduler::ModelRecord> GetModel(const std::string& name) override {
    return Status::Error(ErrorCode::kNotFound, "model '" + name + "' not found");
  }
  Result<scheduler::ModelRecord> PromoteModel(const std::string& name, int,
                                              std::string_view) override {
    return Status::Error(ErrorCode::kNotFound, "model '" + name + "' not found");
  }
  Result<scheduler::ModelRecord> RollbackModel(const std::string& name, std::string_view) override {
    return Status::Error(ErrorCode::kNotFound, "model '" + name + "' not found");
  }
  Result<std::vector<scheduler::LineageFile>> RunInputs(RunId) override {
    return std::vector<scheduler::LineageFile>{};
  }
  Result<std::vector<scheduler::DecisionRecord>> ListDecisions(RunId) override {
    return std::vector<scheduler::DecisionRecord>{};
  }
  Result<std::vector<scheduler::ApprovalRecord>> ListApprovals(int limit) override {
    std::lock_guard lock(mu);
    if (down) return Down();
    std::vector<scheduler::ApprovalRecord> out;
    for (const auto& [id, row] : runs) {
      for (const auto& t : row.run.tasks) {
        if (t.state != TaskState::kWaiting || t.waiting_for != "approval") continue;
        if (static_cast<int>(out.size()) == limit) return out;
        out.push_back({row.run.id, row.run.pipeline, t.task_id, row.run.logical_date,
                       t.started_at.value_or(row.run.logical_date), t.retry_at});
      }
    }
    return out;
  }
  Result<int64_t> InvalidateCache(const std::string&, const std::optional<std::string>&,
                                  std::string_view) override {
    return int64_t{0};
  }
  Result<scheduler::LineageFile> Lineage(const scheduler::LineageQuery&) override {
    return Status::Error(ErrorCode::kNotFound, "no lineage in the fake store");
  }
  Result<std::vector<scheduler::EventRecord>> ListEvents(const scheduler::EventFilter&) override {
    return std::vector<scheduler::EventRecord>{};
  }
  Result<int64_t> LastEventId() override {
    std::lock_guard lock(mu);
    return static_cast<int64_t>(events.size());
  }
  Result<std::vector<store::ActiveRun>> ActiveRunsOf(const std::string& owner) override {
    std::lock_guard lock(mu);
    std::vector<RunId> ids;
    for (const auto& [id, row] : runs) {
      if (row.owner == owner) ids.push_back(row.run.id);
    }
    return Active(ids);
  }
  Result<std::vector<store::ActiveRun>> ActiveRuns(std::span<const RunId> ids) override {
    std::lock_guard lock(mu);
    return Active(std::vector<RunId>(ids.begin(), ids.end()));
  }
  Result<std::string> PipelineSource(const std::string& pipeline,
                                     const std::string& hash) override {
    std::lock_guard lock(mu);
    auto it = versions.find({pipeline, hash});
    if (it == versions.end()) return Status::Error(ErrorCode::kNotFound, "not kept");
    return it->second;
  }
  Status RecordLoaded(std::span<const store::LoadedVersion> loaded) override {
    std::lock_guard lock(mu);
    if (down) return Down();
    for (const store::LoadedVersion& v : loaded) {
      versions[{v.pipeline, v.hash}] = v.source;
      store::LastLoaded last{v.pipeline, v.hash, v.source, Instant{}};
      last_by_name[v.pipeline] = last;
      last_by_file[v.file] = last;
    }
    return Status::Ok();
  }
  Status ForgetLoadedFiles(std::span<const std::string> files) override {
    std::lock_guard lock(mu);
    for (const std::string& f : files) last_by_file.erase(f);
    return Status::Ok();
  }
  Result<std::optional<store::LastLoaded>> LastLoadedVersion(const std::string& pipeline,
                                                             const std::string& file) override {
    std::lock_guard lock(mu);
    if (down) return Down();
    const auto& by = pipeline.empty() ? last_by_file : last_by_name;
    auto it = by.find(pipeline.empty() ? file : pipeline);
    if (it == by.end()) return std::optional<store::LastLoaded>();
    return std::optional<store::LastLoaded>(it->second);
  }
  Status Ping() override {
    std::lock_guard lock(mu);
    return down ? Down() : Status::Ok();
  }

 private:
  static Status Down() { return Status::Error(ErrorCode::kUnavailable, "database: down"); }
  bool Mine(const Row& row) const { return row.owner.empty() || row.owner == kOwner; }
  void AddEvent(std::string kind, std::string pipeline, RunId run, std::string actor) {
    events.push_back(kind + " " + pipeline + " " + ToString(run) + " " + actor);
  }
  Result<store::CreatedRun> Insert(const store::NewRun& n) {
    for (const auto& [id, row] : runs) {
      const RunRecord& r = row.run;
      if (r.pipeline != n.pipeline) continue;
      if ((n.idempotency_key && r.idempotency_key == n.idempotency_key) ||
          (n.trigger == "schedule" && r.trigger == "schedule" &&
           r.logical_date == n.logical_date)) {
        return store::CreatedRun{r.id, true};
      }
    }
    Row row;
    RunRecord& r = row.run;
    r.id = RunId(next_id_++);
    r.pipeline = n.pipeline;
    r.version_hash = n.version_hash;
    r.trigger = n.trigger;
    r.logical_date = n.logical_date;
    r.data_interval_start = n.data_interval_start;
    r.data_interval_end = n.data_interval_end;
    r.params = n.params;
    r.idempotency_key = n.idempotency_key;
    r.triggered_by = n.triggered_by;
    r.backfill = n.backfill;
    r.created_by = n.created_by;
    r.note = n.note;
    for (const auto& t : n.tasks) {
      scheduler::TaskInstanceRecord rec;
      rec.task_id = t.id;
      rec.pool = t.pool;
      rec.priority = t.priority;
      r.tasks.push_back(rec);
    }
    row.owner = n.lease_owner.value_or("");
    versions[{n.pipeline, n.version_hash}] = n.source;
    AddEvent("run_created", n.pipeline, r.id, n.created_by);
    runs[Value(r.id)] = row;
    return store::CreatedRun{r.id, false};
  }
  // The fencing rules of store/batch_commit.cc.
  bool Apply(const scheduler::TaskUpdate& u) {
    auto it = runs.find(Value(u.run));
    if (it == runs.end() || !Mine(it->second)) return false;
    for (auto& t : it->second.run.tasks) {
      if (t.task_id != u.task_id) continue;
      if (dag::IsTerminal(t.state)) return false;
      if (u.start && t.attempt != u.attempt - 1) return false;
      if (u.end && (t.state != TaskState::kRunning || t.attempt != u.attempt)) return false;
      t.state = u.state;
      t.attempt = u.attempt;
      t.retry_at = u.retry_at;
      t.waiting_for = u.state == TaskState::kWaiting ? u.waiting_for : "";
      if (u.start) it->second.supervisors[t.task_id] = u.start->lease_owner;
      AddEvent("task_state", it->second.run.pipeline, u.run, kOwner);
      return true;
    }
    return false;
  }
  std::vector<store::ActiveRun> Active(const std::vector<RunId>& ids) {
    std::vector<store::ActiveRun> out;
    for (RunId id : ids) {
      auto it = runs.find(Value(id));
      if (it == runs.end() || dag::IsTerminal(it->second.run.state)) continue;
      store::ActiveRun a;
      a.run = it->second.run;
      a.owner = it->second.owner;
      a.cancel_reason = it->second.cancel_reason;
      for (const auto& t : a.run.tasks) {
        if (t.state != TaskState::kRunning) continue;
        store::OpenAttempt o;
        o.task_id = t.task_id;
        o.attempt = t.attempt;
        o.supervisor = it->second.supervisors[t.task_id];
        o.supervisor_alive = true;
        a.open.push_back(o);
      }
      out.push_back(std::move(a));
    }
    return out;
  }

  asio::io_context& io_;
  int64_t next_id_ = 1;
};

// Attempts run until the test ends them (on the loop: use Harness::OnIo).
class FakeRunner final : public scheduler::TaskRunner {
 public:
  explicit FakeRunner(asio::io_context& io) : io_(io) {}
  void Start(scheduler::LaunchRequest r,
             std::function<void(scheduler::AttemptOutcome)> f) override {
    started.push_back(ToString(r.run) + "/" + r.task_id + "#" + std::to_string(r.attempt));
    running[{Value(r.run), r.task_id}] = std::move(f);
  }
  void Adopt(const scheduler::AdoptRequest& r,
             std::function<void(scheduler::AttemptOutcome)> f) override {
    adopted.push_back(ToString(r.run) + "/" + r.task_id + "#" + std::to_string(r.attempt) + "@" +
                      r.supervisor);
    running[{Value(r.run), r.task_id}] = std::move(f);
  }
  void Kill(RunId run, TaskId) override {
    for (auto it = running.begin(); it != running.end(); ++it) {
      if (it->first.first != Value(run)) continue;
      killed.push_back(ToString(run) + "/" + it->first.second);
      scheduler::AttemptOutcome o;
      o.started = true;
      o.killed = true;
      o.signal = 15;
      auto f = std::move(it->second);
      running.erase(it);
      asio::post(io_, [f, o] { f(o); });
      return;
    }
  }
  // Ends the running attempt of `task` in `run` with `code`.
  void Exit(int64_t run, const std::string& task, int code) {
    auto node = running.extract({run, task});
    REQUIRE(!node.empty());
    scheduler::AttemptOutcome o;
    o.started = true;
    o.exit_code = code;
    asio::post(io_, [f = node.mapped(), o] { f(o); });
  }
  std::vector<std::string> started, adopted, killed;
  std::map<std::pair<int64_t, std::string>, std::function<void(scheduler::AttemptOutcome)>> running;

 private:
  asio::io_context& io_;
};

class NoEvents final : public daemon::EventSource {
 public:
  void Start() override {}
  void Stop() override {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  bool WaitForEvents(int64_t, std::chrono::milliseconds) override {
    std::lock_guard lock(mu_);
    return !stopped_;
  }
  int64_t last_id() const override { return 0; }

 private:
  std::mutex mu_;
  bool stopped_ = false;
};

// Pipeline files held in memory: path -> text.
class MemoryFiles final : public daemon::DaemonFiles {
 public:
  std::map<std::string, std::string> files;
  std::mutex mu;
  config::LoadResult LoadPipelineFile(const std::filesystem::path& file) override {
    std::lock_guard lock(mu);
    return config::ParsePipeline(files.at(file.string()), file);
  }
  Result<std::vector<std::filesystem::path>> ListPipelineFiles(
      const std::filesystem::path&) override {
    std::lock_guard lock(mu);
    std::vector<std::filesystem::path> out;
    for (const auto& [path, text] : files) out.push_back(path);
    return out;
  }
  bool IsRegularFile(const std::filesystem::path& file) override {
    std::lock_guard lock(mu);
    return files.count(file.string()) != 0;
  }
  Result<LogRange> ReadLogRange(const std::filesystem::path&, const std::filesystem::path&,
                                uint64_t, size_t) override {
    return Status::Error(ErrorCode::kNotFound, "no logs here");
  }
  bool WaitForLogChange(const std::filesystem::path&, const std::filesystem::path&, uint64_t,
                        std::chrono::milliseconds, bool*) override {
    return false;
  }
};

class FixedClock final : public scheduler::Clock {
 public:
  Instant Now() override {
    std::lock_guard lock(mu);
    return now;
  }
  std::mutex mu;
  Instant now{std::chrono::milliseconds(1'800'000'000'000)};  // 2027-01-15T08:00:00Z
};

// A DaemonService on the fakes, its scheduler's loop on a thread of its own.
struct Harness {
  // Pipelines by file name (under /p) and text.
  // `leadership`: the daemon's (DaemonServiceOptions::leadership); none: it fires unfenced.
  explicit Harness(std::map<std::string, std::string> pipelines,
                   std::shared_ptr<daemon::Leadership> leadership = nullptr) {
    scheduler::SchedulerOptions so;
    so.pools = {{"default", 4}};
    so.max_parallel_tasks = 4;
    so.lease_owner = kOwner + "/supervisor";
    so.logs_dir = "/data/logs";
    so.runs_dir = "/data/runs";
    so.commit_retry_delay = std::chrono::milliseconds(5);
    so.max_commit_retry_delay = std::chrono::milliseconds(5);
    sched = std::make_unique<scheduler::Scheduler>(io, db, runner, clock, so);
    daemon::DaemonServiceOptions o;
    o.logs_dir = "/data/logs";
    o.owner = kOwner;
    o.leadership = std::move(leadership);
    service = std::make_unique<daemon::DaemonService>(
        io, *sched, daemon::DaemonEnv{&db, &events, &files, &clock}, o);
    sched->SetObserver(service.get());
    std::map<std::string, daemon::PipelineEntry> entries;
    for (const auto& [file, text] : pipelines) {
      const std::string path = "/p/" + file;
      files.files[path] = text;
      auto loaded = config::ParsePipeline(text, path);
      INFO((loaded.diagnostics.empty() ? std::string() : loaded.diagnostics[0].ToString()));
      REQUIRE(loaded.pipeline);
      entries[loaded.pipeline->spec.name] = daemon::PipelineEntry{path, loaded.pipeline, {}};
    }
    loop = std::thread([this] { io.run(); });
    REQUIRE(service->Start(std::move(entries)).ok());
  }
  ~Harness() {
    service->StopAccepting();
    guard.reset();
    io.stop();
    loop.join();
    service.reset();
    sched.reset();
  }
  // Runs `f` on the loop and returns its result.
  template <typename F>
  auto OnIo(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(io, [&task] { task(); });
    return result.get();
  }
  // Waits until `done()` holds, read on the loop (bounded: only a bug reaches the bound).
  template <typename F>
  void Until(F done) {
    for (int i = 0; i < 2000; ++i) {
      if (OnIo(done)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    FAIL("gave up waiting");
  }
  void Exit(int64_t run, const std::string& task, int code) {
    OnIo([&] {
      runner.Exit(run, task, code);
      return 0;
    });
  }
  std::vector<std::string> Started() {
    return OnIo([&] { return runner.started; });
  }

  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard = asio::make_work_guard(io);
  FakeDb db{io};
  NoEvents events;
  MemoryFiles files;
  FixedClock clock;
  FakeRunner runner{io};
  std::unique_ptr<scheduler::Scheduler> sched;
  std::unique_ptr<daemon::DaemonService> service;
  std::thread loop;
};

inline std::string TwoTasks(const std::string& name, const std::string& keys = "") {
  return "[pipeline]\nname = \"" + name + "\"\n" + keys +
         "\n[params]\nn = 1\n[tasks.a]\ncommand = \"true\"\n[tasks.b]\nneeds = [\"a\"]\n"
         "command = \"true\"\n";
}

}  // namespace daemon_test
