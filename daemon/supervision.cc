#include "daemon/supervision.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "common/log.h"
#include "daemon/runtime.h"
#include "executor/guard.h"
#include "executor/os.h"
#include "store/embedded.h"

namespace kiln::daemon {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr auto kSpawnTimeout = 30s;

Result<int> TryLock(const fs::path& data_dir) {
  const fs::path path = data_dir / "daemon.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::Error("cannot open '" + path.string() + "': " + executor::os::ErrnoText(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return Status::Error(ErrorCode::kConflict, "another kiln serve uses " + data_dir.string());
  }
  return fd;
}

}  // namespace

fs::path SupervisorDir(const fs::path& data_dir) { return data_dir / "supervisor"; }

Result<std::unique_ptr<DataDirLock>> DataDirLock::Take(const fs::path& data_dir) {
  // A supervisor that exits holds the lock for a moment (to see whether a daemon uses the
  // folder): wait that out, but not a daemon.
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (true) {
    auto fd = TryLock(data_dir);
    if (fd.ok()) return std::unique_ptr<DataDirLock>(new DataDirLock(*fd));
    if (fd.status().code() != ErrorCode::kConflict || std::chrono::steady_clock::now() > deadline) {
      return fd.status();
    }
    std::this_thread::sleep_for(50ms);
  }
}

DataDirLock::~DataDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

Status SpawnSupervisor(const SupervisionOptions& options) {
  const fs::path dir = SupervisorDir(options.data_dir);
  if (Status s = executor::os::MakeDirs(dir, 0700); !s.ok()) return s;
  const fs::path log_path = dir / "supervisor.log";
  executor::os::UniqueFd log(
      ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) {
    return Status::Error("cannot open '" + log_path.string() +
                         "': " + executor::os::ErrnoText(errno));
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Status::Error("starting the supervisor: " + executor::os::ErrnoText(errno));
  }
  executor::os::UniqueFd read_end(fds[0]);
  executor::os::UniqueFd write_end(fds[1]);

  std::vector<std::string> args = {SelfExe(),    "supervise",
                                   "--data-dir", options.data_dir.string(),
                                   "--daemon",   options.daemon,
                                   "--lease-ms", std::to_string(options.lease.count()),
                                   "--ready-fd", "3"};
  if (options.embedded) {
    args.push_back("--embedded");
    if (!options.pg_bin_dir.empty()) {
      args.push_back("--pg-bin-dir");
      args.push_back(options.pg_bin_dir.string());
    }
  }
  std::vector<std::string> env = {"KILN_DATABASE_URL=" + options.database_url};
  for (const char* name : {"PATH", "LANG", "TZ", "KILN_CRASH_AT"}) {
    if (const char* v = std::getenv(name)) env.push_back(std::string(name) + "=" + v);
  }
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, log.get(), 2);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 3);
  posix_spawn_file_actions_addclosefrom_np(&actions, 4);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  write_end.reset();
  if (rc != 0) {
    return Status::Error("starting the supervisor (" + args[0] +
                         "): " + executor::os::ErrnoText(rc));
  }
  // It forks at once and its parent exits: reap that one.
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string said;
  const auto deadline = std::chrono::steady_clock::now() + kSpawnTimeout;
  char buf[512];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status::Error("the supervisor did not start in time");
    pollfd p{read_end.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    said.append(buf, static_cast<size_t>(n));
  }
  while (!said.empty() && (said.back() == '\n' || said.back() == '\r')) said.pop_back();
  if (said == "ok") return Status::Ok();
  if (said.find("another supervisor already runs") != std::string::npos) {
    // One is still there (exiting, or another daemon's just spawned): the caller may wait.
    return Status::Error(ErrorCode::kConflict, "the supervisor did not start: " + said);
  }
  return Status::Error(said.empty() ? "the supervisor exited without starting (see " +
                                          log_path.string() + ")"
                                    : "the supervisor did not start: " + said);
}

Result<store::Database*> DatabaseLedger::Db() {
  if (!db_) {
    auto db = store::Database::Connect(url_);
    if (!db.ok()) return db.status();
    db_ = std::move(db).value();
  }
  return db_.get();
}

void DatabaseLedger::Check(const Status& s) {
  if (!s.ok() && s.code() == ErrorCode::kUnavailable) db_.reset();
}

