#include "common/text.h"

#include <catch2/catch.hpp>

TEST_CASE("valid UTF-8 is kept byte for byte") {
  for (std::string s : {"", "plain ascii",
                        "gr\xC3\xBC\xC3\x9F"
                        "e",
                        "\xE2\x82\xAC 5", "\xF0\x9F\x94\xA5 kiln", "\xEF\xBF\xBD"}) {
    CHECK(kiln::IsSafeUtf8(s));
    CHECK(kiln::SafeUtf8(s) == s);
  }
}

TEST_CASE("every malformed byte and every NUL becomes U+FFFD") {
  const std::string r = "\xEF\xBF\xBD";
  CHECK(kiln::SafeUtf8(std::string("a\xFF"
                                   "b")) == "a" + r + "b");
  CHECK(kiln::SafeUtf8(std::string("a\0b", 3)) == "a" + r + "b");
  CHECK(kiln::SafeUtf8("\xC3") == r);                          // truncated
  CHECK(kiln::SafeUtf8("\xC0\xAF") == r + r);                  // overlong '/'
  CHECK(kiln::SafeUtf8("\xED\xA0\x80") == r + r + r);          // a surrogate
  CHECK(kiln::SafeUtf8("\xF4\x90\x80\x80") == r + r + r + r);  // above U+10FFFF
  CHECK(kiln::SafeUtf8("ok \xE2\x82 \xE2\x82\xAC") == "ok " + r + r + " \xE2\x82\xAC");
  CHECK_FALSE(kiln::IsSafeUtf8("\x80"));
}

TEST_CASE("items are joined with the separator between them") {
  CHECK(kiln::Join(std::vector<std::string>{}, ", ") == "");
  CHECK(kiln::Join(std::vector<std::string>{"a"}, ", ") == "a");
  CHECK(kiln::Join(std::vector<std::string>{"a", "", "c"}, ",") == "a,,c");
}
