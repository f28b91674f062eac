#include "dag/schedule.h"

#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

using kiln::Instant;
using kiln::dag::MakeSchedule;
using kiln::dag::NextFire;
using kiln::dag::PrevFire;

namespace {

Instant At(const char* rfc3339) {
  auto t = kiln::ParseRfc3339(rfc3339);
  REQUIRE(t.ok());
  return *t;
}

std::string Next(const char* expr, const char* zone, const char* from) {
  auto s = MakeSchedule(expr, zone);
  REQUIRE(s.ok());
  auto next = NextFire(*s, At(from));
  REQUIRE(next);
  return kiln::dag::FormatInZone(*next, s->zone);
}

// A random but valid cron expression: each field a star, a value, a range, a list or a step.
std::string RandomExpression(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto field = [&](int lo, int hi) -> std::string {
    switch (pick(0, 4)) {
      case 0:
        return "*";
      case 1:
        return std::to_string(pick(lo, hi));
      case 2: {
        int a = pick(lo, hi);
        return std::to_string(a) + "-" + std::to_string(pick(a, hi));
      }
      case 3:
        return std::to_string(pick(lo, hi)) + "," + std::to_string(pick(lo, hi));
      default:
        return "*/" + std::to_string(pick(1, hi - lo + 1));
    }
  };
  // Days 1-28 so that no random expression is one that never fires.
  return field(0, 59) + " " + field(0, 23) + " " + field(1, 28) + " " + field(1, 12) + " " +
         field(0, 6);
}

}  // namespace

TEST_CASE("unknown zones are refused with the accepted form") {
  auto s = MakeSchedule("0 3 * * *", "Europe/Atlantis");
  REQUIRE_FALSE(s.ok());
  CHECK(s.message() ==
        "unknown time zone 'Europe/Atlantis'; use an IANA name such as 'Europe/Berlin' or 'UTC'");
  CHECK_FALSE(MakeSchedule("0 3 * * *", "../../etc/passwd").ok());
  CHECK_FALSE(MakeSchedule("0 3 * * *", "").ok());
  CHECK(MakeSchedule("0 3 * * *", "Etc/UTC").ok());
  // A bad expression is reported before the zone.
  auto both = MakeSchedule("61 * * * *", "Nowhere");
  REQUIRE_FALSE(both.ok());
  CHECK(both.message() == "minute field '61' out of range 0-59");
}

TEST_CASE("intervals fire on multiples of their length since the epoch, in any zone") {
  CHECK(Next("every 15m", "UTC", "2026-11-29T10:07:00Z") == "2026-11-29T10:15:00+00:00");
  CHECK(Next("every 15m", "UTC", "2026-11-29T10:15:00Z") == "2026-11-29T10:30:00+00:00");
  CHECK(Next("every 15m", "Asia/Kolkata", "2026-11-29T10:07:00Z") == "2026-11-29T15:45:00+05:30");
  CHECK(Next("every 1d", "Europe/Berlin", "2026-11-29T10:00:00Z") == "2026-11-30T01:00:00+01:00");
  CHECK(Next("every 1s", "UTC", "2026-11-29T10:00:00.500Z") == "2026-11-29T10:00:01+00:00");
  auto s = MakeSchedule("every 90m", "UTC");
  REQUIRE(s.ok());
  CHECK(PrevFire(*s, At("2026-11-29T01:30:00Z")) == At("2026-11-29T00:00:00Z"));
  CHECK(PrevFire(*s, At("2026-11-29T01:30:00.001Z")) == At("2026-11-29T01:30:00Z"));
}

TEST_CASE("day fields: either matches when both are restricted, both when one is a star") {
  // The 13th, or any Friday: after Thursday 2026-11-12 comes Friday the 13th, then Friday 20th.
  CHECK(Next("0 0 13 * fri", "UTC", "2026-11-12T12:00:00Z") == "2026-11-13T00:00:00+00:00");
  CHECK(Next("0 0 13 * fri", "UTC", "2026-11-13T00:00:00Z") == "2026-11-20T00:00:00+00:00");
  CHECK(Next("0 0 13 * 1", "UTC", "2026-11-29T12:00:00Z") == "2026-11-30T00:00:00+00:00");
  // A star day-of-week: only the 13th.
  CHECK(Next("0 0 13 * *", "UTC", "2026-11-13T00:00:00Z") == "2026-12-13T00:00:00+00:00");
  // 29 February: the next leap year.
  CHECK(Next("0 0 29 2 *", "UTC", "2026-11-29T00:00:00Z") == "2028-02-29T00:00:00+00:00");
  CHECK(Next("@yearly", "Europe/Berlin", "2026-11-29T00:00:00Z") == "2027-01-01T00:00:00+01:00");
  CHECK(Next("59 23 31 12 *", "UTC", "2026-12-31T23:59:00Z") == "2027-12-31T23:59:00+00:00");
}

TEST_CASE("PrevFire is the last fire before an instant, DST included") {
  auto s = MakeSchedule("30 1 * * *", "America/New_York");
  REQUIRE(s.ok());
  // The 01:30 of 2026-11-01 that fired is the first (EDT) one, 05:30Z.
  CHECK(PrevFire(*s, At("2026-11-01T12:00:00Z")) == At("2026-11-01T05:30:00Z"));
  CHECK(PrevFire(*s, At("2026-11-01T05:30:00Z")) == At("2026-10-31T05:30:00Z"));
  auto leap = MakeSchedule("0 0 29 2 *", "UTC");
  REQUIRE(leap.ok());
  CHECK(PrevFire(*leap, At("2026-11-29T00:00:00Z")) == At("2024-02-29T00:00:00Z"));
}

TEST_CASE("properties: next(t) is later than t, constant until it, and prev undoes it") {
  std::mt19937 rng(20261129);
  const std::vector<const char*> zones = {"UTC", "America/New_York", "Europe/Berlin",
                                          "Australia/Lord_Howe", "Asia/Kolkata"};
  const int64_t start = At("2026-01-01T00:00:00Z").time_since_epoch().count();
  const int64_t span = int64_t{2} * 365 * 24 * 3600 * 1000;
  for (int i = 0; i < 300; ++i) {
    const std::string expr = RandomExpression(rng);
    const char* zone = zones[static_cast<size_t>(i) % zones.size()];
    auto s = MakeSchedule(expr, zone);
    INFO(expr << " in " << zone);
    REQUIRE(s.ok());
    const Instant t{
        std::chrono::milliseconds(start + std::uniform_int_distribution<int64_t>(0, span)(rng))};
    auto next = NextFire(*s, t);
    REQUIRE(next);
    CHECK(*next > t);
    // Any instant in [t, next) has the same next fire.
    for (int k = 0; k < 5; ++k) {
      const int64_t gap = (*next - t).count();
      const Instant u =
          t + std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(0, gap - 1)(rng));
      CHECK(NextFire(*s, u) == next);
    }
    // The fire before next is at or before t, and its own next is next.
    auto prev = PrevFire(*s, *next);
    REQUIRE(prev);
    CHECK(*prev <= t);
    CHECK(NextFire(*s, *prev) == next);
  }
}
