// The child that becomes a task's user and execs: os::SpawnProcess when the task runs as another
// user (glibc's posix_spawn has no user attribute). docs/design.md, "Processes".
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/users.h"
#include "executor/os.h"

namespace kiln::executor::os {

// What failed before the exec, as the child reports it ({step, errno} on its report pipe).
enum ChildStep : int { kStepFds = 1, kStepUser, kStepCwd, kStepExec };

struct ChildAs {
  pid_t pid = -1;
  // The read end (non-blocking, close-on-exec) of the report pipe: end of file once the child
  // exec'd, {step, errno} when it failed before.
  UniqueFd report;
  // What the child runs on until its exec: it shares this process's memory (below). Keep it
  // until the child has exited; never free it while the child may still run before its exec.
  std::shared_ptr<void> memory;
};

// Starts a child in a new process group that resets its signals, takes stdin from /dev/null and
// `output_fd` as stdout and stderr, becomes `user` (groups, gid, then the effective uid only,
// the folder `cwd` entered as the user, then all three uids), and execs the first of `programs`
// it may run with `argv` and `env` (as execvp searches). It returns at once, never waiting for
// the child: between its last change of ids and its exec, a process of the task's user may stop
// it.
//
// On x86-64 the child makes raw system calls only: it writes no memory but its stack (not even
// errno), and changes its own credentials only (glibc's set*id calls would change every
// thread's). So, without a sanitizer and while fs.suid_dumpable is 0, it shares this process's
// memory (CLONE_VM, as posix_spawn's child does) on a stack of its own: no page table is copied
// for it, where fork() copied the supervisor's for every task and the child then tore the copy
// down at its exec. Its change of ids makes the shared memory undumpable, this process's own
// included, from then on. Otherwise, and on other architectures, it forks.
Result<ChildAs> StartChildAs(const std::vector<std::string>& programs,
                             const std::vector<std::string>& argv,
                             const std::vector<std::string>& env, const std::filesystem::path& cwd,
                             const Identity& user, int output_fd);

}  // namespace kiln::executor::os
