// for_each and max_parallel in pipeline files: read, and checked against the items.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "config/pipeline_loader.h"

using kiln::config::ParsePipeline;

namespace {

using Strings = std::vector<std::string>;

Strings ForEachErrors(const std::string& tasks) {
  Strings out;
  auto result = ParsePipeline("[pipeline]\nname = \"p\"\n" + tasks, "p.toml");
  for (const auto& d : result.diagnostics) out.push_back(d.ToString());
  CHECK(static_cast<bool>(result.pipeline) == out.empty());
  return out;
}

}  // namespace

TEST_CASE("for_each reads a file template or inline items, with max_parallel") {
  auto r = ParsePipeline(R"([pipeline]
name = "p"
[tasks.list]
command = "echo '[1]' > {{ run.dir }}/regions.json"
[tasks.train]
needs = ["list"]
for_each = "{{ run.dir }}/regions.json"
command = "train --region {{ item }} --n {{ item.index }}"
max_parallel = 4
[tasks.sweep]
for_each = [{ c = 0.1, depth = 3 }, { c = 1.0, depth = 5 }]
argv = ["fit", "--c", "{{ item.c }}", "--depth", "{{ item.depth }}"]
env = { ITEM = "{{ item.index }}" }
)",
                         "p.toml");
  INFO((r.diagnostics.empty() ? "" : r.diagnostics[0].ToString()));
  REQUIRE(r.pipeline);
  const auto& train = r.pipeline->spec.tasks[1];
  REQUIRE(train.for_each);
  CHECK(train.for_each->file == "{{ run.dir }}/regions.json");
  CHECK(train.max_parallel == 4);
  const auto& sweep = r.pipeline->spec.tasks[2];
  REQUIRE(sweep.for_each);
  REQUIRE(sweep.for_each->items.size() == 2);
  CHECK(sweep.for_each->items[1].Find("depth")->integer == 5);
  CHECK(sweep.max_parallel == 0);
}

TEST_CASE("item references are checked against the task and its inline items") {
  CHECK(ForEachErrors("[tasks.a]\ncommand = \"echo {{ item }}\"\n") ==
        Strings{"p.toml:4:11: tasks.a.command: {{ item }} names the item of a task with "
                "for_each; this task has none"});
  CHECK(
      ForEachErrors("[tasks.a]\nfor_each = [{ c = 1 }, { d = 2 }]\ncommand = \"fit {{ item.c }} {{ "
                    "item }}\"\n") ==
      Strings{"p.toml:5:11: tasks.a.command: {{ item.c }}: item 1 has no key 'c' (its keys: "
              "d)",
              "p.toml:5:11: tasks.a.command: {{ item }}: item 0 is a table; use {{ item.KEY }} "
              "for its keys"});
  CHECK(ForEachErrors(
            "[tasks.a]\nfor_each = [\"eu\", \"us\"]\nargv = [\"fit\", \"{{ item.region }}\"]\n") ==
        Strings{"p.toml:5:16: tasks.a.argv: {{ item.region }}: item 0 is a string, not a table; "
                "use {{ item }}"});
  CHECK(ForEachErrors(
            "[tasks.a]\nfor_each = \"{{ run.dir }}/{{ item }}.json\"\ncommand = \"true\"\n") ==
        Strings{"p.toml:4:12: tasks.a.for_each: {{ item }} cannot name the items' file: it is "
                "read before there is an item"});
}

TEST_CASE("for_each and max_parallel values are checked") {
  CHECK(ForEachErrors("[tasks.a]\nfor_each = [[1, 2]]\ncommand = \"true\"\n") ==
        Strings{"p.toml:4:13: tasks.a.for_each[0]: an item is a string, number, boolean, or a "
                "table of those; got an array"});
  CHECK(ForEachErrors("[tasks.a]\nfor_each = 3\ncommand = \"true\"\n") ==
        Strings{"p.toml:4:12: tasks.a.for_each: expected a JSON array file's path or an array "
                "of items, got an integer"});
  CHECK(ForEachErrors("[tasks.a]\nfor_each = [1]\nmax_parallel = 0\ncommand = \"true\"\n") ==
        Strings{"p.toml:5:16: tasks.a.max_parallel: must be at least 1, got 0"});
  // Beside an item that does not read, max_parallel is still checked.
  CHECK(ForEachErrors("[tasks.a]\nfor_each = [1, [2]]\nmax_parallel = 0\ncommand = \"true\"\n") ==
        Strings{"p.toml:4:16: tasks.a.for_each[1]: an item is a string, number, boolean, or a "
                "table of those; got an array",
                "p.toml:5:16: tasks.a.max_parallel: must be at least 1, got 0"});
  CHECK(ForEachErrors("[tasks.a]\nmax_parallel = 2\ncommand = \"true\"\n") ==
        Strings{"p.toml:4:16: tasks.a.max_parallel: max_parallel limits the instances of a task "
                "with for_each; this task has none"});
  std::string many = "[tasks.a]\ncommand = \"true\"\nfor_each = [";
  for (int i = 0; i <= 10000; ++i) many += (i ? ",1" : "1");
  many += "]\n";
  CHECK(ForEachErrors(many) ==
        Strings{"p.toml:5:12: tasks.a.for_each: 10001 items; at most 10000 (split the list over "
                "several tasks)"});
}
