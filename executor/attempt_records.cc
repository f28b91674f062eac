#include "executor/attempt_records.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

#include "common/log.h"
#include "executor/os.h"

namespace kiln::executor {

namespace fs = std::filesystem;
using scheduler::AttemptKey;

// "<run>.<task>.<attempt>": run ids and attempts are numbers, task ids hold no '.'.
std::string RecordName(const AttemptKey& k) {
  return ToString(k.run) + "." + k.task_id + "." + std::to_string(k.attempt);
}

std::optional<AttemptKey> KeyFromName(const std::string& name) {
  const size_t first = name.find('.');
  const size_t last = name.rfind('.');
  if (first == std::string::npos || last == first) return std::nullopt;
  try {
    AttemptKey key;
    key.run = RunId(std::stoll(name.substr(0, first)));
    key.task_id = name.substr(first + 1, last - first - 1);
    key.attempt = std::stoi(name.substr(last + 1));
    return key;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<unsigned long long> StartTime(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return std::nullopt;
  // After "comm)": state is field 3; starttime is field 22, so 19 fields further.
  ++p;
  for (int field = 3; field < 22; ++field) {
    while (*p == ' ') ++p;
    while (*p != ' ' && *p != '\0') ++p;
  }
  unsigned long long start = 0;
  if (std::sscanf(p, " %llu", &start) != 1) return std::nullopt;
  return start;
}

// Writes a record file in one write to a file of its own (no rename over an older one: ext4
// flushes the data of a file renamed over another, which would cost a disk write per attempt). A
// process that dies leaves the whole record or an empty file, which readers skip. No fsync: the
// record must survive this process, not the machine (a machine that stops ends every attempt).
bool WriteRecord(const fs::path& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const bool written = os::WriteAll(fd, content) == 0;
  ::close(fd);
  return written;
}

std::string ReadAll(const fs::path& path) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

wire::Ended LostEnd(const AttemptKey& key, long long pid, unsigned long long start_time) {
  scheduler::AttemptOutcome lost;
  lost.lost = true;
  lost.error = "its supervisor stopped while it ran and recorded no end";
  if (pid > 1) {  // never -1 or -0: kill(2) would take every process, or this group
    auto now = StartTime(static_cast<pid_t>(pid));
    if (now && *now == start_time) {
      ::kill(-static_cast<pid_t>(pid), SIGKILL);
      ::kill(static_cast<pid_t>(pid), SIGKILL);
      lost.error =
          "its supervisor stopped while it ran; its processes were stopped when a new "
          "supervisor started";
    }
  }
  lost.ended_at = NowUtc();
  log::Warn("supervisor: attempt " + key.ToString() + " lost: " + lost.error);
  return wire::Ended{key, lost};
}

std::vector<std::string> Names(const fs::path& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (const dirent* entry = ::readdir(d)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  ::closedir(d);
  return names;
}

std::optional<wire::Ended> EndFromFrame(std::string frame) {
  bool error = false;
  auto bodies = wire::TakeFrames(frame, &error);
  if (error || bodies.size() != 1) return std::nullopt;
  wire::Reader r(bodies[0]);
  if (r.U8() != static_cast<uint8_t>(wire::Type::kEnded)) return std::nullopt;
  return wire::DecodeEnded(r);
}

std::vector<wire::Ended> RecoverRecords(const fs::path& dir) {
  std::vector<wire::Ended> out;
  std::set<std::string> keys;
  for (const std::string& name : Names(dir)) {
    if (name.starts_with("journal.")) continue;  // attempt_journal.h
    if (name.ends_with(".tmp")) {
      ::unlink((dir / name).c_str());
      continue;
    }
    keys.insert(name.ends_with(".end") ? name.substr(0, name.size() - 4) : name);
  }
  for (const std::string& name : keys) {
    const fs::path path = dir / name;
    auto key = KeyFromName(name);
    if (!key) {
      log::Warn("supervisor: ignoring unknown file " + path.string());
      continue;
    }
    std::optional<wire::Ended> ended;
    const std::string end = ReadAll(path.string() + ".end");
    if (end.starts_with("E")) ended = EndFromFrame(end.substr(1));
    if (!ended) {
      const std::string content = ReadAll(path);
      long long pid = 0;
      unsigned long long start = 0;
      if (std::sscanf(content.c_str(), "R %lld %llu", &pid, &start) != 2) pid = 0;
      ended = LostEnd(*key, pid, start);
      WriteRecord(path.string() + ".end", "E" + wire::EncodeEnded(*ended));
    }
    out.push_back(std::move(*ended));
  }
  return out;
}

}  // namespace kiln::executor
