#include "scheduler/fire_plan.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using kiln::Instant;
using namespace kiln::scheduler;

namespace {

Instant At(const char* rfc3339) {
  auto t = kiln::ParseRfc3339(rfc3339);
  REQUIRE(t.ok());
  return *t;
}

kiln::dag::Schedule Hourly() {
  auto s = kiln::dag::MakeSchedule("0 * * * *", "UTC");
  REQUIRE(s.ok());
  return *s;
}

// "logical_date<-interval start" per fire, with a '!' for catch-up fires.
std::string Describe(const std::vector<Fire>& fires) {
  std::string out;
  for (const Fire& f : fires) {
    if (!out.empty()) out += " ";
    out += kiln::FormatRfc3339(f.logical_date) + "<-" + kiln::FormatRfc3339(f.data_interval_start) +
           (f.missed ? "!" : "");
  }
  return out;
}

}  // namespace

TEST_CASE("a pipeline seen for the first time starts from now") {
  auto due = PlanFires(Hourly(), std::nullopt, At("2026-11-29T10:30:00Z"),
                       At("2026-11-29T10:30:00Z"), Catchup::kAll, 100);
  CHECK(due.run.empty());
  CHECK(due.skipped_missed == 0);
  CHECK(due.cursor == At("2026-11-29T10:30:00Z"));
}

TEST_CASE("an on-time fire runs with its data interval, nothing is due twice") {
  const Instant live = At("2026-11-29T09:00:00Z");
  auto due = PlanFires(Hourly(), At("2026-11-29T10:30:00Z"), live, At("2026-11-29T11:00:00.004Z"),
                       Catchup::kNone, 100);
  CHECK(Describe(due.run) == "2026-11-29T11:00:00Z<-2026-11-29T10:00:00Z");
  CHECK(due.cursor == At("2026-11-29T11:00:00Z"));
  // The same check again from the new cursor: nothing.
  auto again =
      PlanFires(Hourly(), due.cursor, live, At("2026-11-29T11:00:00.500Z"), Catchup::kNone, 100);
  CHECK(again.run.empty());
  CHECK_FALSE(again.cursor);
}

TEST_CASE("after downtime each catchup policy decides the missed fires") {
  // Down from 10:30 to 13:20: the fires at 11:00, 12:00 and 13:00 were missed.
  const Instant cursor = At("2026-11-29T10:30:00Z");
  const Instant start = At("2026-11-29T13:20:00Z");
  auto none = PlanFires(Hourly(), cursor, start, start, Catchup::kNone, 100);
  CHECK(none.run.empty());
  CHECK(none.skipped_missed == 3);
  CHECK(none.cursor == At("2026-11-29T13:00:00Z"));
  auto latest = PlanFires(Hourly(), cursor, start, start, Catchup::kLatest, 100);
  CHECK(Describe(latest.run) == "2026-11-29T13:00:00Z<-2026-11-29T12:00:00Z!");
  CHECK(latest.skipped_missed == 2);
  auto all = PlanFires(Hourly(), cursor, start, start, Catchup::kAll, 100);
  CHECK(Describe(all.run) ==
        "2026-11-29T11:00:00Z<-2026-11-29T10:00:00Z! 2026-11-29T12:00:00Z<-2026-11-29T11:00:00Z! "
        "2026-11-29T13:00:00Z<-2026-11-29T12:00:00Z!");
  CHECK(all.skipped_missed == 0);
  // Capped at 2: the two most recent run, the oldest is skipped.
  auto capped = PlanFires(Hourly(), cursor, start, start, Catchup::kAll, 2);
  CHECK(Describe(capped.run) ==
        "2026-11-29T12:00:00Z<-2026-11-29T11:00:00Z! 2026-11-29T13:00:00Z<-2026-11-29T12:00:00Z!");
  CHECK(capped.skipped_missed == 1);
  CHECK(capped.cursor == At("2026-11-29T13:00:00Z"));
}

