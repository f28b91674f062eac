#include "dag/cron.h"

#include <catch2/catch.hpp>
#include <string>

using kiln::dag::CronSchedule;
using kiln::dag::ParseSchedule;

namespace {

std::string Error(std::string_view text) {
  auto parsed = ParseSchedule(text);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.status().code() == kiln::ErrorCode::kInvalidArgument);
  return parsed.message();
}

// The set bits of a field, e.g. "0,15,30,45".
template <size_t N>
std::string Set(const std::bitset<N>& bits) {
  std::string out;
  for (size_t i = 0; i < N; ++i) {
    if (bits[i]) out += (out.empty() ? "" : ",") + std::to_string(i);
  }
  return out;
}

}  // namespace

TEST_CASE("cron fields: lists, ranges, steps and names") {
  auto c = ParseSchedule("*/15 9-17/4 1,15 jan-mar,DEC mon-fri");
  REQUIRE(c.ok());
  CHECK(Set(c->minutes) == "0,15,30,45");
  CHECK(Set(c->hours) == "9,13,17");
  CHECK(Set(c->days) == "1,15");
  CHECK(Set(c->months) == "1,2,3,12");
  CHECK(Set(c->weekdays) == "1,2,3,4,5");
  CHECK(c->days_restricted);
  CHECK(c->weekdays_restricted);
  CHECK_FALSE(c->every);

  auto sunday = ParseSchedule("  0 0 * * 7  ");
  REQUIRE(sunday.ok());
  CHECK(Set(sunday->weekdays) == "0");
  CHECK_FALSE(sunday->days_restricted);
  auto from = ParseSchedule("5/20 * */2 * *");
  REQUIRE(from.ok());
  CHECK(Set(from->minutes) == "5,25,45");
  CHECK_FALSE(from->days_restricted);  // "*/2" does not restrict the day, as in Vixie cron
}

TEST_CASE("presets and intervals") {
  auto daily = ParseSchedule("@daily");
  REQUIRE(daily.ok());
  CHECK(Set(daily->minutes) == "0");
  CHECK(Set(daily->hours) == "0");
  auto weekly = ParseSchedule("@WEEKLY");
  REQUIRE(weekly.ok());
  CHECK(Set(weekly->weekdays) == "0");
  auto yearly = ParseSchedule("@yearly");
  REQUIRE(yearly.ok());
  CHECK(Set(yearly->months) == "1");
  CHECK(Set(yearly->days) == "1");
  auto every = ParseSchedule("every 1h30m");
  REQUIRE(every.ok());
  REQUIRE(every->every);
  CHECK(*every->every == std::chrono::minutes(90));
}

TEST_CASE("bad schedules say which field is wrong and what is accepted") {
  CHECK(Error("61 * * * *") == "minute field '61' out of range 0-59");
  CHECK(Error("0 24 * * *") == "hour field '24' out of range 0-23");
  CHECK(Error("0 0 0 * *") == "day-of-month field '0' out of range 1-31");
  CHECK(Error("0 0 * 13 *") == "month field '13' out of range 1-12");
  CHECK(Error("0 0 * * 8") == "day-of-week field '8' out of range 0-7");
  CHECK(Error("0 0 * foo *") == "month field 'foo' is not 1-12 or jan-dec");
  CHECK(Error("0 0 * * funday") == "day-of-week field 'funday' is not 0-7 or sun-sat");
  CHECK(Error("x * * * *") == "minute field 'x' is not 0-59");
  CHECK(Error("*/0 * * * *") == "minute field '*/0': the step after '/' must be a number from 1");
  CHECK(Error("5-1 * * * *") == "minute field '5-1': a range must go upwards");
  CHECK(Error("1,,2 * * * *") == "minute field '1,,2' has an empty item");
  CHECK(Error("* * * *") ==
        "expected 5 fields (minute hour day-of-month month day-of-week), a preset such as "
        "@daily, or \"every <duration>\"; got 4 fields");
  CHECK(Error("") ==
        "expected 5 fields (minute hour day-of-month month day-of-week), a preset such as "
        "@daily, or \"every <duration>\"; got 0 fields");
  CHECK(Error("@sometimes") ==
        "unknown preset '@sometimes'; accepted: @hourly, @daily, @midnight, @weekly, @monthly, "
        "@yearly, @annually");
  CHECK(Error("every 0s") == "interval must be at least 1s");
  CHECK(Error("every soon").starts_with("interval: invalid duration \"soon\""));
}

TEST_CASE("a schedule that can never fire is an error") {
  CHECK(Error("0 0 30 2 *") == "never fires: day 30 never occurs in February");
  CHECK(Error("0 0 31 4,6 *") == "never fires: day 31 never occurs in April or June");
  CHECK(ParseSchedule("0 0 29 2 *").ok());    // leap years
  CHECK(ParseSchedule("0 0 31 2 mon").ok());  // either day field matches: Mondays in February
  CHECK(ParseSchedule("0 0 30,1 2 *").ok());  // the 1st does occur
}
