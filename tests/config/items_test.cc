#include "config/items.h"

#include <catch2/catch.hpp>

#include "dag/items.h"

using kiln::config::ParseItems;

TEST_CASE("a for_each file's items are read, and what is not an item is named") {
  auto items = ParseItems(R"(["eu", 3, 0.5, true, {"c": 1.0, "name": "x"}])");
  REQUIRE(items.ok());
  REQUIRE(items->size() == 5);
  CHECK(kiln::dag::ItemText((*items)[0]) == "eu");
  CHECK(kiln::dag::ItemText((*items)[1]) == "3");
  CHECK(kiln::dag::ItemText((*items)[2]) == "0.5");
  CHECK(kiln::dag::ItemText((*items)[3]) == "true");
  CHECK(kiln::dag::ItemJson((*items)[4]) == R"({"c":1.0,"name":"x"})");
  CHECK(ParseItems("[]").value().empty());
  CHECK(ParseItems("{\"a\": 1}").message() == "expected a JSON array of items, got an object");
  CHECK(ParseItems("[1, [2]]").message() ==
        "item 1 is an array; an item is a string, number, boolean or an object of those");
  CHECK(ParseItems("[{\"a\": null}]").message() ==
        "item 0.a is null; an item is a string, number, boolean or an object of those");
  CHECK(ParseItems("[1,").message() == "not valid JSON; expected a JSON array");
  CHECK(ParseItems("[1.5e400]").message() ==
        "holds a number too large for a double; expected a JSON array");
  std::string many = "[";
  for (int i = 0; i <= 10000; ++i) many += (i ? ",1" : "1");
  CHECK(ParseItems(many + "]").message() == "10001 items; at most 10000");
  CHECK(kiln::config::ReadItems("/no/such/items.json").message() ==
        "for_each file '/no/such/items.json': cannot read file: No such file or directory");
}
