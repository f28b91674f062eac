// Schedules of the pipeline format (pipeline-format.md, "Schedules"), parsed and checked: 5-field
// cron expressions (minute hour day-of-month month day-of-week) with lists, ranges, steps and
// month and day names; presets (@hourly ... @yearly); and intervals ("every 15m"). Pure: when a
// schedule fires is worked out by the scheduler, in the pipeline's time zone.
#pragma once

#include <bitset>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/time.h"

namespace kiln::dag {

struct CronSchedule {
  std::bitset<60> minutes;
  std::bitset<24> hours;
  std::bitset<32> days;     // day of month, 1-31 (bit 0 unused)
  std::bitset<13> months;   // 1-12 (bit 0 unused)
  std::bitset<7> weekdays;  // 0 = Sunday
  // Classic cron: when both day fields are restricted, a day matches if EITHER matches.
  bool days_restricted = false;
  bool weekdays_restricted = false;
  std::optional<Duration> every;  // set for "every <duration>"; the fields are then unused
};

// Parses `text`. Errors name the field and say what is accepted, e.g. "minute field '61' out of
// range 0-59", "expected 5 fields (minute hour day-of-month month day-of-week), got 4", and an
// expression that can never fire ("day 30 never occurs in February"). kInvalidArgument.
Result<CronSchedule> ParseSchedule(std::string_view text);

// The schedule in words, in its own time zone: "at 03:00 every day", "every 15 minutes on Monday
// to Friday", "at 00:00 on January 1", "every 6 hours" (dag/cron_words.cc).
std::string DescribeSchedule(const CronSchedule& schedule);

}  // namespace kiln::dag
