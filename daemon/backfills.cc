// DaemonService: backfills. A backfill's runs are created at once, in one transaction, and
// started oldest first while fewer than its max_active_runs are active; their tasks yield to
// every other run's (scheduler::Ticket::background), and they do not count against the
// pipeline's own max_active_runs, so scheduled runs are never held back by a backfill.
#include "common/log.h"
#include "daemon/runtime.h"
#include "daemon/service.h"
#include "dag/params.h"

namespace kiln::daemon {

namespace {

// More runs than this in one backfill is almost always a mistake in the range.
constexpr size_t kMaxBackfillRuns = 10000;

Status Invalid(std::string message) {
  return Status::Error(ErrorCode::kInvalidArgument, std::move(message));
}

}  // namespace

Result<scheduler::BackfillRecord> DaemonService::CreateBackfill(
    const scheduler::BackfillRequest& request) {
  std::shared_lock pause_lock(pause_mu_);
  bool paused = false;
  auto pipeline = Runnable(request.pipeline, &paused);
  if (!pipeline.ok()) return pipeline.status();
  const dag::Pipeline& p = **pipeline;
  if (!p.schedule) {
    return Invalid("pipeline '" + request.pipeline +
                   "' has no schedule; a backfill runs it for the fires of its schedule");
  }
  if (request.from > request.to) {
    return Invalid("'from' (" + FormatRfc3339(request.from) + ") is after 'to' (" +
                   FormatRfc3339(request.to) + ")");
  }
  auto params = dag::ResolveParams(p.spec, {});
  if (!params.ok()) return Status::Error(ErrorCode::kInvalidArgument, params.message());
  std::vector<store::NewRun> runs;
  std::optional<Instant> previous = dag::PrevFire(*p.schedule, request.from);
  for (auto f = dag::NextFire(*p.schedule, request.from - Duration(1)); f && *f <= request.to;
       f = dag::NextFire(*p.schedule, *f)) {
    if (runs.size() == kMaxBackfillRuns) {
      return Invalid("the range holds more than " + std::to_string(kMaxBackfillRuns) +
                     " fires of '" + p.spec.schedule + "'; backfill a shorter range at a time");
    }
    store::NewRun run = MakeNewRun(p, *params, "backfill", *f);
    run.data_interval_start = previous.value_or(*f);
    if (run.data_interval_start < kEarliestInstant) {
      return Invalid("the fire at " + FormatRfc3339(*f) +
                     " would have a data interval starting before the year 0001; start the "
                     "backfill later");
    }
    run.created_by = request.actor;
    run.lease_owner = options_.owner;
    runs.push_back(std::move(run));
    previous = *f;
  }
  if (runs.empty()) {
    return Invalid("no fire of '" + p.spec.schedule + "' (" + p.spec.timezone + ") from " +
                   FormatRfc3339(request.from) + " to " + FormatRfc3339(request.to));
  }
  store::NewBackfill backfill;
  backfill.pipeline = request.pipeline;
  backfill.from = request.from;
  backfill.to = request.to;
  backfill.max_active_runs = request.max_active_runs.value_or(p.spec.max_active_runs);
  backfill.created_by = request.actor;
  auto made = store_.CreateBackfill(backfill, runs);
  if (!made.ok()) return made.status();
  const int64_t* id = &made->first;
  // Its runs, oldest first (they were created in that order).
  auto created = store_.BackfillRuns(*id);
  if (!created.ok()) return created.status();
  for (RunId run : *created) {
    QueueBackfillRun(*id, request.pipeline, backfill.max_active_runs, run);
  }
  log::Info(request.pipeline + ": backfill " + std::to_string(*id) + " of " +
            std::to_string(runs.size()) + " runs created by " + request.actor);
  if (!paused) StartBackfill(*id);
  auto record = GetBackfill(*id);
  if (record.ok()) record->event_id = made->second;
  return record;
}

void DaemonService::QueueBackfillRun(int64_t backfill, const std::string& pipeline,
                                     int max_active_runs, RunId run) {
  std::lock_guard lock(mu_);
  BackfillRuns& b = backfills_[backfill];
  b.pipeline = pipeline;
  b.max_active_runs = std::max(max_active_runs, 1);
  if (b.started.count(run) ||
      std::find(b.waiting.begin(), b.waiting.end(), run) != b.waiting.end()) {
    return;
  }
  b.waiting.push_back(run);
}

void DaemonService::StartBackfill(int64_t backfill) {
  while (true) {
    RunId id{};
    std::string name;
    dag::PipelinePtr pipeline;
    {
      std::lock_guard lock(mu_);
      auto it = backfills_.find(backfill);
      if (stopping_ || it == backfills_.end()) return;
      BackfillRuns& b = it->second;
      if (b.waiting.empty()) {
        if (b.started.empty()) backfills_.erase(it);
        return;
      }
      if (b.started.size() >= static_cast<size_t>(b.max_active_runs)) return;
      auto known = pipelines_.find(b.pipeline);
      if (known == pipelines_.end() || !known->second.entry.pipeline || known->second.paused) {
        return;  // waits for its pipeline (unpause or reload start it)
      }
      name = b.pipeline;
      pipeline = known->second.entry.pipeline;
      id = b.waiting.front();
      b.waiting.pop_front();
      if (!AnnounceLocked(id, name, backfill)) continue;
    }
    StartAnnounced(id, name, pipeline);
  }
}

Result<std::vector<scheduler::BackfillRecord>> DaemonService::ListBackfills(
    const std::string& name) {
  auto list = store_.ListBackfills(name, 100);
  // No longer loaded (its file deleted): its backfills are still listed while there are any.
  if (list.ok() && list->empty() && !Declared(name)) {
    return Status::Error(ErrorCode::kNotFound, "no pipeline named '" + name + "'");
  }
  return list;
}

Result<scheduler::BackfillRecord> DaemonService::GetBackfill(int64_t id) {
  return store_.GetBackfill(id);
}

Result<scheduler::BackfillRecord> DaemonService::CancelBackfill(int64_t id,
                                                                const std::string& actor) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Refuse();
  }
  auto active = store_.CancelBackfill(id, actor);
  if (!active.ok()) return active.status();
  {
    // Its waiting runs never start.
    std::lock_guard lock(mu_);
    if (auto it = backfills_.find(id); it != backfills_.end()) {
      it->second.waiting.clear();
      if (it->second.started.empty()) backfills_.erase(it);
    }
  }
  const std::string reason = "cancelled by " + actor + ": backfill " + std::to_string(id);
  for (RunId run : *active) {
    Status s = Cancel(run, actor, reason);
    if (!s.ok() && s.code() != ErrorCode::kConflict) return s;
  }
  return GetBackfill(id);
}

}  // namespace kiln::daemon