TEST_CASE("a fire after the daemon started is on time even when handled late") {
  // Started at 10:59:59; the 11:00 fire is handled at 11:00:02 with catchup none: it runs.
  auto due = PlanFires(Hourly(), At("2026-11-29T10:59:59Z"), At("2026-11-29T10:59:59Z"),
                       At("2026-11-29T11:00:02Z"), Catchup::kNone, 100);
  CHECK(Describe(due.run) == "2026-11-29T11:00:00Z<-2026-11-29T10:00:00Z");
}

TEST_CASE("a clock stepped back repeats nothing") {
  // Cursor at 11:00 (that fire ran); the clock now reads 10:05, then 11:00 again.
  auto back = PlanFires(Hourly(), At("2026-11-29T11:00:00Z"), At("2026-11-29T09:00:00Z"),
                        At("2026-11-29T10:05:00Z"), Catchup::kAll, 100);
  CHECK(back.run.empty());
  CHECK_FALSE(back.cursor);
  auto same = PlanFires(Hourly(), At("2026-11-29T11:00:00Z"), At("2026-11-29T09:00:00Z"),
                        At("2026-11-29T11:00:00Z"), Catchup::kAll, 100);
  CHECK(same.run.empty());
  auto next = PlanFires(Hourly(), At("2026-11-29T11:00:00Z"), At("2026-11-29T09:00:00Z"),
                        At("2026-11-29T12:00:00Z"), Catchup::kAll, 100);
  CHECK(Describe(next.run) == "2026-11-29T12:00:00Z<-2026-11-29T11:00:00Z");
}

TEST_CASE("years of missed interval fires are counted without walking them") {
  auto every = kiln::dag::MakeSchedule("every 1s", "UTC");
  REQUIRE(every.ok());
  const Instant now = At("2026-11-29T00:00:00Z");
  auto due = PlanFires(*every, At("2016-11-29T00:00:00Z"), now, now, Catchup::kAll, 3);
  CHECK(Describe(due.run) ==
        "2026-11-28T23:59:58Z<-2026-11-28T23:59:57Z! 2026-11-28T23:59:59Z<-2026-11-28T23:59:58Z! "
        "2026-11-29T00:00:00Z<-2026-11-28T23:59:59Z");
  // Ten years of seconds (3,652 days: 2020 and 2024 have 29 February) minus the three that run.
  // The fire at `now` itself is on time: the daemon is watching at that instant.
  CHECK(due.skipped_missed == int64_t{3652} * 86400 - 3);
}

TEST_CASE("overlap: skip, queue and cancel_running") {
  const Fire on_time{At("2026-11-29T11:00:00Z"), At("2026-11-29T10:00:00Z"), false};
  const Fire missed{At("2026-11-29T10:00:00Z"), At("2026-11-29T09:00:00Z"), true};
  auto skip = ApplyOverlap({on_time}, 1, 1, Overlap::kSkip);
  CHECK(skip.run.empty());
  CHECK(Describe(skip.skipped) == "2026-11-29T11:00:00Z<-2026-11-29T10:00:00Z");
  CHECK(ApplyOverlap({on_time}, 1, 2, Overlap::kSkip).run.size() == 1);
  // Catch-up runs are created whatever the policy; an on-time fire after them is then skipped.
  auto catchup = ApplyOverlap({missed, on_time}, 0, 1, Overlap::kSkip);
  CHECK(Describe(catchup.run) == "2026-11-29T10:00:00Z<-2026-11-29T09:00:00Z!");
  CHECK(catchup.skipped.size() == 1);
  auto queue = ApplyOverlap({on_time}, 3, 1, Overlap::kQueue);
  CHECK(queue.run.size() == 1);
  CHECK(queue.cancel_oldest == 0);
  auto cancel = ApplyOverlap({on_time}, 1, 1, Overlap::kCancelRunning);
  CHECK(cancel.run.size() == 1);
  CHECK(cancel.cancel_oldest == 1);
  CHECK(ApplyOverlap({on_time}, 2, 3, Overlap::kCancelRunning).cancel_oldest == 0);
  CHECK(ApplyOverlap({on_time}, 4, 3, Overlap::kCancelRunning).cancel_oldest == 2);
}
