// `kiln serve` as a real process for end-to-end tests, with API tokens of every role, and a
// reader of its event stream.
#pragma once

#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness.h"

namespace kiln::e2e {

// The tokens every test daemon accepts (kiln.toml declares their hashes).
inline constexpr const char* kViewerToken = "kiln_test_viewer_0123456789";
inline constexpr const char* kOperatorToken = "kiln_test_operator_0123456789";
inline constexpr const char* kAdminToken = "kiln_test_admin_0123456789";

struct DaemonOptions {
  explicit DaemonOptions(std::filesystem::path folder) : pipelines(std::move(folder)) {}
  std::filesystem::path pipelines;
  bool tokens = true;        // declare the three test tokens in kiln.toml
  std::string extra_config;  // appended to kiln.toml
  // [daemon] on_stop: the tests stop their daemons with SIGTERM and expect nothing left running,
  // so they cancel; the tests of stopping and restarting say "leave".
  std::string on_stop = "cancel";
  std::string lease = "30s";               // [daemon] lease
  std::string database_url;                // empty: this test process's database (DatabaseUrl())
  bool embedded = false;                   // no database URL: the daemon starts its own cluster
  std::map<std::string, std::string> env;  // added to the daemon's environment
  std::string listen = "127.0.0.1:0";
};

// A daemon on a free port; stopped with SIGTERM when the object dies.
class Daemon {
 public:
  Daemon(const TempDir& dir, DaemonOptions options);
  Daemon(const TempDir& dir, const std::filesystem::path& pipelines)
      : Daemon(dir, DaemonOptions{pipelines}) {}
  ~Daemon();
  // SIGTERM, then the exit code.
  int Stop();
  // Sends `signal`; for SIGKILL also waits for the process to end.
  void Signal(int signal);
  // Waits for the daemon to end by itself (a crash point); returns its exit code.
  int Wait();
  int pid() const { return pid_; }
  int port() const { return port_; }
  const std::string& first_line() const { return first_line_; }
  // The next line the daemon prints on stdout ("" at its end).
  std::string ReadLine();
  std::filesystem::path data_dir() const { return data_dir_; }

  // A client sending `token` as a bearer token (none when empty).
  httplib::Client Client(const std::string& token = kAdminToken) const;

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int port_ = 0;
  int exit_code_ = -1;
  std::string first_line_;
  std::filesystem::path data_dir_;
};

// Reads the event stream at `query` (e.g. "run=3") from the start of history (after=0) until
// `done` returns true for an event; returns every event read, in order. Fails the test after
// 120 s without the awaited event.
std::vector<nlohmann::json> ReadEvents(const Daemon& daemon, const std::string& query,
                                       const std::function<bool(const nlohmann::json&)>& done,
                                       int64_t after = 0);

// Waits, through the event stream, until the run has ended after event `after` (e.g. the last
// event before a retry); returns its final state.
std::string WaitForRunEnd(const Daemon& daemon, int64_t run, int64_t after = 0);

inline constexpr const char* kJson = "application/json";

// Triggers `pipeline` with `body` and returns the new run's id (fails the test unless 201).
int64_t Trigger(httplib::Client& client, const std::string& pipeline,
                const std::string& body = "{}");

// The id of the newest event in the database (0 when none).
int64_t LastEventId();

// The body of a response as JSON (fails the test when there is no response).
nlohmann::json Body(const httplib::Result& result);

// GET `path`: its body as JSON (fails the test unless the answer's status is `status`).
nlohmann::json GetJson(httplib::Client& client, const std::string& path, int status = 200);

}  // namespace kiln::e2e
