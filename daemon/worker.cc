#include "daemon/worker.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "common/log.h"
#include "daemon/dispatch.h"
#include "daemon/runtime.h"
#include "daemon/supervision.h"
#include "executor/os.h"
#include "executor/supervised_runner.h"
#include "executor/wire.h"
#include "store/database.h"
#include "store/event_listener.h"

namespace kiln::daemon {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using scheduler::AttemptKey;
using scheduler::AttemptOutcome;
using namespace std::chrono_literals;

namespace {

// Bytes of one log read per attempt and round: a chatty task cannot hold the others' logs back.
constexpr size_t kShipSlice = 1 << 20;
// Logs of running attempts are shipped at most this often (ends are shipped at once).
constexpr auto kShipEvery = 100ms;

struct Follow {
  fs::path path;
  int wd = -1;
  uint64_t shipped = 0;
  bool known = false;  // `shipped` was read from the database
  bool dirty = true;
};

// Reads up to `max` bytes of `path` from `offset`.
std::string ReadFrom(const fs::path& path, uint64_t offset, size_t max) {
  executor::os::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) return "";
  std::string out(max, '\0');
  const ssize_t n = ::pread(fd.get(), out.data(), max, static_cast<off_t>(offset));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

}  // namespace

class Worker {
 public:
  explicit Worker(WorkerOptions options) : o_(std::move(options)) {}
  ~Worker();
  int Run();

 private:
  Status Open();
  // Loop side.
  void StartClaimed(store::Claimed claimed);
  void Adopt(const AttemptKey& key);
  void OnEnded(const AttemptKey& key, AttemptOutcome outcome);
  void Acked(const std::vector<AttemptKey>& keys);
  void KillWhere(const std::function<bool(const AttemptKey&)>& match);
  void OnSignal();
  // Database side.
  void DbLoop();
  bool DbRound(store::Database& db, std::map<AttemptKey, Follow>& follows, bool& backlog);
  void Wake();

  WorkerOptions o_;
  std::string supervisor_;
  asio::io_context io_;
  std::unique_ptr<DataDirLock> lock_;
  std::unique_ptr<executor::SupervisedRunner> runner_;
  std::map<AttemptKey, TaskId> tasks_;  // loop only: attempts here, until their end is recorded
  uint32_t next_task_ = 0;
  int signals_ = 0;

