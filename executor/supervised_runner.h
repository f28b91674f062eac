// The daemon's TaskRunner on a supervisor (executor/supervisor.h): attempts run in the
// supervisor's process, not the daemon's, so they outlive the daemon. Starts, kills and
// acknowledgements go over the supervisor's socket; ends come back from it.
//
// Threads: everything runs on the scheduler's io_context thread, except Dial(), which blocks
// and may run anywhere. If the supervisor goes away, the runner dials again on a thread of its
// own (starting a new supervisor), then carries on: attempts the new supervisor knows continue,
// their ends recorded by the old one are delivered, and the ones it has no record of are lost.
#pragma once

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "executor/wire.h"
#include "scheduler/task_runner.h"

namespace kiln::executor {

struct SupervisedRunnerOptions {
  std::filesystem::path dir;  // the supervisor's folder (its socket)
  std::string daemon;         // this daemon's name, sent in the hello
  uint64_t log_cap_bytes = 64ull << 20;
  Duration kill_grace = std::chrono::seconds(10);
  // Starts a supervisor when none answers, and returns once it listens (or why it could not:
  // kConflict when another one still holds the folder, e.g. one that is exiting; it is then
  // tried again for a few seconds).
  std::function<Status()> spawn;
  // How long Dial tries again while the supervisor refuses because another daemon's connection
  // is open, or closes this one before answering (an earlier daemon just died, or the supervisor
  // is exiting): that end is read, or the supervisor gone, within moments.
  Duration busy_wait = std::chrono::seconds(5);
  // Attempts supervised by another supervisor (a run taken over from a daemon whose lease
  // expired): watched through the database by the daemon. Same contract as TaskRunner::Adopt.
  std::function<void(const scheduler::AdoptRequest&,
                     std::function<void(scheduler::AttemptOutcome)>)>
      adopt_foreign;
  // Starts may be sent while their start commits (TaskRunner::StartsBeforeCommit): the
  // supervisor holds them unconfirmed until StartRecorded (docs/design.md, "Launching while the
  // start commits"), whenever this says yes (null: never). The daemon's runner asks whether it
  // surely holds its lease; a worker claims starts that are recorded already.
  std::function<bool()> early_starts;
};

// The supervisor protocol's start of `request` (what a supervisor needs to run it), and back.
wire::Launch ToWire(scheduler::LaunchRequest request, Duration kill_grace, uint64_t log_cap_bytes);
scheduler::LaunchRequest FromWire(wire::Launch launch);

// A connected socket and what the supervisor said first.
struct Dialed {
  int fd = -1;
  wire::Welcome welcome;
  // What was read after the welcome: the supervisor sends an attempt's end as soon as the
  // daemon is welcomed, so it may come in the same read. Attach takes it from there.
  std::string rest;
};
// Connects to the supervisor of `options.dir` (spawning one when none answers) and exchanges the
// hello and the welcome. Blocking; errors name the socket.
Result<Dialed> Dial(const SupervisedRunnerOptions& options);

class SupervisedRunner final : public scheduler::TaskRunner {
 public:
  SupervisedRunner(boost::asio::io_context& io, SupervisedRunnerOptions options);
  ~SupervisedRunner() override;

  // Takes a connection made by Dial (before the loop runs, or posted to it). Must precede Start.
  void Attach(Dialed dialed);
  // The supervisor's lease name (from its welcome).
  const std::string& supervisor() const { return supervisor_; }
  bool connected() const { return socket_ != nullptr; }
  // Attempts started or adopted here whose end has not come yet.
  size_t running() const { return waiting_.size(); }

  void Start(scheduler::LaunchRequest request,
             std::function<void(scheduler::AttemptOutcome)> on_exit) override;
  void Kill(RunId run, TaskId task) override;
  // Closes it here (the folder is on this host): os::CloseFolder; errors are logged.
  void CloseRunFolder(const std::filesystem::path& run_dir) override;
  void Adopt(const scheduler::AdoptRequest& request,
             std::function<void(scheduler::AttemptOutcome)> on_exit) override;
  void Recorded(RunId run, TaskId task, int attempt) override;
  // Not while the supervisor is out of reach: a start held back would reach it late, when its
  // time limit no longer matches the daemon's lease.
  bool StartsBeforeCommit() const override {
    return socket_ != nullptr && options_.early_starts && options_.early_starts();
  }
  void StartRecorded(RunId run, TaskId task, int attempt) override;
  // Calls `done` (on the loop) once every acknowledgement and start queued so far was written to
  // the supervisor, or at once when it is not connected. For a clean stop.
  void Drain(std::function<void()> done);

 private:
  struct Waiting {
    std::function<void(scheduler::AttemptOutcome)> on_exit;
    std::optional<std::string> launch;  // the start frame, while it has not been sent
    bool unconfirmed = false;           // sent before its start was recorded, not confirmed yet
  };
  struct Socket;

  void Read();
  // Handles the whole frames in the socket's buffer; false when the connection was given up.
  bool Consume(const std::shared_ptr<Socket>& s);
  void OnFrame(const std::string& body);
  void Send(std::string frame);
  void Flush();
  void Disconnected(const std::string& why);
  void Redial();
  void Deliver(const scheduler::AttemptKey& key, scheduler::AttemptOutcome outcome);
  void PostControl();
  void SendControl();
  void Post(std::function<void()> f);

  boost::asio::io_context& io_;
  SupervisedRunnerOptions options_;
  std::string supervisor_;
  std::shared_ptr<Socket> socket_;
  std::map<scheduler::AttemptKey, Waiting> waiting_;
  std::map<std::pair<RunId, TaskId>, scheduler::AttemptKey> current_;  // for Kill and Recorded
  // What the welcome listed, until an Adopt claims it.
  std::set<scheduler::AttemptKey> welcome_running_;
  std::map<scheduler::AttemptKey, scheduler::AttemptOutcome> welcome_ended_;
  std::vector<scheduler::AttemptKey> confirms_;  // starts recorded, to tell the supervisor
  std::vector<scheduler::AttemptKey> acks_;      // ends recorded
  bool control_posted_ = false;
  std::vector<std::function<void()>> drained_;  // Drain callbacks waiting for writes
  std::thread redialer_;
  std::shared_ptr<bool> alive_;
};

}  // namespace kiln::executor
