// The pure parts of the HTTP front: request targets and Range headers.
#include "web/http.h"

#include <catch2/catch.hpp>

#include "web/range.h"

namespace kiln::web {
namespace {

std::string Describe(const RangeRequest& r) {
  switch (r.kind) {
    case RangeRequest::kNone:
      return "all";
    case RangeRequest::kOne:
      return std::to_string(r.first) + "-" + std::to_string(r.last);
    case RangeRequest::kRefused:
      return "416: " + r.why;
  }
  return "";
}

TEST_CASE("a Range header is one range of bytes") {
  CHECK(Describe(ParseRange("bytes=0-99", 1000)) == "0-99");
  CHECK(Describe(ParseRange("bytes=100-", 1000)) == "100-999");
  CHECK(Describe(ParseRange("bytes=900-5000", 1000)) == "900-999");
  CHECK(Describe(ParseRange("bytes=-10", 1000)) == "990-999");
  CHECK(Describe(ParseRange("bytes=-5000", 1000)) == "0-999");
  CHECK(Describe(ParseRange(" bYtes = 5 - 6 ", 1000)) == "5-6");
  CHECK(Describe(ParseRange("lines=0-9", 1000)) == "all");
  CHECK(Describe(ParseRange("bytes=1000-", 1000)) ==
        "416: the range starts at byte 1000; there are 1000");
  CHECK(Describe(ParseRange("bytes=0-,0-,0-", 1000)) ==
        "416: one range per request: several ranges in one Range header are not served");
  CHECK(Describe(ParseRange("bytes=9-3", 1000)) ==
        "416: the Range header must be bytes=FIRST-LAST with FIRST <= LAST, bytes=FIRST- or "
        "bytes=-N");
  CHECK(Describe(ParseRange("bytes=99999999999999999999-", 1000)) ==
        "416: the Range header must be bytes=FIRST-LAST with FIRST <= LAST, bytes=FIRST- or "
        "bytes=-N");
  CHECK(Describe(ParseRange("bytes=-0", 1000)) ==
        "416: the range asks for no bytes of the 1000 there are");
  CHECK(Describe(ParseRange("bytes", 1000)) == "416: the Range header must be bytes=FIRST-LAST");
}

TEST_CASE("a request target decodes into its path and query parameters") {
  std::string path;
  Params params;
  REQUIRE(ParseTarget("/api/v1/runs/a%2Fb?pipeline=a+b&x=%41&flag&=v&&x=2", path, params));
  CHECK(path == "/api/v1/runs/a/b");
  CHECK(params == Params{{"pipeline", "a b"}, {"x", "A"}, {"flag", ""}, {"", "v"}, {"x", "2"}});
  REQUIRE(ParseTarget("/a+b#frag", path, params));
  CHECK(path == "/a+b#frag");
  CHECK(params.empty());
  CHECK_FALSE(ParseTarget("http://example.com/", path, params));
  CHECK_FALSE(ParseTarget("*", path, params));
  CHECK_FALSE(ParseTarget("/a%2", path, params));
  CHECK_FALSE(ParseTarget("/a?b=%zz", path, params));
}

}  // namespace
}  // namespace kiln::web
