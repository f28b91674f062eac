// Private to executor/: what names an attempt's records, and the records of a supervisor before
// the journal (attempt_journal.h), a file per attempt in <supervisor dir>/attempts/: "<key>"
// holds "R <pid> <start time>" from the start, "<key>.end" holds "E" and the end's wire frame.
// A supervisor still reads those once, when it takes over from one of that version that died.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "executor/wire.h"
#include "scheduler/task_runner.h"

namespace kiln::executor {

// "<run>.<task>.<attempt>" and back (nullopt for a name that is not one).
std::string RecordName(const scheduler::AttemptKey& key);
std::optional<scheduler::AttemptKey> KeyFromName(const std::string& name);

// The start time of `pid` in clock ticks since boot (/proc/<pid>/stat field 22): with the pid,
// it names one process for good (a pid can be reused, the pair cannot).
std::optional<unsigned long long> StartTime(pid_t pid);

// The names in `dir` ("." and ".." aside); none when it cannot be read.
std::vector<std::string> Names(const std::filesystem::path& dir);

// The end in one wire frame (a kEnded message), or nullopt for anything else.
std::optional<wire::Ended> EndFromFrame(std::string frame);

// Writes a record in one write to a file of its own; false when it could not.
bool WriteRecord(const std::filesystem::path& path, const std::string& content);

// The whole of a record ("" when it cannot be read).
std::string ReadAll(const std::filesystem::path& path);

// The end of an attempt whose supervisor died before it ended: lost. Its process group is
// SIGKILLed first when process `pid` still runs and started at `start_time` (0 for none).
wire::Ended LostEnd(const scheduler::AttemptKey& key, long long pid, unsigned long long start_time);

// The per-attempt files a supervisor that died left in `dir`: each attempt's end as recorded, or,
// for one without an end, a lost end (its process group SIGKILLed first when the same process still
// runs), recorded before it is returned. Half-written files are removed.
std::vector<wire::Ended> RecoverRecords(const std::filesystem::path& dir);

}  // namespace kiln::executor
