#include "daemon/as_user.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <vector>

namespace kiln::daemon {

bool AsUser(const Identity& user, const std::function<void()>& f) {
  if (!user.switch_user) {
    f();
    return true;
  }
  // Raw system calls: glibc's setgroups would change every thread of the process.
  const int count = ::getgroups(0, nullptr);
  std::vector<gid_t> own(count > 0 ? static_cast<size_t>(count) : 0);
  if (count > 0 && ::getgroups(count, own.data()) != count) return false;
  const std::vector<gid_t> groups =
      user.groups.empty() ? std::vector<gid_t>{user.gid} : user.groups;
  if (::syscall(SYS_setgroups, groups.size(), groups.data()) != 0) return false;
  // Back to this process's own rights however `f` ends, an exception included.
  struct Restore {
    const std::vector<gid_t>& own;
    ~Restore() {
      ::syscall(SYS_setfsuid, ::geteuid());
      ::syscall(SYS_setfsgid, ::getegid());
      ::syscall(SYS_setgroups, own.size(), own.data());
    }
  } restore{own};
  ::syscall(SYS_setfsgid, user.gid);
  ::syscall(SYS_setfsuid, user.uid);
  // setfsuid says nothing of failure: asking again (with an id it refuses) returns the current.
  const bool taken =
      ::syscall(SYS_setfsuid, static_cast<uid_t>(-1)) == static_cast<long>(user.uid) &&
      ::syscall(SYS_setfsgid, static_cast<gid_t>(-1)) == static_cast<long>(user.gid);
  if (taken) f();
  return taken;
}

}  // namespace kiln::daemon
