#include "scheduler/fire_plan.h"

#include <algorithm>
#include <deque>

namespace kiln::scheduler {

Catchup ParseCatchup(std::string_view text) {
  if (text == "latest") return Catchup::kLatest;
  if (text == "all") return Catchup::kAll;
  return Catchup::kNone;
}

Overlap ParseOverlap(std::string_view text) {
  if (text == "queue") return Overlap::kQueue;
  if (text == "cancel_running") return Overlap::kCancelRunning;
  return Overlap::kSkip;
}

DueFires PlanFires(const dag::Schedule& schedule, std::optional<Instant> cursor, Instant live_since,
                   Instant now, Catchup catchup, int cap) {
  DueFires out;
  if (!cursor) {
    out.cursor = now;
    return out;
  }
  cap = std::max(cap, 1);
  auto first = dag::NextFire(schedule, *cursor);
  if (!first || *first > now) return out;
  int64_t passed_over = 0;  // fires too old to be among the last `cap`
  if (schedule.cron.every) {
    // Intervals: jump over all but the last `cap` fires arithmetically.
    const int64_t step = schedule.cron.every->count();
    const int64_t count = (now - *first).count() / step + 1;
    if (count > cap) {
      passed_over = count - cap;
      first = *first + Duration(passed_over * step);
    }
  }
  // The last `cap` fires up to now, oldest first; older ones are counted, not kept.
  std::deque<Instant> fires;
  for (auto f = first; f && *f <= now; f = dag::NextFire(schedule, *f)) {
    fires.push_back(*f);
    if (fires.size() > static_cast<size_t>(cap)) {
      fires.pop_front();
      ++passed_over;
    }
  }
  out.cursor = fires.back();
  out.skipped_missed = passed_over;
  // The fire before the first kept one starts its data interval.
  std::optional<Instant> previous = dag::PrevFire(schedule, fires.front());
  std::vector<Fire> missed;
  for (Instant f : fires) {
    Fire fire{f, previous.value_or(f), f < live_since};
    previous = f;
    if (fire.missed) {
      missed.push_back(fire);
    } else {
      out.run.push_back(fire);
    }
  }
  std::vector<Fire> kept;
  switch (catchup) {
    case Catchup::kNone:
      break;
    case Catchup::kLatest:
      if (!missed.empty()) kept.push_back(missed.back());
      break;
    case Catchup::kAll:
      kept = missed;
      break;
  }
  out.skipped_missed += static_cast<int64_t>(missed.size() - kept.size());
  out.run.insert(out.run.begin(), kept.begin(), kept.end());
  return out;
}

OverlapDecision ApplyOverlap(std::vector<Fire> fires, size_t active, int max_active_runs,
                             Overlap overlap) {
  OverlapDecision out;
  const size_t limit = static_cast<size_t>(std::max(max_active_runs, 1));
  size_t count = active;
  for (Fire& fire : fires) {
    // Catch-up runs are work the policy asked for: they always run (and wait their turn).
    if (fire.missed || overlap != Overlap::kSkip || count < limit) {
      out.run.push_back(fire);
      ++count;
    } else {
      out.skipped.push_back(fire);
    }
  }
  if (overlap == Overlap::kCancelRunning && count > limit) {
    out.cancel_oldest = std::min(active, count - limit);
  }
  return out;
}

}  // namespace kiln::scheduler
