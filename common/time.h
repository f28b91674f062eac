// Durations and instants. Time is always passed in; nothing in the core reads a clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace kiln {

using Duration = std::chrono::milliseconds;
// Wall-clock instant (UTC, millisecond precision).
using Instant = std::chrono::time_point<std::chrono::system_clock, std::chrono::milliseconds>;

// The longest duration ParseDuration accepts: 3650 days. Any later instant still fits a
// timestamp of PostgreSQL and a deadline on the steady clock in nanoseconds.
inline constexpr Duration kMaxDuration = std::chrono::hours(24 * 3650);
// Parses "90s", "1h30m", "250ms", "2d". Units ms, s, m, h, d; at least one number+unit pair;
// "0" alone means zero; at most kMaxDuration. Error text says what is accepted.
Result<Duration> ParseDuration(std::string_view text);
// Shortest form that ParseDuration reads back: "1h30m", "250ms", "0s".
std::string FormatDuration(Duration d);
// RFC 3339 in UTC with milliseconds when non-zero: 2026-11-29T01:51:15Z / 2026-11-29T01:51:15.250Z.
std::string FormatRfc3339(Instant t);
// The same, always with three fractional digits: 2026-11-29T01:51:15.000Z (the HTTP API's form).
std::string FormatRfc3339Millis(Instant t);
// Reads RFC 3339: "2026-11-29T04:10:45Z", "2026-11-29t04:10:45.123456+02:00" (T, t or a space
// between date and time; Z, z or a +HH:MM/-HH:MM offset). Fractions finer than a millisecond are
// truncated; leap seconds (:60) are refused. kInvalidArgument saying what is accepted.
Result<Instant> ParseRfc3339(std::string_view text);
// The instants ParseRfc3339 accepts: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z.
inline constexpr Instant kEarliestInstant{std::chrono::milliseconds(-62135596800000)};
inline constexpr Instant kLatestInstant{std::chrono::milliseconds(253402300799999)};
Instant NowUtc();

}  // namespace kiln
