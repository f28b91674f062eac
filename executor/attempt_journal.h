// Private to executor/: the supervisor's records of its attempts, as one append-only journal in
// <supervisor dir>/attempts/journal.<n>. Per attempt: a start line (the process a supervisor
// that starts after this one dies must stop: pid and start time), an end line once it ended (the
// end's wire frame, in hex) and a forget line once its end is in the database. One write(2) per
// line, no fsync: the records must survive this process, not the machine (a machine that stops
// ends every attempt anyway). A file per attempt, as before, cost two inodes made and removed per
// attempt; the journal costs three appends to an open file.
//
// The journal is compacted into journal.<n+1> (the live entries, then a "C" line), and the old
// file is removed only after the new one is whole: a reader takes the highest-numbered file that
// holds its "C" line. A line is whole only with its trailing newline: a process killed inside a
// write leaves at most its last line torn, which readers skip.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "executor/wire.h"
#include "scheduler/task_runner.h"

namespace kiln::executor {

// One attempt as the journal has it: the process it started (pid and its start time, 0 when
// the start was not recorded) and its end's frame once it ended.
struct JournalEntry {
  long long pid = 0;
  unsigned long long start_time = 0;
  std::optional<wire::Ended> end;
};

// What the journals in `dir` hold, by attempt (no process is touched; for recovery and tests).
std::map<scheduler::AttemptKey, JournalEntry> ReadJournal(const std::filesystem::path& dir);

class AttemptJournal {
 public:
  explicit AttemptJournal(std::filesystem::path dir) : dir_(std::move(dir)) {}
  ~AttemptJournal();
  AttemptJournal(const AttemptJournal&) = delete;
  AttemptJournal& operator=(const AttemptJournal&) = delete;

  // Takes over what a supervisor that died left in the folder (its journal, or the files of a
  // version before the journal): each attempt's end as recorded, or, for one without an end, a
  // lost end (its process group SIGKILLed first when the same process still runs). Then opens a
  // new journal that holds those ends, and removes the old records.
  Result<std::vector<wire::Ended>> Open();

  // The attempt's process (again, for its collector): any end it had is dropped. Pid 0 before
  // the spawn: a supervisor that dies before the pid is written leaves the attempt reported
  // lost, never without a record.
  void Started(const scheduler::AttemptKey& key, pid_t pid);
  void Ended(const wire::Ended& end);
  // Its end is in the database, or it was never recorded: nothing about it is kept.
  void Forget(const scheduler::AttemptKey& key);

  // The journal's file now, and how many attempts it holds (for tests).
  std::filesystem::path path() const;
  size_t live() const { return live_.size(); }

  // Compacted when the file is past this size and four times what its live entries take.
  static constexpr size_t kCompactBytes = 1u << 20;

 private:
  struct Lines {
    std::string start;
    std::string end;
  };
  void Append(const std::string& line);
  Status WriteNew(uint64_t number);
  void Compact();
  size_t LiveBytes() const;

  std::filesystem::path dir_;
  std::map<scheduler::AttemptKey, Lines> live_;
  size_t live_bytes_ = 0;
  int fd_ = -1;
  uint64_t number_ = 0;
  size_t bytes_ = 0;
  bool failing_ = false;  // the last append failed: the next change writes a new file whole
};

}  // namespace kiln::executor
