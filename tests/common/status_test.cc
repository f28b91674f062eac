// Status and Result (common/status.h).
#include "common/status.h"

#include <catch2/catch.hpp>
#include <string>

using namespace kiln;

TEST_CASE("a Result holds a value or an error, and its status reads either way") {
  Result<int> value(7);
  REQUIRE(value.ok());
  CHECK(*value == 7);
  // Reading the status of a value is an ok Status, never an exception.
  CHECK(value.status().ok());
  CHECK(value.status().message().empty());

  Result<int> error(Status::Error(ErrorCode::kUnavailable, "database: gone"));
  REQUIRE_FALSE(error.ok());
  CHECK(error.status().code() == ErrorCode::kUnavailable);
  CHECK(error.message() == "database: gone");
}
