#include "executor/attempt_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string_view>

#include "common/log.h"
#include "common/sha256.h"
#include "executor/attempt_records.h"
#include "executor/os.h"

namespace kiln::executor {

namespace fs = std::filesystem;
using scheduler::AttemptKey;

namespace {

constexpr std::string_view kPrefix = "journal.";

// The journals in `dir` by number, highest first.
std::vector<std::pair<uint64_t, std::string>> Journals(const fs::path& dir) {
  std::vector<std::pair<uint64_t, std::string>> out;
  for (std::string& name : Names(dir)) {
    if (!name.starts_with(kPrefix)) continue;
    const std::string_view digits = std::string_view(name).substr(kPrefix.size());
    if (digits.empty() || digits.size() > 18 ||
        digits.find_first_not_of("0123456789") != std::string_view::npos) {
      continue;
    }
    out.emplace_back(std::stoull(std::string(digits)), std::move(name));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::optional<wire::Ended> EndFromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string frame;
  frame.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = HexDigit(hex[i]);
    const int lo = HexDigit(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    frame += static_cast<char>(hi * 16 + lo);
  }
  return EndFromFrame(std::move(frame));
}

// Applies one whole line; false for a line that is not one of the journal's.
bool Apply(std::string_view line, std::map<AttemptKey, JournalEntry>& entries) {
  if (line.size() < 3 || line[1] != ' ') return false;
  const char kind = line[0];
  line.remove_prefix(2);
  // The attempt's name comes last: everything after the fields before it.
  auto field = [&line]() -> std::string_view {
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) return {};
    std::string_view f = line.substr(0, space);
    line.remove_prefix(space + 1);
    return f;
  };
  if (kind == 'R') {
    long long pid = 0;
    unsigned long long start = 0;
    const std::string pid_text(field());
    const std::string start_text(field());
    if (std::sscanf(pid_text.c_str(), "%lld", &pid) != 1 ||
        std::sscanf(start_text.c_str(), "%llu", &start) != 1) {
      return false;
    }
    auto key = KeyFromName(std::string(line));
    if (!key) return false;
    entries[*key] = JournalEntry{pid, start, std::nullopt};
    return true;
  }
  if (kind == 'E') {
    auto end = EndFromHex(field());
    auto key = KeyFromName(std::string(line));
    if (!end || !key || !(end->key == *key)) return false;
    entries[*key].end = std::move(end);
    return true;
  }
  if (kind == 'F') {
    auto key = KeyFromName(std::string(line));
    if (!key) return false;
    entries.erase(*key);
    return true;
  }
  return false;
}

// The entries of one journal, or nullopt when it is not whole (no "C" line).
std::optional<std::map<AttemptKey, JournalEntry>> ReadOne(const fs::path& path) {
  const std::string content = ReadAll(path);
  std::map<AttemptKey, JournalEntry> entries;
  bool whole = false;
  size_t at = 0;
  while (true) {
    const size_t end = content.find('\n', at);
    if (end == std::string::npos) break;  // a torn last line, or none
    std::string_view line(content.data() + at, end - at);
    at = end + 1;
    if (line == "C") {
      whole = true;
    } else if (!Apply(line, entries)) {
      log::Warn("supervisor: skipping a line of " + path.string() + " that is not a record");
    }
  }
  if (!whole) return std::nullopt;
  return entries;
}

}  // namespace

std::map<AttemptKey, JournalEntry> ReadJournal(const fs::path& dir) {
  for (const auto& [number, name] : Journals(dir)) {
    if (auto entries = ReadOne(dir / name)) return std::move(*entries);
  }
  return {};
}

AttemptJournal::~AttemptJournal() {
  if (fd_ >= 0) ::close(fd_);
}

fs::path AttemptJournal::path() const {
  return dir_ / (std::string(kPrefix) + std::to_string(number_));
}

Result<std::vector<wire::Ended>> AttemptJournal::Open() {
  std::map<AttemptKey, wire::Ended> found;
  for (wire::Ended& end : RecoverRecords(dir_)) {  // the files of a version before the journal
    const AttemptKey key = end.key;
    found.insert_or_assign(key, std::move(end));
  }
  const auto journals = Journals(dir_);
  for (auto& [key, entry] : ReadJournal(dir_)) {
    found.insert_or_assign(
        key, entry.end ? std::move(*entry.end) : LostEnd(key, entry.pid, entry.start_time));
  }
  std::vector<wire::Ended> ends;
  for (auto& [key, end] : found) ends.push_back(std::move(end));
  for (const wire::Ended& end : ends) {
    Lines& lines = live_[end.key];
    lines.end = "E " + LowerHex(wire::EncodeEnded(end)) + " " + RecordName(end.key) + "\n";
    live_bytes_ += lines.end.size();
  }
  if (Status s = WriteNew(journals.empty() ? 1 : journals.front().first + 1); !s.ok()) return s;
  // The new journal is whole: every older record goes.
  const std::string current = path().filename().string();
  for (const std::string& name : Names(dir_)) {
    if (name != current) ::unlink((dir_ / name).c_str());
  }
  return ends;
}

// Writes the live entries and the "C" line to journal.<number>, then appends go there.
Status AttemptJournal::WriteNew(uint64_t number) {
  const fs::path next = dir_ / (std::string(kPrefix) + std::to_string(number));
  const int fd = ::open(next.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::Error("cannot create the supervisor's journal '" + next.string() +
                         "': " + os::ErrnoText(errno));
  }
  std::string content;
  content.reserve(live_bytes_ + 2);
  for (const auto& [key, lines] : live_) {
    content += lines.start;
    content += lines.end;
  }
  content += "C\n";
  if (int err = os::WriteAll(fd, content); err != 0) {
    ::close(fd);
    ::unlink(next.c_str());
    return Status::Error("cannot write the supervisor's journal '" + next.string() +
                         "': " + os::ErrnoText(err));
  }
  const fs::path previous = fd_ >= 0 ? path() : fs::path();
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  number_ = number;
  bytes_ = content.size();
  if (!previous.empty()) ::unlink(previous.c_str());
  return Status::Ok();
}

void AttemptJournal::Append(const std::string& line) {
  if (failing_) {
    // The write that failed may have left part of a line, which the next one would join: the
    // live entries (this change among them) go to a new file instead.
    if (WriteNew(number_ + 1).ok()) failing_ = false;
    return;
  }
  if (int err = os::WriteAll(fd_, line); err != 0) {
    log::Warn("supervisor: cannot append to its journal '" + path().string() +
              "': " + os::ErrnoText(err) +
              "; it is written whole again at the next change (until then, a supervisor "
              "started after this one dies may not stop its processes)");
    failing_ = true;
    return;
  }
  bytes_ += line.size();
  if (bytes_ > kCompactBytes && bytes_ > 4 * live_bytes_) Compact();
}

void AttemptJournal::Compact() {
  if (Status s = WriteNew(number_ + 1); !s.ok()) {
    log::Warn("supervisor: " + s.message());
    bytes_ = 0;  // tried again after another kCompactBytes
  }
}

void AttemptJournal::Started(const AttemptKey& key, pid_t pid) {
  const auto start = pid > 0 ? StartTime(pid) : std::nullopt;
  Lines& lines = live_[key];
  live_bytes_ -= lines.start.size() + lines.end.size();
  lines.end.clear();
  lines.start = "R " + std::to_string(pid) + " " + std::to_string(start.value_or(0)) + " " +
                RecordName(key) + "\n";
  live_bytes_ += lines.start.size();
  Append(lines.start);
}

void AttemptJournal::Ended(const wire::Ended& end) {
  Lines& lines = live_[end.key];
  live_bytes_ -= lines.end.size();
  lines.end = "E " + LowerHex(wire::EncodeEnded(end)) + " " + RecordName(end.key) + "\n";
  live_bytes_ += lines.end.size();
  Append(lines.end);
}

void AttemptJournal::Forget(const AttemptKey& key) {
  auto it = live_.find(key);
  if (it == live_.end()) return;
  live_bytes_ -= it->second.start.size() + it->second.end.size();
  live_.erase(it);
  Append("F " + RecordName(key) + "\n");
}

}  // namespace kiln::executor
