// The supervisor: a process beside the daemon that runs its task attempts and outlives it.
//
// One supervisor per data folder (a lock file makes sure), started by the daemon when none runs
// (`kiln supervise`), in a session of its own. The daemon talks to it over a Unix socket in the
// supervisor's folder (executor/wire.h): it sends attempts to start and kill and acknowledges ends
// once they are committed; the supervisor starts them with the process layer (process groups,
// logs, timeouts, rusage), reports their ends, and keeps every end until it is acknowledged or
// written to the database. So a daemon that stops or crashes loses nothing: the next daemon (or
// another one, through the database) learns every end.
//
//   daemon connected:     ends go to the daemon; one not acknowledged within ack_timeout is also
//                         written to the database (first report wins there).
//   no daemon connected:  ends are written to the database (Ledger::Record).
//   always:               the lease is renewed every lease / 3 (one statement, Ledger::Renew);
//                         attempts the database says must stop (their run is being cancelled,
//                         or they were given up) are stopped; if the lease could not be renewed
//                         for lease * 2 / 3, every attempt is killed (self-fencing: another
//                         daemon may declare them lost once the lease expires).
//
// Each attempt has record files in <dir>/attempts (its pid and start time; its end), so
// a supervisor that starts after one that died finds what was left: ends are reported as if
// just seen; attempts without an end are killed (their group) and reported lost.
//
// It exits when no daemon is connected and it has nothing left to supervise or report (after
// `first_daemon_grace` when no daemon ever connected).
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/time.h"
#include "executor/wire.h"

namespace kiln::executor {

// What the supervisor needs from the database. Called on the supervisor's ledger thread only;
// every call may block.
class Ledger {
 public:
  struct Stop {
    scheduler::AttemptKey key;
    std::string cause;  // "cancel" | "superseded" | "stop" (asked through the database)
  };
  virtual ~Ledger() = default;
  // Moves the supervisor's lease forward; returns which of `running` must stop.
  virtual Result<std::vector<Stop>> Renew(const std::vector<scheduler::AttemptKey>& running) = 0;
  // Records ends of attempts (first report wins; an attempt not running any more is skipped).
  virtual Status Record(const std::vector<wire::Ended>& ends) = 0;
  // Which of `keys` have their start recorded under this supervisor, after any commit in flight
  // (store::Database::StartsRecorded).
  virtual Result<std::set<scheduler::AttemptKey>> StartsRecorded(
      const std::vector<scheduler::AttemptKey>& keys) = 0;
  // Gives the lease up: the supervisor exits holding nothing.
  virtual Status Release() = 0;
};

struct SupervisorOptions {
  std::filesystem::path dir;  // supervisor.sock, supervisor.lock, attempts/
  std::string name;           // its lease name (daemon::SupervisorName)
  Duration lease = std::chrono::seconds(30);
  Duration ack_timeout = std::chrono::seconds(5);
  Duration first_daemon_grace = std::chrono::seconds(10);
  // Called once before exiting when idle (e.g. to stop an embedded PostgreSQL nobody uses).
  std::function<void()> on_idle_exit;
};

// The socket's path in `dir`.
std::filesystem::path SocketPath(const std::filesystem::path& dir);

class Supervisor {
 public:
  Supervisor(SupervisorOptions options, Ledger& ledger);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Takes the folder's lock ("another supervisor already runs for <dir>" when held), renews the
  // lease once (the database must answer), recovers the records left by a supervisor that died,
  // and listens on the socket (mode 0600, in a folder of mode 0700). Not thread-safe.
  Status Start();
  // Serves until idle (see above), or until SIGTERM: then every attempt is stopped and the
  // supervisor exits once their ends are reported. Returns the exit code.
  int Run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::executor