Result<std::vector<executor::Ledger::Stop>> DatabaseLedger::Renew(
    const std::vector<scheduler::AttemptKey>& running) {
  auto db = Db();
  if (!db.ok()) return db.status();
  auto renewed = (*db)->RenewSupervisor(name_, daemon_, lease_, running);
  if (!renewed.ok()) {
    Check(renewed.status());
    return renewed.status();
  }
  std::vector<Stop> stops;
  for (const store::StopOrder& o : renewed->second) stops.push_back(Stop{o.key, o.cause});
  return stops;
}

Status DatabaseLedger::Record(const std::vector<executor::wire::Ended>& ends) {
  auto db = Db();
  if (!db.ok()) return db.status();
  std::vector<store::RecordedOutcome> rows;
  for (const auto& e : ends) rows.push_back(store::RecordedOutcome{e.key, e.outcome});
  Status s = (*db)->RecordOutcomes(name_, rows);
  Check(s);
  return s;
}

Result<std::set<scheduler::AttemptKey>> DatabaseLedger::StartsRecorded(
    const std::vector<scheduler::AttemptKey>& keys) {
  auto db = Db();
  if (!db.ok()) return db.status();
  // Renewals wait meanwhile: at most a tenth of the lease (3 s of the default 30 s) for each of
  // its two locks.
  auto recorded = (*db)->StartsRecorded(name_, keys, lease_ / 10);
  if (!recorded.ok()) Check(recorded.status());
  return recorded;
}

Status DatabaseLedger::Release() {
  auto db = Db();
  if (!db.ok()) return db.status();
  Status s = (*db)->ReleaseLease(name_);
  Check(s);
  return s;
}

int RunSupervisor(const SupervisionOptions& options, int ready_fd) {
  const pid_t child = ::fork();
  if (child < 0) {
    executor::os::WriteAll(ready_fd, "fork: " + executor::os::ErrnoText(errno) + "\n");
    return 1;
  }
  if (child > 0) ::_exit(0);
  ::setsid();
  // Each attempt holds a pipe and a pidfd here: a thousand at once need more than the usual
  // soft limit of 1,024 descriptors.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  ::signal(SIGHUP, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  // Its tasks are stopped when it is gone, SIGKILL included, not when a next supervisor starts.
  if (Status s = executor::guard::Start("the supervisor of " + options.daemon); !s.ok()) {
    log::Warn("supervisor: " + s.message());
  }
  executor::SupervisorOptions so;
  so.dir = SupervisorDir(options.data_dir);
  so.name = SupervisorName(options.daemon);
  so.lease = options.lease;
  so.ack_timeout = std::min<Duration>(5s, options.lease / 3);
  // The embedded cluster is used while this process runs: nobody else stops it meanwhile.
  std::shared_ptr<executor::os::UniqueFd> users;
  if (options.embedded) {
    auto held = store::EmbeddedPostgres::HoldUse(options.data_dir);
    if (!held.ok()) {
      executor::os::WriteAll(ready_fd, held.message() + "\n");
      return 1;
    }
    users = std::make_shared<executor::os::UniqueFd>(*held);
  }
  if (options.embedded) {
    so.on_idle_exit = [options, users] {
      // Nobody else uses the embedded cluster when no daemon holds the data folder.
      auto lock = TryLock(options.data_dir);
      if (!lock.ok()) return;
      executor::os::UniqueFd held(*lock);
      store::EmbeddedOptions eo;
      eo.data_dir = options.data_dir;
      eo.pg_bin_dir = options.pg_bin_dir;
      if (Status s = store::EmbeddedPostgres::StopLeftRunning(eo, users ? users->get() : -1);
          !s.ok()) {
        log::Error("supervisor: " + s.message());
      }
    };
  }
  DatabaseLedger ledger(options.database_url, so.name, options.daemon, options.lease);
  executor::Supervisor supervisor(so, ledger);
  Status started = supervisor.Start();
  executor::os::WriteAll(ready_fd, started.ok() ? std::string("ok\n") : started.message() + "\n");
  ::close(ready_fd);
  if (!started.ok()) {
    log::Error("supervisor: " + started.message());
    return 1;
  }
  log::Info("supervisor: " + so.name + " serves " + options.daemon);
  return supervisor.Run();
}

std::string SelfExe() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("/proc/self/exe") : exe.string();
}

}  // namespace kiln::daemon
