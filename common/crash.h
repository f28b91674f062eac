// Crash points for the crash tests: with KILN_CRASH_AT=<point> (or <point>:<n>) in its
// environment, a kiln process kills itself with SIGKILL the n-th time (default: the first) it
// reaches CrashPoint(<point>). Without the variable it costs one relaxed atomic load.
//
// Points: "commit.before" (a batch is about to be written), "commit.inside" (written, not yet
// committed), "commit.after" (committed, nothing acted on yet), "end.received" (the daemon has
// an attempt's end, not recorded yet), "fire.inside" (a schedule's runs are written, not yet
// committed), "drift.ask" (a drift task's success is committed, the run it asks for not yet
// created), "gate.register" (a passed gate's success is committed, its version not yet
// registered), "worker.claimed" (a worker's claim is committed, its attempts not yet started).
#pragma once

#include <string_view>

namespace kiln {

void CrashPoint(std::string_view point);
// Whether KILN_CRASH_AT names `point`: code may skip work that only that crash point needs.
bool CrashPointArmed(std::string_view point);

}  // namespace kiln
