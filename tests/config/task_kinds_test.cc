// A task's keys of another kind than shell: kept as a tree of values with their positions, and
// checked by the kind catalog the loader is given.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "config/pipeline_loader.h"
#include "dag/kinds.h"

using kiln::config::ParsePipeline;
using kiln::dag::Value;

namespace {

// Knows shell and "probe", which reports the keys it is given.
class Probe final : public kiln::dag::KindCatalog {
 public:
  std::vector<std::string_view> Names() const override { return {"probe", "shell"}; }
  bool Has(std::string_view kind) const override { return kind == "probe" || kind == "shell"; }
  void Check(const kiln::dag::TaskSpec& task, const kiln::dag::PipelineSpec&,
             std::vector<kiln::dag::Diagnostic>& out) const override {
    for (const Value& v : task.options.items) {
      out.push_back(
          {"", v.loc, "tasks." + task.id + "." + v.key, "seen " + std::string(v.Phrase())});
    }
  }
};

std::vector<std::string> Errors(const kiln::config::LoadResult& r) {
  std::vector<std::string> out;
  for (const auto& d : r.diagnostics) out.push_back(d.ToString());
  return out;
}

}  // namespace

TEST_CASE("a kind's keys reach its catalog in file order with their positions") {
  const Probe probe;
  auto r = ParsePipeline(R"([pipeline]
name = "p"
[tasks.a]
kind = "probe"
zeta = 1
alpha = { b = [true, 2.5], a = "{{ run.id }}" }
)",
                         "p.toml", probe);
  CHECK(Errors(r) == std::vector<std::string>{"p.toml:5:8: tasks.a.zeta: seen an integer",
                                              "p.toml:6:9: tasks.a.alpha: seen a table"});
}

TEST_CASE("a kind's keys are kept as a tree of values") {
  class Silent final : public kiln::dag::KindCatalog {
   public:
    std::vector<std::string_view> Names() const override { return {"probe", "shell"}; }
    bool Has(std::string_view) const override { return true; }
    void Check(const kiln::dag::TaskSpec&, const kiln::dag::PipelineSpec&,
               std::vector<kiln::dag::Diagnostic>&) const override {}
  } silent;
  auto r = ParsePipeline(R"([pipeline]
name = "p"
[tasks.a]
kind = "probe"
zeta = 1
alpha = { b = [true, 2.5], a = "{{ run.id }}" }
)",
                         "p.toml", silent);
  REQUIRE(r.pipeline);
  const Value& options = r.pipeline->spec.tasks[0].options;
  REQUIRE(options.items.size() == 2);
  CHECK(options.items[0].key == "zeta");
  CHECK(options.items[0].integer == 1);
  CHECK(options.items[0].key_loc.line == 5);
  const Value* alpha = options.Find("alpha");
  REQUIRE(alpha != nullptr);
  REQUIRE(alpha->items.size() == 2);
  CHECK(alpha->items[0].key == "b");  // as written, not sorted by name
  CHECK(alpha->items[0].items[0].boolean);
  CHECK(alpha->items[0].items[1].number == 2.5);
  CHECK(alpha->items[1].string == "{{ run.id }}");
  CHECK(alpha->items[1].loc.line == 6);
  CHECK(alpha->items[1].loc.column == 32);
  CHECK(options.Find("nope") == nullptr);
}

TEST_CASE("a kind's strings are templates, and dates are not values a kind takes") {
  const Probe probe;
  auto r = ParsePipeline(R"([pipeline]
name = "p"
[tasks.a]
kind = "probe"
path = "{{ run.dri }}/x"
when = 2026-01-01
)",
                         "p.toml", probe);
  CHECK(Errors(r) ==
        std::vector<std::string>{
            "p.toml:5:8: tasks.a.path: seen a string",
            "p.toml:5:8: tasks.a.path: unknown template name 'run.dri' (known: pipeline.name, "
            "run.data_interval_end, run.data_interval_start, run.dir, run.id, run.logical_date, "
            "run.triggered_by, task.attempt, task.id)",
            "p.toml:6:8: tasks.a.when: expected a string, number, boolean, array or table, got a "
            "date"});
}

TEST_CASE("without the kind's catalog a kind is unknown, and a shell task's stray key is unknown") {
  auto r = ParsePipeline(R"([pipeline]
name = "p"
[tasks.a]
kind = "probe"
x = 1
[tasks.b]
command = "true"
comand = "x"
)",
                         "p.toml");
  CHECK(Errors(r) ==
        std::vector<std::string>{
            "p.toml:4:8: tasks.a.kind: unknown task kind 'probe' (known: shell)",
            "p.toml:8:1: tasks.b.comand: unknown key 'comand'; did you mean 'command'? "
            "(accepted: allow_failure, argv, cache, command, env, for_each, inputs, kind, "
            "max_parallel, max_retry_delay, "
            "metrics, needs, outputs, pool, priority, retries, retry_backoff, retry_delay, "
            "skip_exit_codes, slots, timeout, trigger_rule, workdir)"});
}

TEST_CASE("a kind's key in [defaults] is unknown there") {
  const Probe probe;
  auto r = ParsePipeline(R"([pipeline]
name = "p"
[defaults]
data = "x.csv"
[tasks.a]
kind = "probe"
)",
                         "p.toml", probe);
  REQUIRE(Errors(r).size() == 1);
  CHECK(Errors(r)[0].rfind("p.toml:4:1: defaults.data: unknown key 'data'", 0) == 0);
}
