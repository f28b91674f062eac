#include <catch2/catch.hpp>

#include "common/sha256.h"
#include "common/time.h"

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
  CHECK_FALSE(kiln::ParseDuration("").ok());
  CHECK_FALSE(kiln::ParseDuration("s").ok());
  CHECK_FALSE(kiln::ParseDuration("99999999999999999999d").ok());
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
