#include "web/input.h"

#include <catch2/catch.hpp>

#include "web/json_body.h"

using namespace kiln;
using namespace kiln::web;

TEST_CASE("ids follow the pipeline format") {
  CHECK(CheckPipelineName("ml-lifecycle.v2_a").ok());
  CHECK(CheckPipelineName(std::string(64, 'a')).ok());
  CHECK(CheckPipelineName(std::string(65, 'a')).message() ==
        "pipeline name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' must "
        "match ^[a-z0-9][a-z0-9_.-]{0,63}$");
  for (std::string bad :
       std::vector<std::string>{"", "-x", ".x", "..", "Ml", "a/b", "a b", std::string("a\0b", 3)}) {
    INFO(bad);
    CHECK_FALSE(CheckPipelineName(bad).ok());
  }
  CHECK(CheckPipelineName(std::string("a\0b", 3)).message() ==
        "pipeline name 'a?b' must match ^[a-z0-9][a-z0-9_.-]{0,63}$");
  CHECK(CheckTaskId("train_2-b").ok());
  CHECK_FALSE(CheckTaskId("train.b").ok());
  CHECK(CheckTaskId("..").message() ==
        "task id '..' must match ^[a-z0-9][a-z0-9_-]{0,63}$, or name an instance: train[3]");
  // Instances of a task with for_each: index 0..9999, no leading zero, one pair of brackets.
  for (const char* good : {"train[0]", "train[3]", "t_2-b[9999]"}) {
    INFO(good);
    CHECK(CheckTaskId(good).ok());
  }
  // The longest: 64 characters and an index of 4 digits (found by fuzz_request, whose own
  // property said 64 in all).
  CHECK(CheckTaskId(std::string(64, 'a') + "[9999]").ok());
  CHECK_FALSE(CheckTaskId(std::string(65, 'a') + "[0]").ok());
  for (const char* bad : {"train[]", "train[01]", "train[10000]", "train[-1]", "train[1][2]", "[3]",
                          "train[3", "train3]", "Train[3]", "train[3]x", "../x[1]"}) {
    INFO(bad);
    CHECK_FALSE(CheckTaskId(bad).ok());
  }
}

TEST_CASE("decimal numbers are read strictly") {
  CHECK(ParseDecimal("1", 1) == 1);
  CHECK(ParseDecimal("9223372036854775807", 1) == INT64_MAX);
  CHECK(ParseDecimal("0", 0) == 0);
  for (const char* bad : {"0", "", "01", "-1", "+1", "1.0", "1e3", " 1", "9223372036854775808",
                          "99999999999999999999"}) {
    INFO(bad);
    CHECK_FALSE(ParseDecimal(bad, 1));
  }
  CHECK(ParseCount("007") == 7);
  CHECK(ParseCount("99999999999999999999") == INT64_MAX);
  CHECK(ParseCount(std::string(1000, '9')) == INT64_MAX);
  CHECK_FALSE(ParseCount(std::string(1001, '9')));
  CHECK_FALSE(ParseCount("-1"));
  CHECK_FALSE(ParseCount(""));
}

TEST_CASE("JSON bodies keep the text of numbers as sent") {
  auto body = ParseJsonBody(
      R"({"params": {"a": 99999999999999999999, "b": 1.50, "c": 1e3, "d": 7, "e/~": -0.0}})", 32);
  REQUIRE(body.ok());
  const auto& params = body->value["params"];
  CHECK(body->NumberText("/params/a", params["a"]) == "99999999999999999999");
  CHECK(body->NumberText("/params/b", params["b"]) == "1.50");
  CHECK(body->NumberText("/params/c", params["c"]) == "1e3");
  CHECK(body->NumberText("/params/d", params["d"]) == "7");
  CHECK(body->NumberText("/params/" + PointerToken("e/~"), params["e/~"]) == "-0.0");
  auto nested = ParseJsonBody(R"([[1.5], {"x": [2.5]}])", 32);
  REQUIRE(nested.ok());
  CHECK(nested->number_text ==
        std::map<std::string, std::string>{{"/0/0", "1.5"}, {"/1/x/0", "2.5"}});
}

TEST_CASE("JSON bodies are refused with reasons") {
  CHECK(ParseJsonBody(std::string(32, '[') + std::string(32, ']'), 32).ok());
  CHECK(ParseJsonBody(std::string(33, '[') + std::string(33, ']'), 32).message() ==
        "body nests deeper than 32 levels");
  CHECK(ParseJsonBody(std::string(100000, '['), 32).message() ==
        "body nests deeper than 32 levels");
  CHECK(ParseJsonBody("{\"a\": 1e400}", 32).message() ==
        "body is not valid JSON: number overflow parsing '1e400'");
  CHECK(ParseJsonBody("{\"a\": 1, \"a\": 2}", 32).message() == "body repeats the key 'a'");
  CHECK(ParseJsonBody(R"({"a": "x\u0000y"})", 32).message() ==
        "body has a string with a NUL character");
  CHECK(ParseJsonBody(R"({"a\u0000": 1})", 32).message() == "body has a key with a NUL character");
  CHECK(ParseJsonBody("{\"a\": tru}", 32)
            .message()
            .starts_with("body is not valid JSON: parse error at line 1, column 10: syntax error"));
  CHECK(ParseJsonBody(std::string("{\"a\": \"x\0y\"}", 12), 32)
            .message()
            .starts_with("body is not valid JSON: parse error"));
  CHECK(ParseJsonBody("", 32).message().starts_with("body is not valid JSON"));
  CHECK(ParseJsonBody("{} {}", 32).message().starts_with("body is not valid JSON"));
  std::string long_string = "\"" + std::string(100000, 'x');
  CHECK(ParseJsonBody(long_string, 32).message().size() < 300);
}
