// Private to store/: running PostgreSQL's programs (initdb, pg_ctl) as an unprivileged user,
// without a shell. Used by EmbeddedPostgres.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/users.h"

namespace kiln::store {

struct ProgramResult {
  int exit_code = 0;   // -N when killed by signal N
  std::string output;  // stdout and stderr interleaved, the last 16 KiB
};

// Runs argv[0] (an absolute path) with `env` as its whole environment, stdin from /dev/null, no
// other inherited fds, default signal dispositions, umask 077, cwd "/", as `who`. Blocks until it
// exits. Errors are about starting it (fork, exec, changing user); a non-zero exit is a result.
// The child is reaped with waitpid(pid): a SIGCHLD handler that reaps every child must not run.
Result<ProgramResult> RunProgram(const std::vector<std::string>& argv,
                                 const std::vector<std::string>& env, const Identity& who);

// As RunProgram, without waiting, for a server: the child's pid once it has exec'd, in a session
// of its own (a terminal's Ctrl-C does not reach it), its stdout and stderr going to `out_fd`
// (closed here). The caller reaps it with waitpid(pid).
Result<pid_t> StartProgram(const std::vector<std::string>& argv,
                           const std::vector<std::string>& env, const Identity& who, int out_fd);

}  // namespace kiln::store
