// The event hub's reading of 'kiln_events' payloads: the newest event id a commit names, or none
// (then the hub reads it).
#include <catch2/catch.hpp>

#include "daemon/event_hub.h"

using kiln::daemon::EventIdOf;

TEST_CASE("a kiln_events payload names an event id only when it is all digits") {
  CHECK(EventIdOf("0") == 0);
  CHECK(EventIdOf("4711") == 4711);
  CHECK(EventIdOf("9223372036854775807") == INT64_MAX);
  CHECK_FALSE(EventIdOf("").has_value());  // "read again"
  CHECK_FALSE(EventIdOf("12a").has_value());
  CHECK_FALSE(EventIdOf(" 12").has_value());
  CHECK_FALSE(EventIdOf("-1").has_value());
  CHECK_FALSE(EventIdOf("9223372036854775808").has_value());  // out of range
}
