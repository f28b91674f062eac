// `kiln schedule next`: when a schedule fires, worked out exactly as the daemon does.
#include <iostream>

#include "cli/commands.h"
#include "cli/config_util.h"
#include "common/time.h"
#include "config/pipeline_loader.h"
#include "dag/schedule.h"
#include "plugins/registry.h"

namespace kiln::cli {

int ScheduleNext(const ScheduleNextOptions& o) {
  auto fail = [](const std::string& message) {
    std::cerr << "kiln: " << message << '\n';
    return 1;
  };
  if (o.expression.empty() == o.pipeline.empty()) {
    return fail("give either a schedule expression or --pipeline FILE");
  }
  std::optional<dag::Schedule> schedule;
  if (!o.pipeline.empty()) {
    if (!o.tz.empty()) {
      return fail("--tz goes with an expression; a pipeline's schedule is read in its timezone");
    }
    auto loaded = config::LoadPipelineFile(o.pipeline, plugins::Builtins());
    if (!loaded.pipeline) {
      PrintDiagnostics(loaded.diagnostics);
      return 1;
    }
    if (!loaded.pipeline->schedule) {
      return fail(o.pipeline + ": pipeline '" + loaded.pipeline->spec.name +
                  "' has no schedule; add schedule = \"...\" to [pipeline]");
    }
    schedule = loaded.pipeline->schedule;
  } else {
    auto made = dag::MakeSchedule(o.expression, o.tz.empty() ? "UTC" : o.tz);
    if (!made.ok()) return fail("schedule '" + o.expression + "': " + made.message());
    schedule = std::move(made).value();
  }
  Instant from = NowUtc();
  if (!o.from.empty()) {
    auto parsed = ParseRfc3339(o.from);
    if (!parsed.ok()) return fail("--from: " + parsed.message());
    from = *parsed;
  }
  for (int i = 0; i < o.count; ++i) {
    auto next = dag::NextFire(*schedule, from);
    if (!next) break;
    std::cout << dag::FormatInZone(*next, schedule->zone) << '\n';
    from = *next;
  }
  return 0;
}

}  // namespace kiln::cli
