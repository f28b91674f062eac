#include "common/time.h"

#include <catch2/catch.hpp>

#include "common/sha256.h"

using namespace std::chrono_literals;

TEST_CASE("durations parse combined units") {
  CHECK(kiln::ParseDuration("90s").value() == 90s);
  CHECK(kiln::ParseDuration("1h30m").value() == 90min);
  CHECK(kiln::ParseDuration("250ms").value() == 250ms);
  CHECK(kiln::ParseDuration("2d").value() == 48h);
  CHECK(kiln::ParseDuration("1m30s500ms").value() == 90500ms);
  CHECK(kiln::ParseDuration("0").value() == 0ms);
}

TEST_CASE("bad durations say what is accepted") {
  auto r = kiln::ParseDuration("10 minutes");
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() ==
        "invalid duration \"10 minutes\": unknown unit ' '; expected numbers with units ms, s, m, "
        "h, d, e.g. \"90s\", \"1h30m\", \"250ms\"");
  CHECK(kiln::ParseDuration("10").message().starts_with("invalid duration \"10\": unit missing"));
  // A unit is the letters after its number, whole: not "3m" and then "o".
  CHECK(kiln::ParseDuration("3mo").message().starts_with(
      "invalid duration \"3mo\": unknown unit 'mo'; expected numbers with units ms, s, m"));
  CHECK(kiln::ParseDuration("2hours").message().starts_with(
      "invalid duration \"2hours\": unknown unit 'hours';"));
  CHECK(kiln::ParseDuration("1h30m15s250ms").value() == 5415250ms);
  CHECK_FALSE(kiln::ParseDuration("").ok());
  CHECK_FALSE(kiln::ParseDuration("s").ok());
  CHECK_FALSE(kiln::ParseDuration("99999999999999999999d").ok());
  // Past what a deadline or a stored time can hold once added to now: refused, named.
  CHECK(kiln::ParseDuration("3650d").value() == kiln::kMaxDuration);
  CHECK(kiln::ParseDuration("3650d1ms").message() ==
        "invalid duration \"3650d1ms\": longer than 3650d (ten years), the longest accepted");
}

TEST_CASE("durations format back") {
  CHECK(kiln::FormatDuration(90min) == "1h30m");
  CHECK(kiln::FormatDuration(0ms) == "0s");
  CHECK(kiln::FormatDuration(1500ms) == "1s500ms");
}

TEST_CASE("instants format as RFC 3339 in UTC") {
  kiln::Instant t{std::chrono::milliseconds(1795917075000)};
  CHECK(kiln::FormatRfc3339(t) == "2026-11-29T01:51:15Z");
  CHECK(kiln::FormatRfc3339(t + 250ms) == "2026-11-29T01:51:15.250Z");
}

