#include "web/openapi.h"

#include <set>

#include "tests/web/harness.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Every "$ref" in `node`.
void CollectRefs(const json& node, std::set<std::string>& refs) {
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      if (key == "$ref") refs.insert(value.get<std::string>());
      CollectRefs(value, refs);
    }
  } else if (node.is_array()) {
    for (const auto& value : node) CollectRefs(value, refs);
  }
}

}  // namespace

TEST_CASE("the OpenAPI document describes exactly the routes served, with their roles") {
  TestServer server;
  auto client = server.Client();
  auto r = client->Get("/api/v1/openapi.json", AsViewer());
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "application/json");
  json doc = json::parse(r->body);
  CHECK(r->body == OpenApiDocument());
  CHECK(doc["openapi"] == "3.0.3");

  std::set<std::pair<std::string, std::string>> served, described;
  for (const auto& [method, path] : Server::Routes()) {
    INFO(method << " " << path);
    served.emplace(Lower(method), path);
    REQUIRE(doc["paths"].contains(path));
    REQUIRE(doc["paths"][path].contains(Lower(method)));
    const json& op = doc["paths"][path][Lower(method)];
    CHECK(op.contains("responses"));
    std::string role = op.value("x-kiln-role", "");
    if (path == "/" || path == "/healthz" || path == "/ui/{file}" ||
        (method == "POST" && path.starts_with("/api/v1/session"))) {
      CHECK(role == "none");
      CHECK(op["security"] == json::array());
    } else if (method == "GET") {
      CHECK(role == "viewer");
    } else {
      CHECK(role == (path.ends_with("/mark") ? "admin" : "operator"));
    }
    // Every {placeholder} of the path is a declared parameter.
    for (size_t at = path.find('{'); at != std::string::npos; at = path.find('{', at + 1)) {
      std::string name = path.substr(at + 1, path.find('}', at) - at - 1);
      bool declared = false;
      for (const auto& p : op["parameters"]) {
        json param = p;
        if (p.contains("$ref")) {
          std::string ref = p["$ref"];
          param = doc["components"]["parameters"][ref.substr(ref.rfind('/') + 1)];
        }
        declared = declared || (param["in"] == "path" && param["name"] == name);
      }
      CHECK(declared);
    }
  }
  for (const auto& [path, item] : doc["paths"].items()) {
    for (const auto& [method, op] : item.items()) described.emplace(method, path);
  }
  CHECK(described == served);

  std::set<std::string> refs;
  CollectRefs(doc, refs);
  for (const auto& ref : refs) {
    INFO(ref);
    REQUIRE(ref.starts_with("#/"));
    CHECK(doc.contains(json::json_pointer(ref.substr(1))));
  }
}
