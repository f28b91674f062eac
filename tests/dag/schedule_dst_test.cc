// The daylight-saving table (tests/support/dst_table.h) through dag::NextFire and FormatInZone.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "dag/schedule.h"
#include "tests/support/dst_table.h"

namespace {

using kiln::test::DstRow;

std::vector<std::string> Fires(const DstRow& row) {
  auto schedule = kiln::dag::MakeSchedule(row.expr, row.zone);
  REQUIRE(schedule.ok());
  auto from = kiln::ParseRfc3339(row.from);
  REQUIRE(from.ok());
  std::vector<std::string> out;
  kiln::Instant t = *from;
  for (size_t i = 0; i < row.fires.size(); ++i) {
    auto next = kiln::dag::NextFire(*schedule, t);
    REQUIRE(next);
    out.push_back(kiln::dag::FormatInZone(*next, schedule->zone));
    t = *next;
  }
  return out;
}

void Check(const std::vector<DstRow>& rows) {
  for (const DstRow& row : rows) {
    INFO(row.expr << " in " << row.zone << " after " << row.from);
    CHECK(Fires(row) == row.fires);
  }
}

}  // namespace

TEST_CASE("DST table: 0 2 * * *") { Check(kiln::test::Daily0200()); }
TEST_CASE("DST table: 30 1 * * *") { Check(kiln::test::Daily0130()); }
TEST_CASE("DST table: */15 * * * *") { Check(kiln::test::Every15Minutes()); }
TEST_CASE("DST table: 0 */2 * * *") { Check(kiln::test::EveryTwoHours()); }
