// Records -> the JSON documents of docs/api.md. Pure. Times are RFC 3339 UTC with milliseconds;
// absent optional values are null.
#pragma once

#include <optional>

#include "common/time.h"
#include "scheduler/records.h"
#include "scheduler/service.h"
#include "web/json_body.h"

namespace kiln::web {

json RenderTime(const std::optional<Instant>& t);
json RenderParamValue(const dag::ParamValue& value);
json RenderTask(const scheduler::TaskInstanceRecord& task);
// The run; with `with_tasks` also its "tasks" (listings leave them out).
json RenderRun(const scheduler::RunRecord& run, bool with_tasks);
json RenderBackfill(const scheduler::BackfillRecord& backfill);
// A pipeline as listed; with `detail` also "params", "tasks" and "source". A pipeline that never
// loaded has null version, schedule, timezone and source, an empty description, no tags, params
// or tasks.
json RenderPipeline(const scheduler::PipelineInfo& info, bool detail);
json RenderAttempt(const scheduler::AttemptRecord& attempt);
// An event as sent on the event stream. `detail` is embedded as JSON (a string if it is not).
json RenderEvent(const scheduler::EventRecord& event);

}  // namespace kiln::web
