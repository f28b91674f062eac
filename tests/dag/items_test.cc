#include "dag/items.h"

#include <catch2/catch.hpp>

namespace {

using Item = kiln::dag::Value;  // (kiln::Value is a function)

Item Scalar(Item::Type type) {
  Item v;
  v.type = type;
  return v;
}

Item Text(std::string s, std::string key = "") {
  Item v = Scalar(Item::Type::kString);
  v.string = std::move(s);
  v.key = std::move(key);
  return v;
}

}  // namespace

TEST_CASE("an item's text, JSON and template values") {
  Item region = Text("eu-west \"1\"\n");
  CHECK(kiln::dag::ItemText(region) == "eu-west \"1\"\n");
  CHECK(kiln::dag::ItemJson(region) == R"("eu-west \"1\"\n")");
  CHECK(kiln::dag::ItemValues(region, 3) ==
        kiln::dag::TemplateValues{{"item", "eu-west \"1\"\n"}, {"item.index", "3"}});

  Item c = Scalar(Item::Type::kFloat);
  c.number = 0.1;
  c.key = "c";
  Item depth = Scalar(Item::Type::kInteger);
  depth.integer = 5;
  depth.key = "depth";
  Item fast = Scalar(Item::Type::kBool);
  fast.boolean = true;
  fast.key = "fast";
  Item table = Scalar(Item::Type::kTable);
  table.items = {c, depth, fast, Text("a\tb", "name")};
  CHECK(kiln::dag::ItemJson(table) == R"({"c":0.1,"depth":5,"fast":true,"name":"a\tb"})");
  CHECK(kiln::dag::ItemValues(table, 0) == kiln::dag::TemplateValues{{"item.c", "0.1"},
                                                                     {"item.depth", "5"},
                                                                     {"item.fast", "true"},
                                                                     {"item.index", "0"},
                                                                     {"item.name", "a\tb"}});
  // A member named "index" does not hide the instance's index (it is in KILN_ITEM).
  Item own_index = Scalar(Item::Type::kInteger);
  own_index.integer = 5;
  own_index.key = "index";
  Item with_index = Scalar(Item::Type::kTable);
  with_index.items = {own_index, c};
  CHECK(kiln::dag::ItemValues(with_index, 2) ==
        kiln::dag::TemplateValues{{"item.c", "0.1"}, {"item.index", "2"}});
  CHECK(kiln::dag::ItemJson(with_index) == R"({"index":5,"c":0.1})");
  CHECK(kiln::dag::ItemJson(Text(std::string("\x01", 1))) == R"("\u0001")");
  CHECK(kiln::dag::InstanceName("train", 12) == "train[12]");
}

TEST_CASE("an instance's name gives back its task and index") {
  auto ref = kiln::dag::ParseInstanceName("train[12]");
  REQUIRE(ref.has_value());
  CHECK(ref->task == "train");
  CHECK(ref->index == 12);
  CHECK(kiln::dag::ParseInstanceName("a[1][9999]")->task == "a[1]");
  for (const char* bad : {"train", "train[]", "train[01]", "train[10000]", "train[-1]", "train[3",
                          "train[3]x", "train[ 3]"}) {
    INFO(bad);
    CHECK_FALSE(kiln::dag::ParseInstanceName(bad).has_value());
  }
}
