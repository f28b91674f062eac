#include "common/users.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace kiln {

Identity CurrentIdentity() {
  Identity id;
  id.uid = geteuid();
  id.gid = getegid();
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(id.uid, &pw, buf.data(), buf.size(), &found) == 0 && found) id.name = pw.pw_name;
  return id;
}

Identity RunIdentity(const Identity& base, UidRange uids, int64_t run) {
  if (!base.switch_user || uids.count == 0) return base;
  Identity id = base;
  const auto slot = static_cast<uint64_t>(run) % uids.count;
  id.uid = static_cast<uid_t>(uids.first + slot);
  id.gid = static_cast<gid_t>(uids.first + slot);
  id.groups = {base.gid};
  return id;
}

std::string FirstHolder(UidRange uids) {
  auto inside = [&](uint64_t id) { return id >= uids.first && id - uids.first < uids.count; };
  std::string found;
  setpwent();
  while (passwd* pw = getpwent()) {
    if (inside(pw->pw_uid)) {
      found = "user '" + std::string(pw->pw_name) + "' (uid " + std::to_string(pw->pw_uid) + ")";
      break;
    }
  }
  endpwent();
  if (!found.empty()) return found;
  setgrent();
  while (group* gr = getgrent()) {
    if (inside(gr->gr_gid)) {
      found = "group '" + std::string(gr->gr_name) + "' (gid " + std::to_string(gr->gr_gid) + ")";
      break;
    }
  }
  endgrent();
  return found;
}

Result<Identity> LookupIdentity(const std::string& name) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (name.empty() || getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 ||
      !found) {
    return Status::Error("no user named '" + name + "'");
  }
  Identity id{name, pw.pw_uid, pw.pw_gid, {}, true};
  int count = 64;
  id.groups.resize(static_cast<size_t>(count));
  if (getgrouplist(name.c_str(), pw.pw_gid, id.groups.data(), &count) < 0) {
    id.groups.resize(static_cast<size_t>(count));
    getgrouplist(name.c_str(), pw.pw_gid, id.groups.data(), &count);
  }
  id.groups.resize(static_cast<size_t>(count));
  return id;
}

Result<std::optional<std::string>> FirstUnsearchable(const std::vector<std::string>& dirs,
                                                     const Identity& who) {
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    return Status::Error(std::string("pipe: ") + std::strerror(errno));
  }
  pid_t pid = fork();
  if (pid == 0) {
    // A forked child of a threaded process: async-signal-safe calls only.
    bool dropped = !who.switch_user || (setgroups(who.groups.size(), who.groups.data()) == 0 &&
                                        setgid(who.gid) == 0 && setuid(who.uid) == 0);
    int index = dropped ? -1 : -2;
    for (size_t i = 0; index == -1 && i < dirs.size(); ++i) {
      if (access(dirs[i].c_str(), X_OK) != 0) index = static_cast<int>(i);
    }
    ssize_t ignored = write(report[1], &index, sizeof index);
    (void)ignored;
    _exit(0);
  }
  int fork_errno = errno;
  close(report[1]);
  int index = -1;
  ssize_t n = pid > 0 ? read(report[0], &index, sizeof index) : -1;
  close(report[0]);
  if (pid < 0) return Status::Error(std::string("fork: ") + std::strerror(fork_errno));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof index) || index == -2) {
    return Status::Error("checking folder access as user '" + who.name + "': the check failed");
  }
  if (index < 0) return std::optional<std::string>();
  return std::optional<std::string>(dirs[static_cast<size_t>(index)]);
}

std::vector<std::string> FoldersDownTo(const std::string& dir) {
  std::vector<std::string> dirs;
  std::filesystem::path prefix;
  for (const auto& part : std::filesystem::path(dir)) {
    prefix /= part;
    dirs.push_back(prefix.string());
  }
  return dirs;
}

}  // namespace kiln
