// Helpers for end-to-end tests: run the real `kiln` binary, make temporary folders, query the
// test PostgreSQL with psql.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace kiln::e2e {

struct Output {
  int code = -1;  // exit code, or 128 + signal
  std::string out;
  std::string err;
};

// Runs argv (argv[0] a path) in `cwd` with this process's environment plus `env` (an empty value
// removes the variable), waits for it, and returns its output.
Output Exec(const std::vector<std::string>& argv, const std::filesystem::path& cwd = {},
            const std::map<std::string, std::string>& env = {});

// `kiln ARGS...` with KILN_DATABASE_URL set to the test database.
Output Kiln(const std::vector<std::string>& args, const std::filesystem::path& cwd = {},
            std::map<std::string, std::string> env = {});

std::string KilnBinary();
std::string DatabaseUrl();
std::filesystem::path SourceDir();

// One SQL query's rows, fields separated by '|', rows by '\n' (psql -At).
std::string Sql(const std::string& query);
// The same on another database.
std::string SqlAt(const std::string& url, const std::string& query);

// Waits until `condition` holds, checking every 20 ms; fails the test naming `what` after
// `timeout`. For conditions outside the test's control (a process started, a row written).
void WaitFor(const std::function<bool()>& condition, const std::string& what,
             std::chrono::seconds timeout = std::chrono::seconds(60));
// Pids of live processes (zombies aside) whose command line mentions `text`.
std::vector<int> ProcessesMentioning(const std::string& text);

// A fresh folder under /tmp (mode 01777, for the tasks of kiln serve), removed when the object
// dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void WriteFile(const std::filesystem::path& path, const std::string& text);
std::string ReadFile(const std::filesystem::path& path);
// `base` with a random suffix: a pipeline name no other test (or earlier run on the same
// database) uses.
std::string Unique(const std::string& base);
// A pipeline file named `name` with `keys` added to [pipeline] and one task `t` running `command`.
std::string Pipeline(const std::string& name, const std::string& keys,
                     const std::string& command = "true");
// A scheduler.clock_offset in seconds that puts the schedule clock `past` after the start of a
// `period` (a minute, an hour) from now on, plus `more`: tests whose phases must not straddle a
// fire start each phase at the same point of the period, however long the ones before took.
int64_t AlignedOffset(std::chrono::seconds period, std::chrono::seconds past);
// As a [scheduler] clock_offset value: "<seconds>s".
std::string OffsetText(int64_t seconds);
// True while a process with this pid exists (zombies count as gone).
bool ProcessAlive(int pid);

// "task:state ..." of the run's tasks in pipeline order, from the database.
std::string States(int64_t run);

}  // namespace kiln::e2e
