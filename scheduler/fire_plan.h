// What a pipeline's schedule asks for at one moment (pure: no I/O, no clock; time is an
// argument). The daemon keeps, per pipeline, a cursor: the latest fire instant already dealt
// with (run created or skipped). At each check the fires after the cursor up to now are due:
//   - fires at or after `live_since` (the moment the daemon began watching the pipeline in its
//     current state: daemon start, unpause) are on time and always run;
//   - older ones were missed (the daemon was down or the pipeline paused) and follow the
//     pipeline's catchup policy: none skips them, latest runs the most recent one, all runs
//     every one of them, oldest first, at most `cap` of them (the most recent), skipping the
//     rest.
// The cursor only moves forward, so a clock stepped back never repeats a fire, and fires are
// instants of the schedule itself, so every daemon agrees on them (the store keeps one run per
// (pipeline, logical date)).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "common/time.h"
#include "dag/schedule.h"

namespace kiln::scheduler {

enum class Catchup { kNone, kLatest, kAll };
enum class Overlap { kSkip, kQueue, kCancelRunning };
// From the format's words ("none", "skip", ...); the validated defaults for anything else.
Catchup ParseCatchup(std::string_view text);
Overlap ParseOverlap(std::string_view text);

struct Fire {
  Instant logical_date{};         // the fire instant
  Instant data_interval_start{};  // the fire before it (the data interval ends at logical_date)
  bool missed = false;            // catch-up of a fire the daemon was not there for
};

struct DueFires {
  std::vector<Fire> run;          // oldest first
  int64_t skipped_missed = 0;     // missed fires the catchup policy (or its cap) skips
  std::optional<Instant> cursor;  // the new cursor; nullopt = unchanged
};

// The fires due at `now` after `cursor`. A pipeline seen for the first time (no cursor) has
// nothing due; its cursor becomes `now`, so it starts firing from its next instant. `cap` >= 1.
// Fires are enumerated from the cursor, so a cursor far in the past costs one step per fire up
// to `now` (intervals are counted arithmetically).
DueFires PlanFires(const dag::Schedule& schedule, std::optional<Instant> cursor, Instant live_since,
                   Instant now, Catchup catchup, int cap);

// Which of `fires` (oldest first) start a run under the overlap policy, given the pipeline's
// `active` runs (queued or running) and its max_active_runs:
//   skip: a fire runs only while fewer than max_active_runs runs are active (counting the ones
//         it creates); the others are skipped;
//   queue: every fire runs; the runs beyond the limit wait, queued;
//   cancel_running: every fire runs; the oldest active runs are cancelled so that the newest
//         fit within the limit.
struct OverlapDecision {
  std::vector<Fire> run;
  std::vector<Fire> skipped;
  size_t cancel_oldest = 0;  // how many of the active runs (oldest first) to cancel
};
OverlapDecision ApplyOverlap(std::vector<Fire> fires, size_t active, int max_active_runs,
                             Overlap overlap);

}  // namespace kiln::scheduler
