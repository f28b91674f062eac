#include "executor/supervised_runner.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <deque>
#include <thread>
#include <utility>

#include "common/crash.h"
#include "common/log.h"
#include "executor/os.h"
#include "executor/supervisor.h"

namespace kiln::executor {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using scheduler::AttemptKey;
using scheduler::AttemptOutcome;

namespace {

constexpr int kWelcomeTimeoutMs = 10000;

int ConnectTo(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

AttemptOutcome Lost(const std::string& why) {
  AttemptOutcome o;
  o.lost = true;
  o.error = why;
  o.ended_at = NowUtc();
  return o;
}

}  // namespace

namespace {

// One connection and its hello; kBusy when the supervisor still holds an earlier daemon's
// connection (it refused this one, or closed it before its answer could be read).
Result<Dialed> DialOnce(const SupervisedRunnerOptions& options, bool* busy);

}  // namespace

// A daemon restarted at once after a SIGKILL can say hello before its supervisor has read the
// end of the dead one's connection (it refuses), or while the supervisor exits because that
// daemon died with nothing running (the connection is reset before any answer). The data
// folder's lock keeps a second live daemon out, so either means "in a moment": tried again for
// options.busy_wait (the next try spawns a supervisor if the old one is gone).
Result<Dialed> Dial(const SupervisedRunnerOptions& options) {
  const auto give_up = std::chrono::steady_clock::now() + options.busy_wait;
  while (true) {
    bool busy = false;
    Result<Dialed> dialed = DialOnce(options, &busy);
    if (dialed.ok() || !busy || std::chrono::steady_clock::now() > give_up) return dialed;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

namespace {

Result<Dialed> DialOnce(const SupervisedRunnerOptions& options, bool* busy) {
  const std::string path = SocketPath(options.dir).string();
  int fd = ConnectTo(path);
  // A supervisor that is exiting (its daemon died and it had nothing left to run) has closed its
  // socket but holds its lock for a moment: a new one cannot start until it lets go. Wait that
  // out, a few seconds at most, as DataDirLock::Take does for the data folder.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (fd < 0 && (errno == ENOENT || errno == ECONNREFUSED) && options.spawn) {
    Status spawned = options.spawn();
    fd = ConnectTo(path);
    if (fd >= 0 || spawned.ok()) break;
    // Two daemons may race to spawn; the loser's supervisor exits, the winner's answers.
    if (spawned.code() != ErrorCode::kConflict || std::chrono::steady_clock::now() > give_up) {
      return spawned;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    fd = ConnectTo(path);
  }
  if (fd < 0) {
    return Status::Error(ErrorCode::kUnavailable,
                         "cannot reach the supervisor at '" + path + "': " + os::ErrnoText(errno));
  }
  os::UniqueFd owned(fd);
  if (int err = os::WriteAll(fd, wire::EncodeHello(options.daemon)); err != 0) {
    return Status::Error(ErrorCode::kUnavailable,
                         "writing to the supervisor at '" + path + "': " + os::ErrnoText(err));
  }
  std::string in;
  std::array<char, 64 * 1024> buf;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kWelcomeTimeoutMs);
  while (true) {
    bool error = false;
    auto frames = wire::TakeFrames(in, &error, 1);  // the welcome; what follows is the runner's
    if (error) return Status::Error("the supervisor at '" + path + "' sent a broken frame");
    if (!frames.empty()) {
      wire::Reader r(frames[0]);
      const auto type = static_cast<wire::Type>(r.U8());
      if (type == wire::Type::kRefused) {
        const std::string why = r.Str();
        *busy = why.starts_with(wire::kBusyRefusal);
        return Status::Error(ErrorCode::kConflict,
                             "the supervisor at '" + path + "' refused this daemon: " + why);
      }
      auto welcome = type == wire::Type::kWelcome ? wire::DecodeWelcome(r) : std::nullopt;
      if (!welcome) return Status::Error("the supervisor at '" + path + "' did not say welcome");
      return Dialed{owned.release(), std::move(*welcome), std::move(in)};
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Status::Error(ErrorCode::kUnavailable,
                           "the supervisor at '" + path + "' did not answer in time");
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      return Status::Error("waiting for the supervisor at '" + path + "': " + os::ErrnoText(errno));
    }
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n == 0) {
      *busy = true;  // closed before any answer: as a refusal whose frame was lost
      return Status::Error(ErrorCode::kUnavailable,
                           "the supervisor at '" + path + "' closed the connection");
    }
    if (n < 0 && errno != EINTR && errno != EAGAIN) {
      *busy = errno == ECONNRESET;
      return Status::Error(ErrorCode::kUnavailable, "reading from the supervisor at '" + path +
                                                        "': " + os::ErrnoText(errno));
    }
    if (n > 0) in.append(buf.data(), static_cast<size_t>(n));
  }
}

}  // namespace

struct SupervisedRunner::Socket {
  explicit Socket(asio::io_context& io) : socket(io) {}
  local::socket socket;
  std::string in;
  std::array<char, 64 * 1024> buffer;
  std::deque<std::string> out;
  bool writing = false;
  bool closed = false;
};

SupervisedRunner::SupervisedRunner(asio::io_context& io, SupervisedRunnerOptions options)
    : io_(io), options_(std::move(options)), alive_(std::make_shared<bool>(true)) {}

SupervisedRunner::~SupervisedRunner() {
  *alive_ = false;
  if (socket_) {
    socket_->closed = true;
    boost::system::error_code ignored;
    socket_->socket.close(ignored);
  }
  if (redialer_.joinable()) redialer_.join();
}

void SupervisedRunner::Post(std::function<void()> f) {
  asio::post(io_, [alive = alive_, f = std::move(f)] {
    if (*alive) f();
  });
}

void SupervisedRunner::Attach(Dialed dialed) {
  if (redialer_.joinable()) redialer_.join();
  const bool again = !supervisor_.empty();
  supervisor_ = dialed.welcome.supervisor;
  auto s = std::make_shared<Socket>(io_);
  boost::system::error_code ec;
  s->socket.assign(local(), dialed.fd, ec);
  if (ec) {
    ::close(dialed.fd);
    Disconnected("cannot use the connection: " + ec.message());
    return;
  }
  s->in = std::move(dialed.rest);
  socket_ = s;
  std::set<AttemptKey> running(dialed.welcome.running.begin(), dialed.welcome.running.end());
  std::map<AttemptKey, AttemptOutcome> ended;
  for (auto& e : dialed.welcome.ended) ended[e.key] = std::move(e.outcome);
  if (again) {
    log::Info("supervisor " + supervisor_ + " reached again");
    // What was sent to the supervisor that went away: known to the new one, ended, or lost.
    std::vector<std::pair<AttemptKey, AttemptOutcome>> deliver;
    for (auto& [key, w] : waiting_) {
      if (w.launch || running.erase(key)) continue;
      auto it = ended.find(key);
      if (it != ended.end()) {
        deliver.emplace_back(key, std::move(it->second));
        ended.erase(it);
      } else {
        deliver.emplace_back(key, Lost(w.unconfirmed ? "the connection to its supervisor broke "
                                                       "before its start was confirmed; the "
                                                       "supervisor stopped it"
                                                     : "its supervisor stopped and has no "
                                                       "record of it"));
      }
    }
    for (auto& item : deliver) {
      Post([this, item] { Deliver(item.first, item.second); });
    }
  }
  welcome_running_.insert(running.begin(), running.end());
  for (auto& [key, outcome] : ended) welcome_ended_[key] = std::move(outcome);
  for (auto& [key, w] : waiting_) {
    if (w.launch) {
      Send(std::move(*w.launch));
      w.launch.reset();
    }
  }
  SendControl();
  if (s->in.empty()) {
    Read();
  } else {
    // Frames that came with the welcome, handled on the loop as a read's would be: after the
    // caller's adoptions of the welcome's attempts.
    Post([this, s] {
      if (!s->closed && Consume(s)) Read();
    });
  }
}

wire::Launch ToWire(scheduler::LaunchRequest request, Duration kill_grace, uint64_t log_cap_bytes) {
  wire::Launch l;
  l.key = AttemptKey{request.run, request.task_id, request.attempt};
  l.argv = std::move(request.argv);
  l.env = std::move(request.env);
  l.cwd = request.cwd.string();
  l.log_path = request.log_path.string();
  if (!request.run_dir.empty()) l.create_dirs.push_back(request.run_dir.string());
  l.timeout_ms = request.timeout.count();
  l.kill_grace_ms = kill_grace.count();
  l.log_cap_bytes = log_cap_bytes;
  l.user = std::move(request.user);
  l.collect_argv = std::move(request.collect_argv);
  l.collect_also_on = std::move(request.collect_also_on);
  l.mask = std::move(request.mask);
  l.confirmed = request.start_recorded;
  return l;
}

scheduler::LaunchRequest FromWire(wire::Launch l) {
  scheduler::LaunchRequest r;
  r.run = l.key.run;
  r.task_id = l.key.task_id;
  r.attempt = l.key.attempt;
  r.argv = std::move(l.argv);
  r.env = std::move(l.env);
  r.cwd = l.cwd;
  r.log_path = l.log_path;
  if (!l.create_dirs.empty()) r.run_dir = l.create_dirs.front();
  r.timeout = Duration(l.timeout_ms);
  r.user = std::move(l.user);
  r.collect_argv = std::move(l.collect_argv);
  r.collect_also_on = std::move(l.collect_also_on);
  r.mask = std::move(l.mask);
  r.start_recorded = l.confirmed;
  return r;
}

void SupervisedRunner::Start(scheduler::LaunchRequest request,
                             std::function<void(AttemptOutcome)> on_exit) {
  const RunId run = request.run;
  const TaskId task = request.task;
  wire::Launch l = ToWire(std::move(request), options_.kill_grace, options_.log_cap_bytes);
  const AttemptKey key = l.key;
  current_[{run, task}] = key;
  Waiting& w = waiting_[key];
  w.on_exit = std::move(on_exit);
  w.unconfirmed = !l.confirmed;
  std::string frame = wire::EncodeLaunch(l);
  if (socket_) {
    Send(std::move(frame));
  } else {
    w.launch = std::move(frame);  // sent once the supervisor is reached again
  }
}

void SupervisedRunner::Kill(RunId run, TaskId task) {
  auto it = current_.find({run, task});
  if (it == current_.end()) return;
  auto w = waiting_.find(it->second);
  if (w == waiting_.end()) return;  // ended, or supervised elsewhere
  if (w->second.launch) {
    // Never sent: it never ran.
    AttemptOutcome o;
    o.killed = true;
    o.error = "stopped before its process started";
    o.ended_at = NowUtc();
    const AttemptKey key = it->second;
    w->second.launch.reset();
    Post([this, key, o] { Deliver(key, o); });
    return;
  }
  if (socket_) Send(wire::EncodeKey(wire::Type::kKill, it->second));
}

void SupervisedRunner::Adopt(const scheduler::AdoptRequest& request,
                             std::function<void(AttemptOutcome)> on_exit) {
  if (request.supervisor != supervisor_ && options_.adopt_foreign) {
    options_.adopt_foreign(request, std::move(on_exit));
    return;
  }
  const AttemptKey key{request.run, request.task_id, request.attempt};
  current_[{request.run, request.task}] = key;
  if (auto it = waiting_.find(key); it != waiting_.end()) {
    // Watched here already (its run is being added again): the new watcher takes over.
    it->second.on_exit = std::move(on_exit);
    return;
  }
  if (auto it = welcome_ended_.find(key); it != welcome_ended_.end()) {
    AttemptOutcome outcome = std::move(it->second);
    welcome_ended_.erase(it);
    Post([on_exit = std::move(on_exit), outcome] { on_exit(outcome); });
    return;
  }
  if (welcome_running_.erase(key) != 0) {
    waiting_[key].on_exit = std::move(on_exit);
    return;
  }
  if (request.at_start && request.supervisor == supervisor_ && socket_) {
    // This supervisor keeps every attempt it was sent until its end is in the database; it
    // forgets an unconfirmed one only after killing it, when the database said its start was
    // not recorded or could not say (docs/design.md). One that died had its attempts' ends
    // (lost) written before its successor listened, and its successor stopped what ran in its
    // cgroups. So nothing of a recorded start it has no record of runs: as a rule, the daemon
    // that committed it died before sending it. It starts again, as the same attempt.
    Post([on_exit = std::move(on_exit)] {
      AttemptOutcome never;
      never.never_launched = true;
      never.error = "its start was recorded but never reached its supervisor";
      on_exit(never);
    });
    return;
  }
  Post([on_exit = std::move(on_exit)] {
    on_exit(Lost("its supervisor has no record of it (it stopped while the attempt ran)"));
  });
}

void SupervisedRunner::Recorded(RunId run, TaskId task, int attempt) {
  auto it = current_.find({run, task});
  if (it == current_.end() || it->second.attempt != attempt) return;
  acks_.push_back(it->second);
  current_.erase(it);
  PostControl();
}

void SupervisedRunner::StartRecorded(RunId run, TaskId task, int attempt) {
  auto it = current_.find({run, task});
  if (it == current_.end() || it->second.attempt != attempt) return;
  if (auto w = waiting_.find(it->second); w != waiting_.end()) w->second.unconfirmed = false;
  confirms_.push_back(it->second);
  PostControl();
}

// One confirmation and one acknowledgement per turn of the loop, for every start and end of that
// turn's commits.
void SupervisedRunner::PostControl() {
  if (control_posted_ || !socket_) return;
  control_posted_ = true;
  Post([this] {
    control_posted_ = false;
    SendControl();
  });
}

// Confirmations first: an end is only acknowledged after its start was recorded.
void SupervisedRunner::SendControl() {
  if (!socket_) return;
  if (!confirms_.empty()) {
    Send(wire::EncodeKeys(wire::Type::kConfirm, confirms_));
    confirms_.clear();
  }
  if (!acks_.empty()) {
    Send(wire::EncodeAck(acks_));
    acks_.clear();
  }
}

void SupervisedRunner::Drain(std::function<void()> done) {
  // After the acknowledgements posted this turn have been queued.
  Post([this, done = std::move(done)]() mutable {
    SendControl();
    if (!socket_ || (socket_->out.empty() && !socket_->writing)) {
      done();
      return;
    }
    drained_.push_back(std::move(done));
  });
}

void SupervisedRunner::Deliver(const AttemptKey& key, AttemptOutcome outcome) {
  auto it = waiting_.find(key);
  if (it == waiting_.end()) {
    // Nobody waits for it (yet): an Adopt may claim it.
    welcome_ended_[key] = std::move(outcome);
    return;
  }
  auto on_exit = std::move(it->second.on_exit);
  waiting_.erase(it);
  on_exit(std::move(outcome));
}

void SupervisedRunner::Read() {
  auto s = socket_;
  s->socket.async_read_some(
      asio::buffer(s->buffer),
      [this, s, alive = alive_](const boost::system::error_code& ec, size_t n) {
        if (!*alive || s->closed) return;
        if (ec) {
          Disconnected(ec.message());
          return;
        }
        s->in.append(s->buffer.data(), n);
        if (Consume(s)) Read();
      });
}

bool SupervisedRunner::Consume(const std::shared_ptr<Socket>& s) {
  bool error = false;
  for (const std::string& body : wire::TakeFrames(s->in, &error)) {
    OnFrame(body);
    if (s->closed) return false;
  }
  if (error) {
    Disconnected("it sent a broken frame");
    return false;
  }
  return true;
}

void SupervisedRunner::OnFrame(const std::string& body) {
  wire::Reader r(body);
  const auto type = static_cast<wire::Type>(r.U8());
  if (type == wire::Type::kEnded) {
    if (auto ended = wire::DecodeEnded(r)) {
      CrashPoint("end.received");
      Deliver(ended->key, std::move(ended->outcome));
      return;
    }
  }
  Disconnected("it sent a message this daemon cannot read");
}

void SupervisedRunner::Send(std::string frame) {
  if (!socket_) return;
  socket_->out.push_back(std::move(frame));
  Flush();
}

void SupervisedRunner::Flush() {
  auto s = socket_;
  if (s && !s->writing && s->out.empty()) {
    for (auto& done : std::exchange(drained_, {})) done();
  }
  if (!s || s->writing || s->out.empty()) return;
  s->writing = true;
  asio::async_write(s->socket, asio::buffer(s->out.front()),
                    [this, s, alive = alive_](const boost::system::error_code& ec, size_t) {
                      if (!*alive || s->closed) return;
                      s->writing = false;
                      if (ec) {
                        Disconnected(ec.message());
                        return;
                      }
                      s->out.pop_front();
                      Flush();
                    });
}

void SupervisedRunner::Disconnected(const std::string& why) {
  if (socket_) {
    socket_->closed = true;
    boost::system::error_code ignored;
    socket_->socket.close(ignored);
    // Starts that were written but not sent stay with their attempt, to be sent again.
    socket_.reset();
  }
  for (auto& done : std::exchange(drained_, {})) Post(std::move(done));
  log::Error("lost the connection to the supervisor (" + why + "); reaching it again");
  Redial();
}

void SupervisedRunner::Redial() {
  if (redialer_.joinable()) return;  // already dialing
  redialer_ = std::thread([this, alive = alive_] {
    while (*alive) {
      auto dialed = Dial(options_);
      if (dialed.ok()) {
        asio::post(io_, [this, alive, d = std::move(dialed).value()]() mutable {
          if (!*alive) {
            ::close(d.fd);
            return;
          }
          Attach(std::move(d));
        });
        return;
      }
      log::Error(dialed.message());
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  });
}

void SupervisedRunner::CloseRunFolder(const std::filesystem::path& run_dir) {
  if (Status s = os::CloseFolder(run_dir); !s.ok()) log::Warn(s.message());
}

}  // namespace kiln::executor
