// Looking at files with the rights of a run's tasks, from a daemon that may run as root.
#pragma once

#include <functional>

#include "common/users.h"

namespace kiln::daemon {

// Runs `f` on the calling thread with the file-system rights of `user` when it switches user
// (fsuid, fsgid and supplementary groups, each set for this thread only; back to this process's
// own after), as the process as it is otherwise. Paths a param or a task can name are looked
// at and read this way (waits, for_each files, a gate's artifact): a daemon running as root
// must not tell whether a file exists or what it holds where the run's tasks could not look.
// Refuses (f does not run, false) when the rights cannot be taken.
bool AsUser(const Identity& user, const std::function<void()>& f);

}  // namespace kiln::daemon
