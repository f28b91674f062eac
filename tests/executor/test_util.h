// Helpers shared by the executor tests: temporary folders, file reading and running an
// io_context until a condition holds (bounded, so a bug fails the test instead of hanging it).
#pragma once

#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "executor/process.h"

namespace kiln::executor::testing {

using Env = std::vector<std::pair<std::string, std::string>>;
inline const Env kEnv = {{"PATH", "/usr/bin:/bin"}};

// A fresh folder under /tmp, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "kiln-exec-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Runs handlers until done() is true. Fails after `limit`, which only a bug can reach.
template <typename Done>
void RunUntil(boost::asio::io_context& io, Done done,
              std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  io.restart();  // a previous run() that ran out of work leaves the io_context stopped
  boost::asio::steady_timer guard(io, limit);
  bool expired = false;
  bool guard_ran = false;
  guard.async_wait([&](const boost::system::error_code& ec) {
    guard_ran = true;
    expired = !ec;
  });
  while (!done() && !expired) io.run_one();
  guard.cancel();
  while (!guard_ran) io.run_one();
  REQUIRE_FALSE(expired);
}

// Spawns one process on a fresh io_context and runs until its result arrives.
inline ProcessResult RunProcess(ProcessSpec spec) {
  boost::asio::io_context io;
  ProcessManager manager(io);
  std::optional<ProcessResult> result;
  manager.Spawn(std::move(spec), [&](ProcessResult r) { result = std::move(r); });
  CHECK_FALSE(result.has_value());  // never from inside Spawn
  RunUntil(io, [&] { return result.has_value(); });
  CHECK(manager.running() == 0);
  return *result;
}

inline ProcessSpec ShellSpec(const TempDir& dir, std::string script) {
  ProcessSpec spec;
  spec.argv = {"sh", "-c", std::move(script)};
  spec.env = kEnv;
  spec.cwd = dir.path();
  spec.log_path = dir / "out.log";
  return spec;
}

// A process group or process that no longer exists at all (not even as a zombie).
inline bool Gone(pid_t pid_or_negative_pgid) {
  return ::kill(pid_or_negative_pgid, 0) == -1 && errno == ESRCH;
}

inline pid_t ReadPid(const std::filesystem::path& path) {
  std::string text = ReadFile(path);
  REQUIRE_FALSE(text.empty());
  return static_cast<pid_t>(std::stol(text));
}

}  // namespace kiln::executor::testing
