// The supervisor's state, shared by its files (supervisor.cc: the socket, the attempts, the
// ledger thread; supervisor_confirm.cc: starts sent while they commit, until they are
// confirmed). Private to executor/.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/log.h"
#include "executor/attempt_journal.h"
#include "executor/attempt_records.h"
#include "executor/collector.h"
#include "executor/local_runner.h"
#include "executor/os.h"
#include "executor/process.h"
#include "executor/supervisor.h"

namespace kiln::executor {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using local = asio::local::stream_protocol;
using scheduler::AttemptKey;
using scheduler::AttemptOutcome;
using SteadyTime = std::chrono::steady_clock::time_point;

// Why its supervisor stopped an attempt ("cancel", "superseded", "stop", "orphaned",
// "unconfirmed", "fenced", otherwise stopped with the supervisor), for its outcome's error.
std::string StopText(const std::string& cause);

struct Supervisor::Impl {
  struct Attempt {
    ProcessManager::Handle handle = 0;
    bool running = true;
    std::string stop_cause;
    std::optional<wire::Ended> end;
    CollectJob collect;  // what runs after a successful exit
    bool collecting = false;
    bool queued = false;  // handed to the ledger thread
    // Started while its start was being committed (wire::Launch::confirmed) and not confirmed
    // yet, by its daemon or by a lease renewal: its end is never written to the database.
    bool unconfirmed = false;
    std::unique_ptr<asio::steady_timer> confirm_timer;  // stops it if not confirmed in time
    uint64_t serial = 0;  // tells its process's exit from a later start of the same key
    std::unique_ptr<asio::steady_timer> ack_timer;
  };
  struct Conn {
    explicit Conn(asio::io_context& io) : socket(io) {}
    local::socket socket;
    std::string in;
    std::array<char, 64 * 1024> buffer;
    std::deque<std::string> out;
    bool writing = false;
    bool hello = false;
    bool closed = false;
    bool welcomed = false;  // a daemon is welcomed once its predecessor's starts are resolved
  };

  Impl(SupervisorOptions o, Ledger& l) : options(std::move(o)), ledger(l) {}

  Status Start();
  Status Recover();
  Status RecordRecovered();
  void Accept();
  void Read(const std::shared_ptr<Conn>& c);
  void Handle(const std::shared_ptr<Conn>& c, const std::string& body);
  void Send(const std::shared_ptr<Conn>& c, std::string frame);
  void Flush(const std::shared_ptr<Conn>& c);
  void Close(const std::shared_ptr<Conn>& c);
  void OnHello(const std::shared_ptr<Conn>& c);
  void Welcome(const std::shared_ptr<Conn>& c);
  void Resolve();
  void OnResolved(const Result<std::set<AttemptKey>>& recorded);
  void Confirm(const AttemptKey& key);
  void AwaitConfirmation(const AttemptKey& key, uint64_t serial, bool checked);
  void Orphan();
  void Drop(const AttemptKey& key);
  void StartAttempt(wire::Launch launch);
  void OnExit(const AttemptKey& key, uint64_t serial, const ProcessResult& result);
  void Ended(const AttemptKey& key, uint64_t serial, AttemptOutcome outcome);
  void WriteStartRecord(const AttemptKey& key, ProcessManager::Handle handle);
  void Deliver(const AttemptKey& key);
  void Queue(const AttemptKey& key);
  void Forget(const AttemptKey& key);
  void UpdateSnapshot();
  void OnRenewed(SteadyTime sent, const std::set<AttemptKey>& unconfirmed,
                 std::vector<Ledger::Stop> stops);
  void ArmFence();
  void MaybeIdle();
  void Exit();
  void LedgerLoop();

  SupervisorOptions options;
  Ledger& ledger;
  asio::io_context io;
  std::unique_ptr<ProcessManager> processes;
  std::unique_ptr<AttemptJournal> journal;  // the records of its attempts
  std::unique_ptr<local::acceptor> acceptor;
  std::shared_ptr<Conn> conn;  // the daemon's, once it said hello
  std::map<AttemptKey, Attempt> attempts;
  // Unconfirmed attempts of a daemon that went away, killed and forgotten, until their process
  // is reaped (by serial).
  std::map<uint64_t, Attempt> dying;
  uint64_t next_serial = 1;
  asio::steady_timer fence_timer{io};
  asio::steady_timer idle_timer{io};
  asio::signal_set signals{io, SIGTERM};
  bool had_daemon = false;
  bool stopping = false;
  bool exiting = false;
  int lock_fd = -1;
  SteadyTime renewed_at{};  // when the last successful renewal was sent

  // The ledger thread and what it shares with the loop, under mu.
  std::thread ledger_thread;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<AttemptKey> running_snapshot;
  std::set<AttemptKey> unconfirmed_snapshot;  // those of running_snapshot not confirmed yet
  std::vector<wire::Ended> to_record;
  bool ledger_stop = false;
  bool renew_now = false;  // an unconfirmed attempt waits: renew (and so check it) at once
  std::vector<AttemptKey> to_resolve;  // a gone daemon's unconfirmed starts: recorded or not?
  bool resolving = false;              // (loop thread) asked, not answered yet
  bool released = false;
};

}  // namespace kiln::executor