  std::mutex mu_;  // guards what follows
  std::vector<store::RecordedOutcome> ends_;
  // Logs to follow: `fresh` for a new claim (nothing shipped yet), not for an adopted attempt.
  struct NewFollow {
    AttemptKey key;
    fs::path path;
    bool fresh = false;
  };
  std::vector<NewFollow> follow_;
  std::chrono::steady_clock::time_point ship_at_{};  // database thread: next shipping of logs
  int in_flight_ = 0;                                // claimed or adopted, end not yet recorded
  bool draining_ = false;
  bool quit_ = false;
  int wake_fd_ = -1;
  int inotify_fd_ = -1;
  std::thread db_thread_;
};

Worker::~Worker() {
  if (db_thread_.joinable()) {
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    Wake();
    db_thread_.join();
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
}

void Worker::Wake() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
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
  o_.data_dir = fs::absolute(o_.data_dir).lexically_normal();
  std::error_code ec;
  fs::create_directories(o_.data_dir, ec);
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
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  inotify_fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (wake_fd_ < 0 || inotify_fd_ < 0)
    return Status::Error("eventfd/inotify: " + executor::os::ErrnoText(errno));

  SupervisionOptions supervision;
  supervision.data_dir = o_.data_dir;
  supervision.daemon = o_.name;
  supervision.database_url = o_.database_url;
  supervision.lease = o_.lease;
  executor::SupervisedRunnerOptions options;
  options.dir = SupervisorDir(o_.data_dir);
  options.daemon = o_.name;
  options.log_cap_bytes = o_.log_cap_bytes;
  options.kill_grace = o_.kill_grace;
  options.spawn = [supervision] { return SpawnSupervisor(supervision); };
  auto dialed = executor::Dial(options);
  if (!dialed.ok()) return dialed.status();
  // What the supervisor still has from before this process (a restart): adopted below.
  std::vector<AttemptKey> kept = dialed->welcome.running;
  for (const auto& end : dialed->welcome.ended) kept.push_back(end.key);
  runner_ = std::make_unique<executor::SupervisedRunner>(io_, std::move(options));
  runner_->Attach(std::move(dialed).value());
  for (const AttemptKey& key : kept) Adopt(key);
  return Status::Ok();
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
  const fs::path log = o_.data_dir / "logs" / ToString(key.run) /
                       (key.task_id + "." + std::to_string(key.attempt) + ".log");
  {
    std::lock_guard lock(mu_);
    ++in_flight_;
    follow_.push_back(NewFollow{key, log, /*fresh=*/false});
  }
  runner_->Adopt(request, [this, key](AttemptOutcome o) { OnEnded(key, std::move(o)); });
}

void Worker::StartClaimed(store::Claimed claimed) {
  const AttemptKey key = claimed.key;
  executor::wire::Reader reader(claimed.launch);
  std::optional<executor::wire::Launch> launch;
  if (reader.U8() == static_cast<uint8_t>(executor::wire::Type::kStart)) {
    launch = executor::wire::DecodeLaunch(reader);
  }
  if (!launch || launch->key != key) {
    AttemptOutcome never;
    never.error = "worker " + o_.name + " cannot read its launch (another version of kiln?)";
    never.ended_at = NowUtc();
    tasks_[key] = TaskId{next_task_++};
    OnEnded(key, never);
    return;
  }
  const std::string self = SelfExe();
  for (auto* argv : {&launch->argv, &launch->collect_argv}) {
    if (!argv->empty() && argv->front() == kKilnExeMark) argv->front() = self;
  }
  // The log is written here and shipped to the database (the daemon's path means nothing here).
  const fs::path log = o_.data_dir / "logs" / ToString(key.run) /
                       (key.task_id + "." + std::to_string(key.attempt) + ".log");
  std::error_code ec;
  fs::create_directories(log.parent_path(), ec);
  executor::os::UniqueFd made(::open(log.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0640));
  scheduler::LaunchRequest request = executor::FromWire(std::move(*launch));
  request.log_path = log;
  request.task = TaskId{next_task_++};
  tasks_[key] = request.task;
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
  if (draining_ && tasks_.empty()) {
    // Every attempt is recorded: the acknowledgements reach the supervisor, then we are done.
    runner_->Drain([this] { io_.stop(); });
  }
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
  if (tasks_.empty()) runner_->Drain([this] { io_.stop(); });
}

// One round of the database thread: new logs to follow, logs shipped, ends recorded, claims,
// the lease. False when the connection failed (made again by the caller).
bool Worker::DbRound(store::Database& db, std::map<AttemptKey, Follow>& follows, bool& backlog) {
  std::vector<store::RecordedOutcome> ends;
  bool draining = false;
  {
    std::lock_guard lock(mu_);
    for (NewFollow& n : follow_) {
      Follow& f = follows[n.key];
      f.path = std::move(n.path);
      f.known = n.fresh;
    }
    follow_.clear();
    ends = ends_;  // kept until recorded
    draining = draining_;
  }
  // What changed on disk since the last round.
  alignas(inotify_event) char buf[8192];
  std::map<int, AttemptKey> by_wd;
  for (auto& [key, f] : follows) {
    if (f.wd < 0) {
      f.wd = ::inotify_add_watch(inotify_fd_, f.path.c_str(), IN_MODIFY | IN_CLOSE_WRITE);
    }
    by_wd[f.wd] = key;
  }
  for (ssize_t n; (n = ::read(inotify_fd_, buf, sizeof buf)) > 0;) {
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      if (auto it = by_wd.find(ev->wd); it != by_wd.end()) follows[it->second].dirty = true;
      p += sizeof(inotify_event) + ev->len;
    }
  }
  // Logs first: an attempt's log is whole in the database before its end is.
  std::vector<store::ShippedLog> chunks;
  std::set<AttemptKey> ending;
  for (const auto& e : ends) ending.insert(e.key);
  for (auto& [key, f] : follows) {
    if (!f.known) {
      auto shipped = db.ReadShippedLog(key, 0, 0);
      if (!shipped.ok()) return false;
      f.shipped = shipped->second;
      f.known = true;
    }
    const bool ends_now = ending.count(key) != 0;
    // Running attempts' logs go at most every kShipEvery, all of them at once; an end's at once.
    if (!ends_now && (!f.dirty || std::chrono::steady_clock::now() < ship_at_)) continue;
    for (uint64_t at = f.shipped;;) {
      std::string data = ReadFrom(f.path, at, kShipSlice);
      if (data.empty()) break;
      const size_t n = data.size();
      chunks.push_back(store::ShippedLog{key, at, std::move(data)});
      at += n;
      if (!ends_now) break;  // running: the rest next round
    }
  }
  if (!chunks.empty()) {
    if (Status s = db.ShipLogs(chunks); !s.ok()) {
      log::Error("worker: " + s.message());
      return s.code() != ErrorCode::kUnavailable;
    }
  }
  bool running_shipped = false;
  for (const auto& c : chunks) {
    Follow& f = follows[c.key];
    f.shipped += c.data.size();
    f.dirty = c.data.size() == kShipSlice;  // more to read
    running_shipped = running_shipped || ending.count(c.key) == 0;
  }
  if (running_shipped) ship_at_ = std::chrono::steady_clock::now() + kShipEvery;
  if (!ends.empty()) {
    auto refused = db.RecordWorkerEnds(o_.name, supervisor_, ends);
    if (!refused.ok()) {
      log::Error("worker: " + refused.message());
      return refused.status().code() != ErrorCode::kUnavailable;
    }
    for (const AttemptKey& key : *refused) {
      log::Warn("worker: the end of attempt " + key.ToString() +
                " was not taken: it is no longer this worker's (its lease lapsed, or the task "
                "was stopped or ended elsewhere)");
    }
    std::vector<AttemptKey> keys;
    for (const auto& e : ends) {
      keys.push_back(e.key);
      auto it = follows.find(e.key);
      if (it != follows.end()) {
        if (it->second.wd >= 0) ::inotify_rm_watch(inotify_fd_, it->second.wd);
        follows.erase(it);
      }
    }
    {
      std::lock_guard lock(mu_);
      ends_.erase(ends_.begin(), ends_.begin() + static_cast<ptrdiff_t>(ends.size()));
      in_flight_ -= static_cast<int>(ends.size());
    }
    asio::post(io_, [this, keys] { Acked(keys); });
    backlog = true;  // a slot came free: look again
  }
  int free = 0;
  {
    std::lock_guard lock(mu_);
    free = o_.slots - in_flight_;
  }
  if (backlog && !draining && free > 0) {
    auto claimed = db.Claim(o_.name, supervisor_, o_.pools, free);
    if (!claimed.ok()) {
      log::Error("worker: " + claimed.message());
      return claimed.status().code() != ErrorCode::kUnavailable;
    }
    backlog = static_cast<int>(claimed->size()) == free;
    {
      std::lock_guard lock(mu_);
      in_flight_ += static_cast<int>(claimed->size());
    }
    for (store::Claimed& c : *claimed) {
      asio::post(io_, [this, c = std::move(c)]() mutable { StartClaimed(std::move(c)); });
    }
  }
  return true;
}

