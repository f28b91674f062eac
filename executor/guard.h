// The guard: a small process, forked from a process that starts tasks (a supervisor, `kiln run`),
// that stops those tasks when that process is gone however it went, SIGKILL included.
//
// Tasks run in process groups of their own, so that they outlive nothing by accident but are
// also not stopped by a signal sent to their starter's group. When the starter is killed, nothing
// used to stop them until the next starter on the same folder (a supervisor reads its
// predecessor's journal) or, as root, until any kiln that starts tasks removed the cgroups of
// starters that are gone. Meanwhile an attempt declared lost ran beside its retry.
//
// The guard learns each process group as it is spawned and as it ends (every ProcessManager of
// the process reports to it, one send of four bytes each), over a socket pair whose other end only
// the starter holds (close-on-exec: tasks never inherit it). The socket's end of file is the
// starter's end: the guard then sends SIGKILL to every group it was told of and not told is gone,
// and to every process in the starter's cgroups, says so on its stderr, and exits. A starter that
// ends cleanly has no group left, so the guard stops nothing.
//
// The guard ignores SIGTERM, SIGINT, SIGHUP and SIGQUIT and leads a process group of its own, so
// that what stops its starter by a signal to the group leaves it to do its work; SIGKILL stops it
// (and then the tasks of a killed starter are left as before the guard). Only groups are killed:
// a reported pid leads its group, a number cannot be reused while its group lives, and a group is
// reported gone microseconds after its last process is reaped (design.md, "The guard").
#pragma once

#include <sys/types.h>

#include <string>

#include "common/status.h"

namespace kiln::executor::guard {

// Forks the guard of this process. `who` names this process in the guard's message ("the
// supervisor of <daemon>", "kiln run"). At most one per process; later calls do nothing. Safe to
// call while other threads run (the guard uses no lock another thread could hold).
Status Start(const std::string& who);

// The guard's pid, or 0 when none was started (for tests).
pid_t Pid();

// A process group spawned, whose leader is `pid`; and the same group with none of its processes
// left. No effect when no guard runs. Thread-safe. Sent before returning, in order: when the
// socket is full this waits for the guard to read, and a guard that takes nothing for 500 ms
// (stopped) is killed rather than left with a stale list.
void Spawned(pid_t pid);
void Gone(pid_t pid);

}  // namespace kiln::executor::guard
