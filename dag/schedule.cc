#include "dag/schedule.h"

#include <date/date.h>
#include <date/tz.h>

#include <cstdio>
#include <exception>
#include <optional>

namespace kiln::dag {

namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using LocalMinutes = date::local_time<minutes>;

// Far enough for any schedule that validates (the rarest, 29 February on a given weekday under
// the AND rule, recurs within 28 years); beyond it a search gives up instead of looping.
constexpr int kSearchYears = 400;

bool DayMatches(const CronSchedule& c, date::sys_days day) {
  date::year_month_day ymd(day);
  const bool dom = c.days.test(static_cast<unsigned>(ymd.day()));
  const bool dow = c.weekdays.test(date::weekday(day).c_encoding());
  // Vixie cron: with both day fields restricted, either one matching is enough.
  if (c.days_restricted && c.weekdays_restricted) return dom || dow;
  return dom && dow;
}

// The first local time at or after `from` whose fields match (minute resolution).
std::optional<LocalMinutes> NextLocal(const CronSchedule& c, LocalMinutes from) {
  date::sys_days day{date::floor<date::days>(from.time_since_epoch())};
  const minutes in_day = from.time_since_epoch() - day.time_since_epoch();
  int hour = static_cast<int>(in_day.count() / 60);
  int minute = static_cast<int>(in_day.count() % 60);
  const date::year limit = date::year_month_day(day).year() + date::years(kSearchYears);
  while (true) {
    date::year_month_day ymd(day);
    if (ymd.year() > limit) return std::nullopt;
    if (!c.months.test(static_cast<unsigned>(ymd.month()))) {
      day = date::sys_days((date::year_month(ymd.year(), ymd.month()) + date::months(1)) / 1);
      hour = minute = 0;
      continue;
    }
    if (!DayMatches(c, day)) {
      day += date::days(1);
      hour = minute = 0;
      continue;
    }
    while (hour < 24 && !c.hours.test(static_cast<size_t>(hour))) {
      ++hour;
      minute = 0;
    }
    if (hour == 24) {
      day += date::days(1);
      hour = minute = 0;
      continue;
    }
    while (minute < 60 && !c.minutes.test(static_cast<size_t>(minute))) ++minute;
    if (minute == 60) {
      ++hour;
      minute = 0;
      continue;  // hour 24 is handled above
    }
    return LocalMinutes(day.time_since_epoch() + hours(hour) + minutes(minute));
  }
}

// The instant a matching local time fires at, under the daylight-saving rules.
Instant FireInstant(const date::time_zone* zone, LocalMinutes local) {
  const auto seconds = date::local_seconds(local);
  const date::local_info info = zone->get_info(seconds);
  date::sys_seconds at;
  if (info.result == date::local_info::nonexistent) {
    at = info.first.end;  // the gap's end: the first instant after it
  } else {
    // unique, or ambiguous: the first occurrence, read with the offset in force before it.
    at = date::sys_seconds(seconds.time_since_epoch() - info.first.offset);
  }
  return std::chrono::time_point_cast<milliseconds>(at);
}

std::optional<Instant> NextCron(const Schedule& s, Instant after) {
  const auto local_after = s.zone->to_local(after);
  auto from = date::floor<minutes>(local_after);
  // Mapping local times to instants never goes backwards, so the first matching local time
  // whose instant is later than `after` is the answer. Local times inside a repeated hour that
  // map before `after` (read in the second occurrence) are passed over.
  for (int guard = 0; guard < 1'000'000; ++guard) {
    auto local = NextLocal(s.cron, LocalMinutes(from.time_since_epoch()));
    if (!local) return std::nullopt;
    Instant at = FireInstant(s.zone, *local);
    if (at > after) return at;
    from = date::local_time<minutes>(local->time_since_epoch() + minutes(1));
  }
  return std::nullopt;
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

}  // namespace

Result<const date::time_zone*> FindZone(std::string_view name) {
  try {
    return date::locate_zone(std::string(name));
  } catch (const std::exception&) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "unknown time zone '" + std::string(name) +
                             "'; use an IANA name such as 'Europe/Berlin' or 'UTC'");
  }
}

Result<Schedule> MakeSchedule(std::string_view expression, std::string_view zone) {
  auto cron = ParseSchedule(expression);
  if (!cron.ok()) return cron.status();
  auto z = FindZone(zone);
  if (!z.ok()) return z.status();
  return Schedule{std::move(cron).value(), *z, std::string(zone)};
}

std::optional<Instant> NextFire(const Schedule& s, Instant after) {
  try {
    if (s.cron.every) {
      const int64_t step = s.cron.every->count();
      if (step <= 0) return std::nullopt;
      const int64_t k = FloorDiv(after.time_since_epoch().count(), step) + 1;
      return Instant(milliseconds(k * step));
    }
    if (!s.zone) return std::nullopt;
    return NextCron(s, after);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<Instant> PrevFire(const Schedule& s, Instant before) {
  try {
    if (s.cron.every) {
      const int64_t step = s.cron.every->count();
      if (step <= 0) return std::nullopt;
      const int64_t k = FloorDiv(before.time_since_epoch().count() - 1, step);
      return Instant(milliseconds(k * step));
    }
    // Look back over windows that double in length until one holds a fire, then walk forward
    // to the last fire before `before`.
    for (auto window = minutes(1); window < date::years(kSearchYears); window *= 2) {
      auto first = NextFire(s, before - window);
      if (!first || *first >= before) continue;
      Instant last = *first;
      while (auto next = NextFire(s, last)) {
        if (*next >= before) break;
        last = *next;
      }
      return last;
    }
    return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string FormatInZone(Instant t, const date::time_zone* zone) {
  const auto seconds = date::floor<std::chrono::seconds>(t);
  const auto offset = zone ? zone->get_info(seconds).offset : std::chrono::seconds(0);
  const auto local = date::local_time<milliseconds>(t.time_since_epoch() + offset);
  std::string out = date::format("%FT%T", date::floor<std::chrono::seconds>(local));
  if (auto ms = ((t.time_since_epoch().count() % 1000) + 1000) % 1000; ms != 0) {
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%03d", static_cast<int>(ms));
    out += frac;
  }
  const auto total = date::floor<minutes>(offset).count();
  const auto magnitude = total < 0 ? -total : total;
  char zone_text[8];
  std::snprintf(zone_text, sizeof zone_text, "%c%02d:%02d", total < 0 ? '-' : '+',
                static_cast<int>(magnitude / 60), static_cast<int>(magnitude % 60));
  return out + zone_text;
}

}  // namespace kiln::dag
