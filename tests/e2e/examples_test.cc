// Every example runs through the binary and ends exactly as its expected*.json says.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "harness.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;

namespace {

void CheckExample(const std::string& example, const std::string& expected_file) {
  fs::path dir = SourceDir() / "examples" / example;
  json expected = json::parse(ReadFile(dir / expected_file));
  TempDir data;
  std::vector<std::string> args = {"run",        (dir / "pipeline.toml").string(),
                                   "--output",   "json",
                                   "--data-dir", data.path().string()};
  if (expected.contains("params")) {
    for (const auto& [k, v] : expected["params"].items()) {
      args.push_back("-p");
      args.push_back(k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
    }
  }
  auto r = Kiln(args, SourceDir());
  INFO(r.err);
  std::string want_run = expected["run"];
  CHECK(r.code == (want_run == "success" ? 0 : 1));
  json got = json::parse(r.out);
  CHECK(got["state"] == want_run);
  std::map<std::string, json> tasks;
  for (const auto& t : got["tasks"]) tasks[t["id"]] = t;
  REQUIRE(tasks.size() == expected["tasks"].size());
  for (const auto& [id, want] : expected["tasks"].items()) {
    INFO("task " << id);
    REQUIRE(tasks.count(id));
    CHECK(tasks[id]["state"] == want["state"]);
    CHECK(tasks[id]["attempts"] == want["attempts"]);
  }
  // The same outcome is what PostgreSQL holds.
  CHECK(Sql("select state from runs where id = " + got["id"].dump()) == want_run);
}

}  // namespace

TEST_CASE("example ml-lifecycle trains, evaluates and registers a model") {
  CheckExample("ml-lifecycle", "expected.json");
}

TEST_CASE("example ml-lifecycle skips promotion below the accuracy gate") {
  CheckExample("ml-lifecycle", "expected-gate.json");
}

TEST_CASE("example ml-lifecycle fails at the data check on a corrupted input") {
  CheckExample("ml-lifecycle", "expected-corrupted.json");
}

TEST_CASE("example retries") { CheckExample("retries", "expected.json"); }
TEST_CASE("example trigger-rules") { CheckExample("trigger-rules", "expected.json"); }
TEST_CASE("example timeouts") { CheckExample("timeouts", "expected.json"); }
TEST_CASE("example params") { CheckExample("params", "expected.json"); }
TEST_CASE("example pools-priority") { CheckExample("pools-priority", "expected.json"); }
TEST_CASE("example pytorch-train trains on the gpu pool and passes its gate") {
  CheckExample("pytorch-train", "expected.json");
}

TEST_CASE("example pytorch-train skips promotion below the accuracy gate") {
  CheckExample("pytorch-train", "expected-gate.json");
}

TEST_CASE("example faiss-retrieval builds an index and passes its recall gate") {
  CheckExample("faiss-retrieval", "expected.json");
}

TEST_CASE("example faiss-retrieval skips promotion of an index with too little recall") {
  CheckExample("faiss-retrieval", "expected-gate.json");
}

TEST_CASE("example heartbeat") { CheckExample("heartbeat", "expected.json"); }

TEST_CASE("every example validates") {
  auto r = Kiln({"validate", (SourceDir() / "examples").string()});
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK(r.out.starts_with("ok: "));
}

TEST_CASE("example pools-priority starts waiting tasks by priority when slots are scarce") {
  fs::path dir = SourceDir() / "examples" / "pools-priority";
  TempDir data;
  auto r = Kiln({"run", (dir / "pipeline.toml").string(), "-j", "1", "--output", "json",
                 "--data-dir", data.path().string()},
                SourceDir());
  INFO(r.err);
  REQUIRE(r.code == 0);
  std::string id = json::parse(r.out)["id"].dump();
  CHECK(ReadFile(data / ("runs/pools-priority/" + id + "/order.txt")) ==
        "urgent\nhigh\nnormal\nlow\n");
}
