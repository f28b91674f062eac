// When a schedule fires: a parsed schedule (dag/cron.h) read in an IANA time zone, evaluated
// with the format's daylight-saving rules (pipeline-format.md, "Schedules"):
//   - cron fields are matched against local (wall-clock) time in the zone;
//   - a local time that does not exist (inside a spring-forward gap) fires once, at the first
//     instant after the gap; several such local times in one gap fire once in all;
//   - a local time that occurs twice (inside a fall-back overlap) fires once, at its first
//     occurrence;
//   - "every <duration>" fires at every multiple of the duration since the Unix epoch (UTC),
//     whatever the zone, so every daemon computes the same instants.
// Pure: time is an argument. The zone database is the system's (/usr/share/zoneinfo), read
// once per zone and then shared; evaluation is thread-safe and never throws.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/time.h"
#include "dag/cron.h"

namespace date {
class time_zone;
}

namespace kiln::dag {

// An IANA zone by name ("Europe/Berlin", "UTC"). kInvalidArgument "unknown time zone 'X';
// use an IANA name such as 'Europe/Berlin' or 'UTC'".
Result<const date::time_zone*> FindZone(std::string_view name);

struct Schedule {
  CronSchedule cron;
  const date::time_zone* zone = nullptr;
  std::string zone_name;
};

// Parses `expression` (ParseSchedule) and looks up `zone`; the first error found.
Result<Schedule> MakeSchedule(std::string_view expression, std::string_view zone);

// The first fire strictly after `after` (nullopt only when none comes within 400 years, which a
// validated schedule never does). Constant for every `after` between two fires.
std::optional<Instant> NextFire(const Schedule& schedule, Instant after);
// The last fire strictly before `before` (nullopt when none within 400 years).
std::optional<Instant> PrevFire(const Schedule& schedule, Instant before);

// `t` as RFC 3339 local time in `zone` with the zone's offset, seconds precision (fractions
// when non-zero): "2026-03-08T03:00:00-04:00"; UTC as "+00:00".
std::string FormatInZone(Instant t, const date::time_zone* zone);

}  // namespace kiln::dag
