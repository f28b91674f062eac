// The worker's loop side and its life (daemon/worker.h); the database thread is worker_db.cc.
#include <sys/inotify.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <charconv>
#include <iostream>
#include <regex>

#include "common/log.h"
#include "daemon/dispatch.h"
#include "daemon/worker_impl.h"
#include "executor/os.h"
#include "executor/wire.h"

namespace kiln::daemon {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using scheduler::AttemptKey;
using scheduler::AttemptOutcome;

namespace {

// "<task>.<attempt>.log" in the folder of run `run` (task ids hold no '.').
std::optional<AttemptKey> KeyOfLog(const fs::path& file, const std::string& run) {
  std::string name = file.filename().string();
  if (!name.ends_with(".log")) return std::nullopt;
  name.resize(name.size() - 4);
  const size_t dot = name.rfind('.');
  int64_t id = 0;
  int attempt = 0;
  if (dot == std::string::npos ||
      std::from_chars(run.data(), run.data() + run.size(), id).ec != std::errc() ||
      std::from_chars(name.data() + dot + 1, name.data() + name.size(), attempt).ec !=
          std::errc()) {
    return std::nullopt;
  }
  return AttemptKey{RunId(id), name.substr(0, dot), attempt};
}

}  // namespace

Worker::~Worker() {
  if (db_thread_.joinable()) {
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    Wake();
    db_thread_.join();
  }
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
}

void Worker::Wake() { wake_.Notify(); }

fs::path Worker::LogOf(const AttemptKey& key) const {
  // Every part matches the format's id patterns or is a number: nothing leaves the folder.
  return o_.data_dir / "logs" / ToString(key.run) /
         (key.task_id + "." + std::to_string(key.attempt) + ".log");
}

Status Worker::Open() {
  static const std::regex kPool("^[a-z0-9][a-z0-9_-]{0,63}$");
  if (o_.pools.empty()) return Status::Error("--pools: name at least one pool");
  for (const std::string& pool : o_.pools) {
    if (!std::regex_match(pool, kPool)) {
      return Status::Error("--pools: '" + pool +
                           "' is not a pool name (1-64 of a-z 0-9 _ -, starting with a letter "
                           "or digit)");
    }
  }
  if (o_.slots < 1 || o_.slots > 10000) {
    return Status::Error("--slots: must be between 1 and 10000, got " + std::to_string(o_.slots));
  }
  // Who tasks run as is this machine's choice, as for a daemon (kiln-task and a user id per run
  // when root), never the daemon's: a daemon that runs tasks as itself must not make a root
  // worker run them as root.
  auto users = TaskUser(o_.config, /*daemon=*/true);
  if (!users.ok()) return users.status();
  task_user_ = std::move(users).value();
  o_.data_dir = fs::absolute(o_.data_dir).lexically_normal();
  // Logs and records: the worker's own (0750 where it makes them, as a daemon's data folder).
  if (Status s = executor::os::MakeDirs(o_.data_dir, 0750); !s.ok()) return s;
  auto lock = DataDirLock::Take(o_.data_dir);
  if (!lock.ok()) return lock.status();
  lock_ = std::move(lock).value();
  if (o_.name.empty()) o_.name = DaemonName(o_.data_dir);
  supervisor_ = SupervisorName(o_.name);
  {
    auto db = store::Database::Connect(o_.database_url);
    if (!db.ok()) return db.status();
    if (Status s = (*db)->Migrate(); !s.ok()) return s;
    auto term = (*db)->RenewWorker(o_.name, o_.pools, o_.slots, o_.lease);
    if (!term.ok()) return term.status();
  }
  if (wake_.fd() < 0) return Status::Error("eventfd: the database thread's wake-up cannot be made");
  inotify_fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (inotify_fd_ < 0) return Status::Error("inotify: " + executor::os::ErrnoText(errno));

  SupervisionOptions supervision;
  supervision.data_dir = o_.data_dir;
  supervision.daemon = o_.name;
  supervision.database_url = o_.database_url;
  supervision.lease = o_.lease;
  executor::SupervisedRunnerOptions options;
  options.dir = SupervisorDir(o_.data_dir);
  options.daemon = o_.name;
  options.log_cap_bytes = o_.config.log_cap_bytes;
  options.kill_grace = o_.config.kill_grace;
  options.spawn = [supervision] { return SpawnSupervisor(supervision); };
  auto dialed = executor::Dial(options);
  if (!dialed.ok()) return dialed.status();
  // What the supervisor still has from before this process (a restart): adopted below.
  std::vector<AttemptKey> kept = dialed->welcome.running;
  for (const auto& end : dialed->welcome.ended) kept.push_back(end.key);
  runner_ = std::make_unique<executor::SupervisedRunner>(io_, std::move(options));
  runner_->Attach(std::move(dialed).value());
  for (const AttemptKey& key : kept) Adopt(key);
  FollowLeftovers();
  return Status::Ok();
}

// Logs left by a worker that stopped before shipping them whole (its supervisor recorded the
// ends itself): their rest is shipped, then they are removed.
void Worker::FollowLeftovers() {
  std::error_code ec;
  for (const auto& run : fs::directory_iterator(o_.data_dir / "logs", ec)) {
    for (const auto& file : fs::directory_iterator(run.path(), ec)) {
      auto key = KeyOfLog(file.path(), run.path().filename().string());
      if (!key || tasks_.count(*key) != 0) continue;
      std::lock_guard lock(mu_);
      follow_.push_back(NewFollow{*key, file.path(), false, /*leftover=*/true});
    }
  }
}

void Worker::Adopt(const AttemptKey& key) {
  const TaskId task{next_task_++};
  tasks_[key] = task;
  scheduler::AdoptRequest request;
  request.run = key.run;
  request.task = task;
  request.attempt = key.attempt;
  request.task_id = key.task_id;
  request.supervisor = supervisor_;
  {
    std::lock_guard lock(mu_);
    // One slot until the database says how many it holds (Reconcile).
    if (slots_.emplace(key, 1).second) ++in_flight_;
    follow_.push_back(NewFollow{key, LogOf(key), /*fresh=*/false});
  }
  runner_->Adopt(request, [this, key](AttemptOutcome o) { OnEnded(key, std::move(o)); });
}

// What the database says this worker holds (after each connect): attempts it has not started
// (a claim whose answer was lost, a worker that stopped between a claim and its start) are
// started now.
void Worker::Reconcile(std::vector<store::Claimed> held) {
  // Their slots were counted by the database thread already.
  for (store::Claimed& c : held) {
    if (tasks_.count(c.key) == 0) {
      log::Info("worker: starting attempt " + c.key.ToString() + ", claimed but not started");
      StartClaimed(std::move(c));
    }
  }
}

void Worker::StartClaimed(store::Claimed claimed) {
  const AttemptKey key = claimed.key;
  if (tasks_.count(key) != 0) return;  // started already (a reconcile after the claim)
  executor::wire::Reader reader(claimed.launch);
  std::optional<executor::wire::Launch> launch;
  if (reader.U8() == static_cast<uint8_t>(executor::wire::Type::kStart)) {
    launch = executor::wire::DecodeLaunch(reader);
  }
  tasks_[key] = TaskId{next_task_++};
  if (!launch || launch->key != key) {
    AttemptOutcome never;
    never.error = "worker " + o_.name + " cannot read its launch (another version of kiln?)";
    never.ended_at = NowUtc();
    OnEnded(key, never);
    return;
  }
  const std::string self = SelfExe();
  for (auto* argv : {&launch->argv, &launch->collect_argv}) {
    if (!argv->empty() && argv->front() == kKilnExeMark) argv->front() = self;
  }
  // The log is written here and shipped to the database (the daemon's path means nothing here).
  // Its folder is made now, for the database thread to watch; the file itself only at the
  // task's first byte (a task that prints nothing costs no file).
  const fs::path log = LogOf(key);
  // Not listable by other users of the machine, as the daemon's logs (docs/security.md).
  if (Status s = executor::os::MakeDirs(log.parent_path(), 0750); !s.ok()) {
    log::Warn("worker: " + s.message());
  }
  scheduler::LaunchRequest request = executor::FromWire(std::move(*launch));
  request.log_path = log;
  request.task = tasks_[key];
  request.user = RunIdentity(task_user_.user, task_user_.uids, Value(key.run));
  {
    std::lock_guard lock(mu_);
    follow_.push_back(NewFollow{key, log, /*fresh=*/true});
  }
  Wake();
  runner_->Start(std::move(request), [this, key](AttemptOutcome o) { OnEnded(key, std::move(o)); });
}

void Worker::OnEnded(const AttemptKey& key, AttemptOutcome outcome) {
  {
    std::lock_guard lock(mu_);
    ends_.push_back(store::RecordedOutcome{key, std::move(outcome)});
  }
  Wake();
}

void Worker::Acked(const std::vector<AttemptKey>& keys) {
  for (const AttemptKey& key : keys) {
    auto it = tasks_.find(key);
    if (it == tasks_.end()) continue;
    runner_->Recorded(key.run, it->second, key.attempt);
    tasks_.erase(it);
  }
  MaybeDone();
}

// Stopping and nothing left: not a start posted, not an end unrecorded.
void Worker::MaybeDone() {
  {
    std::lock_guard lock(mu_);
    if (!draining_ || in_flight_ != 0) return;
  }
  if (!tasks_.empty()) return;
  // The acknowledgements reach the supervisor, then we are done.
  runner_->Drain([this] { io_.stop(); });
}

void Worker::KillWhere(const std::function<bool(const AttemptKey&)>& match) {
  for (const auto& [key, task] : tasks_) {
    if (match(key)) runner_->Kill(key.run, task);
  }
}

void Worker::OnSignal() {
  if (++signals_ > 1) {
    log::Info("worker: stopping now; its supervisor keeps the attempts under way");
    io_.stop();
    return;
  }
  log::Info("worker: stopping: no more claims; waiting for " + std::to_string(tasks_.size()) +
            " attempts to end (signal again to leave them to the supervisor)");
  {
    std::lock_guard lock(mu_);
    draining_ = true;
  }
  Wake();
  MaybeDone();
}

int Worker::Run() {
  if (Status s = Open(); !s.ok()) {
    std::cerr << "kiln worker: " << s.message() << '\n';
    return 1;
  }
  asio::signal_set signals(io_, SIGINT, SIGTERM);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& e, int) {
        if (e) return;
        OnSignal();
        signals.async_wait(on_signal);
      };
  signals.async_wait(on_signal);
  db_thread_ = std::thread([this] { DbLoop(); });
  std::string pools;
  for (const auto& p : o_.pools) pools += (pools.empty() ? "" : ",") + p;
  std::cout << "kiln worker: " << o_.name << " runs pools " << pools << " with " << o_.slots
            << " slots" << std::endl;
  auto work = asio::make_work_guard(io_);
  io_.run();
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  Wake();
  db_thread_.join();
  // Leaving: the worker row goes (its supervisor's lease holds what is left).
  if (auto db = store::Database::Connect(o_.database_url); db.ok()) {
    (void)(*db)->ReleaseLease(o_.name);
  }
  return 0;
}

int RunWorker(WorkerOptions options) {
  ::signal(SIGPIPE, SIG_IGN);
  Worker worker(std::move(options));
  return worker.Run();
}

}  // namespace kiln::daemon
