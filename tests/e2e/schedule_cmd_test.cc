// `kiln schedule next` through the binary: the daylight-saving table and its errors.
#include <catch2/catch.hpp>
#include <string>

#include "harness.h"
#include "tests/support/dst_table.h"

using namespace kiln::e2e;

TEST_CASE("kiln schedule next answers the daylight-saving table") {
  for (const auto& row : kiln::test::DstTable()) {
    Output o = Kiln({"schedule", "next", row.expr, "--tz", row.zone, "--from", row.from, "--count",
                     std::to_string(row.fires.size())});
    std::string expected;
    for (const auto& f : row.fires) expected += f + "\n";
    INFO(row.expr << " in " << row.zone << " after " << row.from << "\n" << o.err);
    CHECK(o.code == 0);
    CHECK(o.out == expected);
  }
}

TEST_CASE("kiln schedule next reads a pipeline's schedule and zone, and explains bad input") {
  TempDir dir;
  WriteFile(dir / "nightly.toml", R"([pipeline]
name = "nightly"
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
[tasks.a]
command = "true"
)");
  Output o = Kiln({"schedule", "next", "--pipeline", (dir / "nightly.toml").string(), "--from",
                   "2026-03-28T12:00:00Z", "--count", "2"});
  CHECK(o.code == 0);
  CHECK(o.out == "2026-03-29T03:00:00+02:00\n2026-03-30T03:00:00+02:00\n");

  WriteFile(dir / "bad.toml", R"([pipeline]
name = "bad"
schedule = "61 * * * *"
timezone = "Mars/Olympus"
[tasks.a]
command = "true"
)");
  const std::string bad = (dir / "bad.toml").string();
  o = Kiln({"schedule", "next", "--pipeline", bad});
  CHECK(o.code == 1);
  CHECK(o.err == bad + ":3:12: pipeline.schedule: minute field '61' out of range 0-59\n" + bad +
                     ":4:12: pipeline.timezone: unknown time zone 'Mars/Olympus'; use an IANA "
                     "name such as 'Europe/Berlin' or 'UTC'\n");

  o = Kiln({"schedule", "next", "0 0 30 2 *"});
  CHECK(o.code == 1);
  CHECK(o.err == "kiln: schedule '0 0 30 2 *': never fires: day 30 never occurs in February\n");
  o = Kiln({"schedule", "next", "@daily", "--tz", "Europe/Nowhere"});
  CHECK(o.code == 1);
  CHECK(o.err ==
        "kiln: schedule '@daily': unknown time zone 'Europe/Nowhere'; use an IANA name "
        "such as 'Europe/Berlin' or 'UTC'\n");
  o = Kiln({"schedule", "next", "@daily", "--from", "yesterday"});
  CHECK(o.code == 1);
  CHECK(o.err.rfind("kiln: --from: ", 0) == 0);
  o = Kiln({"schedule", "next"});
  CHECK(o.code == 1);
  CHECK(o.err == "kiln: give either a schedule expression or --pipeline FILE\n");
  // Without --from: the next fires after now, strictly increasing.
  o = Kiln({"schedule", "next", "every 1s", "--count", "3"});
  CHECK(o.code == 0);
  CHECK(std::count(o.out.begin(), o.out.end(), '\n') == 3);
}
