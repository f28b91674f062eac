#include <catch2/catch.hpp>

#include "web/server.h"

using kiln::web::ParseListen;

TEST_CASE("listen addresses are HOST:PORT") {
  auto v4 = ParseListen("127.0.0.1:8080");
  REQUIRE(v4.ok());
  CHECK(v4->first == "127.0.0.1");
  CHECK(v4->second == 8080);
  auto v6 = ParseListen("[::1]:0");
  REQUIRE(v6.ok());
  CHECK(v6->first == "::1");
  CHECK(v6->second == 0);
}

TEST_CASE("bad listen addresses say what is accepted") {
  CHECK(ParseListen("8080").message() ==
        "listen address '8080' must be HOST:PORT, e.g. 127.0.0.1:8080");
  CHECK(ParseListen("localhost:").message() ==
        "listen address 'localhost:' must be HOST:PORT, e.g. 127.0.0.1:8080");
  CHECK(ParseListen("localhost:http").message() ==
        "listen address 'localhost:http': port must be a number 0-65535");
  CHECK(ParseListen("localhost:65536").message() ==
        "listen address 'localhost:65536': port must be a number 0-65535");
  CHECK(ParseListen("localhost:99999999999").message() ==
        "listen address 'localhost:99999999999': port must be a number 0-65535");
}
