#include <catch2/catch.hpp>

#include "dag/cron.h"

using namespace kiln;
using namespace kiln::dag;

namespace {

std::string Words(const std::string& expression) {
  auto schedule = ParseSchedule(expression);
  REQUIRE(schedule.ok());
  return DescribeSchedule(*schedule);
}

}  // namespace

TEST_CASE("schedules read in words") {
  CHECK(Words("0 3 * * *") == "at 03:00 every day");
  CHECK(Words("30 9,17 * * *") == "at 09:30 and 17:30 every day");
  CHECK(Words("* * * * *") == "every minute");
  CHECK(Words("*/15 * * * *") == "every 15 minutes");
  CHECK(Words("5 * * * *") == "every hour at minute 5");
  CHECK(Words("0,20 * * * *") == "every hour at minutes 0 and 20");
  CHECK(Words("@hourly") == "every hour, on the hour");
  CHECK(Words("@daily") == "at 00:00 every day");
  CHECK(Words("@weekly") == "at 00:00 on Sunday");
  CHECK(Words("@monthly") == "at 00:00 on day 1 of the month");
  CHECK(Words("@yearly") == "at 00:00 on January 1");
  CHECK(Words("0 6 * * 1-5") == "at 06:00 on Monday to Friday");
  CHECK(Words("0 6 * * sat,sun") == "at 06:00 on Sunday and Saturday");
  CHECK(Words("0 0 1,15 * *") == "at 00:00 on days 1 and 15 of the month");
  CHECK(Words("0 0 1 * 1") == "at 00:00 on day 1 of the month and on Monday");
  CHECK(Words("0 4 * 1,4,7,10 *") == "at 04:00 in January, April, July and October");
  CHECK(Words("0 */6 * * *") == "every 6 hours, on the hour");
  CHECK(Words("15 */2 * * *") == "every 2 hours at minute 15");
  CHECK(Words("0,30 */4 * * *") == "at minutes 0 and 30 of hours 0, 4, 8, 12, 16 and 20 every day");
  CHECK(Words("0,30 0-2 * * *") == "at 00:00, 00:30, 01:00, 01:30, 02:00 and 02:30 every day");
  CHECK(Words("0 1,3 * * *") == "at 01:00 and 03:00 every day");
  CHECK(Words("10 8-18 * * 1-5") == "at minute 10 of hours 8 to 18 on Monday to Friday");
  CHECK(Words("every 15m") == "every 15 minutes");
  CHECK(Words("every 1h") == "every hour");
  CHECK(Words("every 90s") == "every 90 seconds");
  CHECK(Words("every 2d") == "every 2 days");
}
