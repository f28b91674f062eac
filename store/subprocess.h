// Private to store/: running PostgreSQL's programs (initdb, pg_ctl) as an unprivileged user,
// without a shell. Used by EmbeddedPostgres.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::store {

// The identity a child takes before exec. switch_user = false: the child keeps kiln's identity.
struct Identity {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool switch_user = false;
};

// The current user, or (switch_user = true) `name` from the user database; an error names the
// user when it does not exist.
Result<Identity> LookupIdentity(const std::string& name);
Identity CurrentIdentity();

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

// The first of `dirs` that `who` cannot search (enter), checked by a child process with `who`'s
// identity so that ACLs count; nullopt when it can reach them all.
Result<std::optional<std::string>> FirstUnsearchable(const std::vector<std::string>& dirs,
                                                     const Identity& who);

}  // namespace kiln::store
