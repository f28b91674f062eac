// The daemon's side of remote workers (`kiln worker`, daemon/worker.h): attempts of the pools
// that `[executor] mode` sends to workers are handed out through the database instead of to the
// daemon's own supervisor.
//
// As a rule an attempt is handed out in the same commit that records its start
// (TaskRunner::HandOut: the attempts row is written kDispatchedOwner with its launch), so a
// worker only ever claims a durable start. An attempt whose start was committed first (a launch
// that waited for a cache lookup, a start adopted that never reached its supervisor) goes through
// the dispatcher's thread instead (Database::Dispatch). A worker's supervisor claims it and from
// then on holds it by its lease, and records its end in the database
// (Database::RecordWorkerEnds), where the daemon's watch of attempts supervised elsewhere
// (daemon/foreign_attempts.h) decides it, like an attempt of a run taken over from another
// daemon.
//
// A SIGKILL of the daemon before a start's commit leaves nothing; after it, an attempt handed out
// in it that a worker claims. Only for the starts committed first, a kill between the commit and
// the hand-out leaves the attempt owned by the daemon's supervisor, which never had it: the next
// start adopts it, learns it never reached that supervisor (never_launched) and starts it again
// as the same attempt, as for a start never sent to the local supervisor.
#pragma once

#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "daemon/foreign_attempts.h"
#include "scheduler/task_runner.h"
#include "store/database.h"

namespace kiln::daemon {

// Which pools run where (`[executor] mode`).
struct WorkerPools {
  enum class Mode { kLocal, kWorkers, kBoth };
  Mode mode = Mode::kLocal;
  std::set<std::string> pools;  // kBoth: the pools workers run (the others run here)
  bool OnWorkers(const std::string& pool) const {
    return mode == Mode::kWorkers || (mode == Mode::kBoth && pools.count(pool) != 0);
  }
};

// The thread that writes hand-outs and take-backs, each batch in one transaction, on a
// connection of its own (made again after a lost one; what is pending is kept and tried again).
class Dispatcher {
 public:
  // `from`: the daemon's supervisor name (recorded with the starts). `on_withdrawn` is called on
  // the dispatcher's thread with an attempt taken back before any worker claimed it.
  Dispatcher(std::string url, std::string from,
             std::function<void(const scheduler::AttemptKey&)> on_withdrawn);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void Submit(store::Dispatch dispatch);
  // Takes it back when unclaimed (on_withdrawn), else tells its worker to stop it.
  void Withdraw(const scheduler::AttemptKey& key);

 private:
  void Loop();

  std::string url_, from_;
  std::function<void(const scheduler::AttemptKey&)> on_withdrawn_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<store::Dispatch> pending_;
  std::vector<scheduler::AttemptKey> withdraw_;
  bool stopping_ = false;
  std::thread thread_;
};

// The daemon's TaskRunner: attempts of worker pools go to the dispatcher, everything else to
// `local` (the daemon's SupervisedRunner). Runs on the scheduler's loop.
class DispatchRunner final : public scheduler::TaskRunner {
 public:
  struct Options {
    WorkerPools pools;
    std::string url;
    std::string supervisor;  // the daemon's supervisor's lease name
    std::string kiln_exe;    // this binary: replaced by the worker's own in what it runs
    Duration kill_grace = std::chrono::seconds(10);
    uint64_t log_cap_bytes = 64ull << 20;
  };
  DispatchRunner(boost::asio::io_context& io, scheduler::TaskRunner& local,
                 ForeignAttempts& foreign, Options options);

  void Start(scheduler::LaunchRequest request,
             std::function<void(scheduler::AttemptOutcome)> on_exit) override;
  void Kill(RunId run, TaskId task) override;
  void Adopt(const scheduler::AdoptRequest& request,
             std::function<void(scheduler::AttemptOutcome)> on_exit) override;
  void Recorded(RunId run, TaskId task, int attempt) override;
  bool HandsOut(const std::string& pool) const override { return options_.pools.OnWorkers(pool); }
  std::optional<scheduler::Handout> HandOut(
      scheduler::LaunchRequest request,
      std::function<void(scheduler::AttemptOutcome)> on_exit) override;
  void StartRecorded(RunId run, TaskId task, int attempt) override;
  void StartRefused(RunId run, TaskId task, int attempt) override;
  void CloseRunFolder(const std::filesystem::path& run_dir) override {
    local_.CloseRunFolder(run_dir);
  }

 private:
  boost::asio::io_context& io_;
  scheduler::TaskRunner& local_;
  ForeignAttempts& foreign_;
  Options options_;
  Dispatcher dispatcher_;
  // What a hand-out or Start() writes for workers; nullopt (on_exit posted) when it cannot go.
  // `settled`: its start is committed already (else, it is handed out in that commit).
  std::optional<store::Dispatch> Prepare(scheduler::LaunchRequest request,
                                         std::function<void(scheduler::AttemptOutcome)>& on_exit,
                                         bool settled);
  // Handed out in a start's commit that is not over yet: whether a kill came meanwhile (it
  // takes the attempt back once the commit is over, when there is a row to take back).
  struct Unsettled {
    scheduler::AttemptKey key;
    bool killed = false;
  };
  std::optional<Unsettled> TakeUnsettled(RunId run, TaskId task, int attempt);

  std::map<std::pair<RunId, TaskId>, scheduler::AttemptKey> remote_;
  std::map<std::tuple<RunId, TaskId, int>, Unsettled> unsettled_;
  std::shared_ptr<bool> alive_;
};

// What stands for the kiln binary in a dispatched launch: each worker puts its own path there.
inline constexpr std::string_view kKilnExeMark = "(kiln)";

}  // namespace kiln::daemon
