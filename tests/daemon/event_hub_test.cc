// The event hub on a real database: the newest event id it publishes is one it read, so a
// notification on 'kiln_events' from anyone who can connect (NOTIFY needs no rights) can wake
// it, never move it past events that do not exist.
#include "daemon/event_hub.h"

#include <catch2/catch.hpp>
#include <chrono>

#include "tests/store/run_fixtures.h"

using namespace kiln;
using namespace kiln::store;
using namespace kiln::store::testing;
using namespace std::chrono_literals;

TEST_CASE("the event hub reads the newest event id, whatever a notification's payload says") {
  TestDatabase t;
  auto db = t.Open();
  const RunId run = CreateOrFail(*db, SimpleRun({"a"}));
  const int64_t first = db->LastEventId().value();
  daemon::EventHub hub(t.url());
  hub.Start();
  CHECK(hub.last_id() == first);
  // A payload naming an id far ahead, then a real commit of events.
  t.Rows("SELECT pg_notify('kiln_events', '9000000000')");
  REQUIRE(db->RecordEvent("cancel_requested", run, "ops", "{}").ok());
  const int64_t newest = db->LastEventId().value();
  REQUIRE(newest > first);
  REQUIRE(hub.WaitForEvents(newest - 1, 60s));
  CHECK(hub.last_id() == newest);
  hub.Stop();
}