void Worker::DbLoop() {
  std::unique_ptr<store::Database> db;
  std::unique_ptr<store::EventListener> listener;
  std::map<AttemptKey, Follow> follows;
  bool backlog = true;  // claim at once: attempts may be waiting
  auto next_renew = std::chrono::steady_clock::now() + o_.lease / 3;
  std::set<std::string> mine(o_.pools.begin(), o_.pools.end());
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (quit_) return;
    }
    if (!db || !listener) {
      auto d = store::Database::Connect(o_.database_url);
      auto l = store::EventListener::Connect(o_.database_url,
                                             {"kiln_dispatch", "kiln_kills", "kiln_commands"});
      if (!d.ok() || !l.ok()) {
        log::Error("worker: " + (d.ok() ? l.message() : d.message()));
        ::poll(nullptr, 0, 1000);
        continue;
      }
      db = std::move(d).value();
      listener = std::move(l).value();
      backlog = true;  // notifications may have been missed
      for (auto& [key, f] : follows) f.known = false;
    }
    if (!DbRound(*db, follows, backlog)) {
      db.reset();
      continue;
    }
    if (std::chrono::steady_clock::now() >= next_renew) {
      auto renewed = db->RenewWorker(o_.name, o_.pools, o_.slots, o_.lease);
      if (!renewed.ok()) {
        log::Error("worker: " + renewed.message());
        db.reset();
        continue;
      }
      next_renew = std::chrono::steady_clock::now() + o_.lease / 3;
    }
    // Wait for a notification, a wake-up (an end, a new log, a signal) or a log that grew.
    bool pending = false;
    {
      std::lock_guard lock(mu_);
      pending = !ends_.empty() || !follow_.empty();
    }
    if (pending) continue;
    const auto now = std::chrono::steady_clock::now();
    auto until = next_renew;
    if (std::any_of(follows.begin(), follows.end(), [](const auto& f) { return f.second.dirty; })) {
      until = std::min(until, ship_at_);  // logs grew: ship them when due
    }
    auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(until - now);
    pollfd fds[3] = {
        {listener->Socket(), POLLIN, 0}, {wake_fd_, POLLIN, 0}, {inotify_fd_, POLLIN, 0}};
    if (::poll(fds, 3, static_cast<int>(std::max<int64_t>(0, timeout.count()))) < 0 &&
        errno != EINTR) {
      log::Error("worker: poll: " + executor::os::ErrnoText(errno));
    }
    if (fds[1].revents & POLLIN) {
      uint64_t n = 0;
      [[maybe_unused]] ssize_t r = ::read(wake_fd_, &n, sizeof n);
    }
    if (fds[0].revents & POLLIN) {
      auto got = listener->Wait(0ms);
      if (!got.ok()) {
        listener.reset();
        continue;
      }
      for (const store::Notification& n : listener->Take()) {
        if (n.channel == "kiln_dispatch") {
          for (size_t at = 0; at <= n.payload.size();) {
            size_t comma = n.payload.find(',', at);
            if (comma == std::string::npos) comma = n.payload.size();
            if (mine.count(n.payload.substr(at, comma - at)) != 0) backlog = true;
            at = comma + 1;
          }
        } else if (n.channel == "kiln_kills") {
          asio::post(io_, [this, text = n.payload] {
            KillWhere([&](const AttemptKey& key) { return key.ToString() == text; });
          });
        } else if (n.channel == "kiln_commands") {
          const std::string run = n.payload.substr(0, n.payload.find(' '));
          asio::post(io_, [this, run] {
            KillWhere([&](const AttemptKey& key) { return ToString(key.run) == run; });
          });
        }
      }
    }
  }
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
  std::cout << "kiln worker: " << o_.name << " runs pools " <<
      [&] {
        std::string list;
        for (const auto& p : o_.pools) list += (list.empty() ? "" : ",") + p;
        return list;
      }() << " with "
            << o_.slots << " slots" << std::endl;
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