TEST_CASE("sha256 of known inputs") {
  CHECK(kiln::Sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(kiln::Sha256Hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("instants format with milliseconds for the API") {
  kiln::Instant t{std::chrono::milliseconds(1795917075000)};
  CHECK(kiln::FormatRfc3339Millis(t) == "2026-11-29T01:51:15.000Z");
  CHECK(kiln::FormatRfc3339Millis(t + 250ms) == "2026-11-29T01:51:15.250Z");
  CHECK(kiln::FormatRfc3339Millis(kiln::Instant{}) == "1970-01-01T00:00:00.000Z");
}

TEST_CASE("years before 1000 keep four digits and read back (found by fuzz_values)") {
  auto t = kiln::ParseRfc3339("0022-02-02T00:00:00.1Z");
  REQUIRE(t.ok());
  CHECK(kiln::FormatRfc3339Millis(*t) == "0022-02-02T00:00:00.100Z");
  CHECK(kiln::ParseRfc3339(kiln::FormatRfc3339Millis(*t)).value() == *t);
  CHECK(kiln::FormatRfc3339(kiln::ParseRfc3339("0292-01-02T00:00:00Z").value()) ==
        "0292-01-02T00:00:00Z");
}

TEST_CASE("RFC 3339 times outside the years 0001-9999 in UTC are refused") {
  CHECK(kiln::ParseRfc3339("0001-01-01T00:00:00Z").value() == kiln::kEarliestInstant);
  CHECK(kiln::ParseRfc3339("9999-12-31T23:59:59.999Z").value() == kiln::kLatestInstant);
  for (const char* text : {"0000-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
                           "9999-12-31T23:00:00-01:00"}) {
    INFO(text);
    auto t = kiln::ParseRfc3339(text);
    CHECK(t.status().code() == kiln::ErrorCode::kInvalidArgument);
    CHECK(t.message() == "invalid time \"" + std::string(text) +
                             "\": outside the years 0001 to 9999 in UTC; expected RFC 3339, e.g. "
                             "\"2026-11-29T04:10:45Z\"");
  }
}

TEST_CASE("RFC 3339 parses UTC, offsets and fractions") {
  kiln::Instant t{std::chrono::milliseconds(1795917075000)};
  CHECK(kiln::ParseRfc3339("2026-11-29T01:51:15Z").value() == t);
  CHECK(kiln::ParseRfc3339("2026-11-29t01:51:15z").value() == t);
  CHECK(kiln::ParseRfc3339("2026-11-29 01:51:15Z").value() == t);
  CHECK(kiln::ParseRfc3339("2026-11-29T01:51:15.250Z").value() == t + 250ms);
  CHECK(kiln::ParseRfc3339("2026-11-29T01:51:15.2Z").value() == t + 200ms);
  CHECK(kiln::ParseRfc3339("2026-11-29T01:51:15.123456789Z").value() == t + 123ms);
  CHECK(kiln::ParseRfc3339("2026-11-29T03:51:15+02:00").value() == t);
  CHECK(kiln::ParseRfc3339("2026-11-28T20:21:15-05:30").value() == t);
  CHECK(kiln::ParseRfc3339("1970-01-01T00:00:00Z").value() == kiln::Instant{});
  CHECK(kiln::ParseRfc3339("2024-02-29T00:00:00Z").ok());
  CHECK(kiln::ParseRfc3339("2000-02-29T00:00:00Z").ok());
  CHECK(kiln::ParseRfc3339("1969-12-31T23:59:59.999Z").value() ==
        kiln::Instant{std::chrono::milliseconds(-1)});
}

TEST_CASE("RFC 3339 refuses what it cannot read, saying why") {
  CHECK(kiln::ParseRfc3339("yesterday").message() ==
        "invalid time \"yesterday\": date must be YYYY-MM-DD; expected RFC 3339, e.g. "
        "\"2026-11-29T04:10:45Z\"");
  CHECK(kiln::ParseRfc3339("2026-11-29")
            .message()
            .starts_with("invalid time \"2026-11-29\": time must be THH:MM:SS;"));
  CHECK(kiln::ParseRfc3339("2026-11-29T01:51:15")
            .message()
            .starts_with("invalid time \"2026-11-29T01:51:15\": time zone missing (Z or +HH:MM);"));
  CHECK(kiln::ParseRfc3339("2026-11-29T01:51:15.Z")
            .message()
            .starts_with("invalid time \"2026-11-29T01:51:15.Z\": digits expected after '.';"));
  CHECK(kiln::ParseRfc3339("2026-11-29T01:51:15+0200")
            .message()
            .starts_with(
                "invalid time \"2026-11-29T01:51:15+0200\": offset must be +HH:MM or -HH:MM;"));
  CHECK(kiln::ParseRfc3339("2026-11-29T01:51:15Zjunk")
            .message()
            .starts_with(
                "invalid time \"2026-11-29T01:51:15Zjunk\": unexpected text after the time zone;"));
  for (const char* bad : {"2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-02-29T00:00:00Z",
                          "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-01-01T24:00:00Z",
                          "2026-01-01T00:60:00Z", "2026-12-31T23:59:60Z"}) {
    INFO(bad);
    CHECK(kiln::ParseRfc3339(bad).message().find(": no such date or time;") != std::string::npos);
  }
  CHECK(kiln::ParseRfc3339("").status().code() == kiln::ErrorCode::kInvalidArgument);
  CHECK_FALSE(kiln::ParseRfc3339("2026-11-29T01:51:15+24:00").ok());
  CHECK_FALSE(kiln::ParseRfc3339(std::string_view("2026-11-29T01:51:15Z\0", 21)).ok());
}
