// `kiln task <kind> --options JSON`: one attempt of a task of a built-in kind other than shell,
// started by the executor like any task's program (plugins/api.h); `kiln task collect --options
// SPEC` collects a finished attempt's files (plugins/collect.h).
#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "plugins/cache.h"
#include "plugins/collect.h"
#include "plugins/registry.h"

namespace kiln::cli {

namespace {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

}  // namespace

int Task(const std::string& kind, const std::string& options_json) {
  // Not a kind: what runs after any task that declares inputs, outputs or metrics.
  if (kind == "collect") {
    const int code = plugins::RunCollect(options_json, std::cout);
    std::cout.flush();
    return code;
  }
  // Not a kind: the program of an attempt of a task with cache = true (plugins/cache.h).
  if (kind == "cache") return plugins::RunCache(options_json, std::cout);
  const plugins::Kind* k = plugins::Builtins().Find(kind);
  if (k == nullptr) {
    std::cerr << "kiln task: unknown task kind '" << kind << "'\n";
    return 2;
  }
  auto options = plugins::FromJson(options_json);
  if (!options.ok()) {
    std::cerr << "kiln task: " << options.message() << '\n';
    return 2;
  }
  plugins::TaskContext ctx;
  ctx.run_dir = Env("KILN_RUN_DIR");
  ctx.task_id = Env("KILN_TASK_ID");
  ctx.pipeline = Env("KILN_PIPELINE");
  ctx.out = &std::cout;
  try {
    const int code = k->Run(*options, ctx);
    std::cout.flush();
    return code;
  } catch (const std::exception& e) {
    std::cerr << "kiln task " << kind << ": " << e.what() << '\n';
    return 2;
  }
}

}  // namespace kiln::cli
