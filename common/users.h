// Users of the host: looking one up, and checking what it may enter. Used to run PostgreSQL's
// programs as an unprivileged user (store/) and tasks as the configured `run_as` user (executor/).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln {

// The identity a child takes before exec. switch_user = false: the child keeps kiln's identity.
struct Identity {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, the primary one included
  bool switch_user = false;
};

// User ids handed out one per run, so that the tasks of one run cannot reach another's: count = 0
// is none.
struct UidRange {
  uint32_t first = 0;
  uint32_t count = 0;
};

// The identity the tasks of run `run` take: `base` (the run_as user) with, when `uids` holds any,
// the user and group id first + run % count and base's group as its one supplementary group.
Identity RunIdentity(const Identity& base, UidRange uids, int64_t run);

// The first user or group of the host whose id falls in `uids`, as "user 'name' (uid N)" or
// "group 'name' (gid N)"; empty when none does. Reads the user and group databases with
// getpwent/getgrent: not thread-safe, meant for the start of a process.
std::string FirstHolder(UidRange uids);

// The current (effective) user, with switch_user = false.
Identity CurrentIdentity();

// `name` from the user database, with switch_user = true; error "no user named '<name>'".
Result<Identity> LookupIdentity(const std::string& name);

// The first of `dirs` that `who` cannot search (enter), checked by a child process with `who`'s
// identity so that ACLs count; nullopt when it can reach them all.
Result<std::optional<std::string>> FirstUnsearchable(const std::vector<std::string>& dirs,
                                                     const Identity& who);

// Every folder from the root down to `dir` (absolute), as FirstUnsearchable takes them.
std::vector<std::string> FoldersDownTo(const std::string& dir);

}  // namespace kiln
