// The supervisor and the daemon's runner on it, in one process: a real socket and real task
// processes, a fake ledger in place of the database.
#include "executor/supervisor.h"

#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/sha256.h"
#include "executor/attempt_journal.h"
#include "executor/supervised_runner.h"
#include "executor/wire.h"
#include "tests/executor/test_util.h"

using namespace kiln;
using namespace kiln::executor;
using namespace kiln::executor::testing;
using scheduler::AttemptKey;
using scheduler::AttemptOutcome;

namespace {

struct FakeLedger final : Ledger {
  Result<std::vector<Stop>> Renew(const std::vector<AttemptKey>& running) override {
    std::lock_guard lock(mu);
    ++renewals;
    last_running = running;
    if (fail_renew) {
      ++failed_renewals;
      renewal_failed.notify_all();
      return Status::Error(ErrorCode::kUnavailable, "database: gone");
    }
    // As the database answers: a stop names an attempt this supervisor has running (one not
    // started yet stays for a later renewal).
    std::vector<Stop> out;
    std::vector<Stop> later;
    for (Stop& stop : stops) {
      const bool named = std::find(running.begin(), running.end(), stop.key) != running.end();
      (named ? out : later).push_back(std::move(stop));
    }
    stops = std::move(later);
    if (strict) {
      // As the database answers: what it does not have running under this supervisor.
      for (const AttemptKey& key : running) {
        if (recorded_starts.count(key) == 0) out.push_back(Stop{key, "superseded"});
      }
    }
    return out;
  }
  Status Record(const std::vector<wire::Ended>& ends) override {
    std::lock_guard lock(mu);
    recorded.insert(recorded.end(), ends.begin(), ends.end());
    return Status::Ok();
  }
  Result<std::set<AttemptKey>> StartsRecorded(const std::vector<AttemptKey>& keys) override {
    std::unique_lock lock(mu);
    ++resolutions;
    resolution_released.wait(lock, [this] { return !hold_resolutions; });
    std::set<AttemptKey> out;
    for (const AttemptKey& key : keys) {
      if (!strict || recorded_starts.count(key) != 0) out.insert(key);
    }
    return out;
  }
  Status Release() override {
    std::lock_guard lock(mu);
    released = true;
    return Status::Ok();
  }
  std::vector<wire::Ended> Recorded() {
    std::lock_guard lock(mu);
    return recorded;
  }
  std::mutex mu;
  int renewals = 0;
  int failed_renewals = 0;
  std::condition_variable renewal_failed;
  bool fail_renew = false;
  bool released = false;
  std::vector<Stop> stops;
  std::vector<wire::Ended> recorded;
  std::vector<AttemptKey> last_running;  // what the last renewal named
  // Strict: every attempt renewed that is not in recorded_starts is superseded.
  bool strict = false;
  std::set<AttemptKey> recorded_starts;
  int resolutions = 0;            // StartsRecorded calls
  bool hold_resolutions = false;  // StartsRecorded waits until it is false again
  std::condition_variable resolution_released;
};

// A supervisor serving on a thread of its own until it exits idle.
class Serving {
 public:
  Serving(const std::filesystem::path& dir, FakeLedger& ledger,
          Duration lease = std::chrono::seconds(30), std::function<void()> on_idle_exit = {}) {
    SupervisorOptions o;
    o.dir = dir;
    o.name = "host:/data/supervisor";
    o.lease = lease;
    o.ack_timeout = std::chrono::seconds(30);
    o.first_daemon_grace = std::chrono::milliseconds(300);
    o.on_idle_exit = std::move(on_idle_exit);
    supervisor_ = std::make_unique<Supervisor>(o, ledger);
    Status started = supervisor_->Start();
    INFO(started.message());
    REQUIRE(started.ok());
    thread_ = std::thread([this] { supervisor_->Run(); });
  }
  ~Serving() { thread_.join(); }

 private:
  std::unique_ptr<Supervisor> supervisor_;
  std::thread thread_;
};

SupervisedRunnerOptions RunnerOptions(const std::filesystem::path& dir) {
  SupervisedRunnerOptions o;
  o.dir = dir;
  o.daemon = "host:/data";
  o.kill_grace = std::chrono::milliseconds(200);
  return o;
}

scheduler::LaunchRequest Launch(const TempDir& tmp, const std::string& task,
                                const std::string& command) {
  scheduler::LaunchRequest r;
  r.run = RunId(7);
  r.task = TaskId(0);
  r.task_id = task;
  r.attempt = 1;
  r.argv = {"/bin/sh", "-c", command};
  r.env = kEnv;
  r.log_path = tmp / (task + ".log");
  return r;
}

// A process in a group of its own that outlives this test's handles (a task orphaned by a
// supervisor that died).
pid_t SpawnOrphan() {
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  const char* argv[] = {"/bin/sleep", "60", nullptr};
  REQUIRE(posix_spawn(&pid, argv[0], nullptr, &attr, const_cast<char**>(argv), nullptr) == 0);
  posix_spawnattr_destroy(&attr);
  return pid;
}

unsigned long long StartTimeOf(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream in(stat.substr(stat.rfind(')') + 2));
  std::string field;
  for (int i = 3; i < 22; ++i) in >> field;
  unsigned long long start = 0;
  in >> start;
  return start;
}

// Runs what is ready on `io` until `done()`, which depends on another thread (the supervisor's).
template <typename Done>
void PollUntil(boost::asio::io_context& io, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    io.restart();
    io.poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

TEST_CASE("the wire carries any bytes and refuses broken frames") {
  wire::Launch l;
  l.key = AttemptKey{RunId(42), "train", 3};
  l.argv = {"python3", std::string("a\0b\xff", 4)};
  l.env = {{"K", "v=1"}};
  l.cwd = "/w";
  l.log_path = "/l/3.log";
  l.create_dirs = {"/r/42"};
  l.timeout_ms = 5000;
  l.kill_grace_ms = 100;
  l.log_cap_bytes = 1 << 20;
  l.user = kiln::Identity{"kiln-task", 999, 995, {995, 44}, true};
  l.collect_argv = {"kiln", "task", "collect"};
  l.mask = {"hunter2", "s3cret"};
  l.confirmed = false;
  l.collect_also_on = {3, 99};
  std::string buffer = wire::EncodeLaunch(l) + wire::EncodeAck({l.key});
  std::string first_half = buffer.substr(0, 10);
  bool error = false;
  CHECK(wire::TakeFrames(first_half, &error).empty());  // incomplete: kept for later
  CHECK_FALSE(error);
  auto frames = wire::TakeFrames(buffer, &error);
  REQUIRE(frames.size() == 2);
  CHECK(buffer.empty());
  wire::Reader r(frames[0]);
  CHECK(r.U8() == static_cast<uint8_t>(wire::Type::kStart));
  auto decoded = wire::DecodeLaunch(r);
  REQUIRE(decoded.has_value());
  CHECK(decoded->key == l.key);
  CHECK(decoded->argv == l.argv);
  CHECK(decoded->env == l.env);
  CHECK(decoded->create_dirs == l.create_dirs);
  CHECK(decoded->log_cap_bytes == l.log_cap_bytes);
  CHECK(decoded->user.switch_user);
  CHECK(decoded->user.name == "kiln-task");
  CHECK(decoded->user.uid == 999);
  CHECK(decoded->user.gid == 995);
  CHECK(decoded->user.groups == std::vector<gid_t>{995, 44});
  CHECK(decoded->collect_argv == l.collect_argv);
  CHECK(decoded->mask == l.mask);
  CHECK_FALSE(decoded->confirmed);
  CHECK(decoded->collect_also_on == std::vector<int>{3, 99});
  {
    // A launch encoded before protocol 6 (a worker's, stored in the database) has none.
    wire::Launch old = l;
    old.collect_also_on.clear();
    std::string frame = wire::EncodeLaunch(old);
    std::string body = frame.substr(4, frame.size() - 4 - 4);  // without the empty list
    wire::Reader before(body);
    CHECK(before.U8() == static_cast<uint8_t>(wire::Type::kStart));
    auto read = wire::DecodeLaunch(before);
    REQUIRE(read.has_value());
    CHECK(read->collect_also_on.empty());
    CHECK_FALSE(read->confirmed);
  }
  wire::Reader keys(frames[1]);
  CHECK(keys.U8() == static_cast<uint8_t>(wire::Type::kAck));
  CHECK(wire::DecodeKeys(keys) == std::vector<AttemptKey>{l.key});
  // A body cut short is refused, not read past its end.
  wire::Reader cut(std::string_view(frames[0]).substr(0, frames[0].size() - 3));
  cut.U8();
  CHECK_FALSE(wire::DecodeLaunch(cut).has_value());
  std::string huge = std::string("\xff\xff\xff\x7f", 4) + "x";
  wire::TakeFrames(huge, &error);
  CHECK(error);
}

TEST_CASE("an attempt runs in the supervisor, its end comes back and is acknowledged") {
  TempDir tmp;
  FakeLedger ledger;
  {
    Serving serving(tmp / "sup", ledger);
    boost::asio::io_context io;
    auto options = RunnerOptions(tmp / "sup");
    auto dialed = Dial(options);
    REQUIRE(dialed.ok());
    CHECK(dialed->welcome.supervisor == "host:/data/supervisor");
    CHECK(dialed->welcome.running.empty());
    SupervisedRunner runner(io, options);
    runner.Attach(std::move(dialed).value());
    std::optional<AttemptOutcome> outcome;
    auto launch = Launch(tmp, "t", "echo hi $PW; exit 3");
    launch.env.emplace_back("PW", "hunter2");
    launch.mask = {"hunter2"};  // crosses the wire: the supervisor masks the log
    runner.Start(std::move(launch), [&](AttemptOutcome o) { outcome = o; });
    RunUntil(io, [&] { return outcome.has_value(); });
    CHECK(outcome->started);
    CHECK(outcome->exit_code == 3);
    CHECK(ReadFile(tmp / "t.log") == "hi ***\n");
    // Its record (written just after the end is sent) is kept until acknowledged.
    const AttemptKey key{RunId(7), "t", 1};
    PollUntil(io, [&] {
      auto journal = ReadJournal(tmp / "sup/attempts");
      return journal.count(key) == 1 && journal[key].end.has_value();
    });
    CHECK(ReadJournal(tmp / "sup/attempts")[key].pid > 1);
    runner.Recorded(RunId(7), TaskId(0), 1);
    PollUntil(io, [&] { return ReadJournal(tmp / "sup/attempts").count(key) == 0; });
  }  // the daemon goes: the supervisor has nothing left and exits
  CHECK(ledger.Recorded().empty());
  CHECK(ledger.released);
}

TEST_CASE("ends no daemon acknowledged are written to the database when the daemon goes") {
  TempDir tmp;
  FakeLedger ledger;
  int idle_exits = 0;
  {
    Serving serving(tmp / "sup", ledger, std::chrono::seconds(30), [&] { ++idle_exits; });
    boost::asio::io_context io;
    auto options = RunnerOptions(tmp / "sup");
    auto dialed = Dial(options);
    REQUIRE(dialed.ok());
    SupervisedRunner runner(io, options);
    runner.Attach(std::move(dialed).value());
    std::optional<AttemptOutcome> outcome;
    runner.Start(Launch(tmp, "t", "exit 0"), [&](AttemptOutcome o) { outcome = o; });
    RunUntil(io, [&] { return outcome.has_value(); });
  }
  // Its hook (stopping the embedded PostgreSQL) ran once, after the lease was released.
  CHECK(idle_exits == 1);
  CHECK(ledger.released);
  auto recorded = ledger.Recorded();
  REQUIRE(recorded.size() == 1);
  CHECK(recorded[0].key == (AttemptKey{RunId(7), "t", 1}));
  CHECK(recorded[0].outcome.exit_code == 0);
  CHECK(ReadJournal(tmp / "sup/attempts").empty());
}

// What a supervisor that died left in tmp/sup: attempt 2 of "train" running as `orphan`, and
// the end of attempt 1 of "eval" (exit 0). A new one takes over, reports both, and keeps nothing.
void CheckTakesOver(const std::filesystem::path& tmp, pid_t orphan) {
  FakeLedger ledger;
  {
    Serving serving(tmp / "sup", ledger);
    // Written before it listens: a daemon may decide an attempt of a start never confirmed
    // again, and must not find this report after its own start.
    CHECK(ledger.Recorded().size() == 2);
    // The orphan is gone before anyone connects.
    int status = 0;
    REQUIRE(waitpid(orphan, &status, 0) == orphan);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
  }  // no daemon comes: what it found goes to the database, then it exits
  auto ended = ledger.Recorded();
  REQUIRE(ended.size() == 2);
  std::sort(ended.begin(), ended.end(), [](const auto& x, const auto& y) { return x.key < y.key; });
  CHECK(ended[0].key == (AttemptKey{RunId(7), "eval", 1}));
  CHECK(ended[0].outcome.exit_code == 0);
  CHECK(ended[1].key == (AttemptKey{RunId(7), "train", 2}));
  CHECK(ended[1].outcome.lost);
  CHECK(ended[1].outcome.error ==
        "its supervisor stopped while it ran; its processes were stopped when a new "
        "supervisor started");
  // One journal is left, and it holds nothing: every record before it is gone.
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(tmp / "sup/attempts")) {
    files.push_back(entry.path().filename().string());
  }
  REQUIRE(files.size() == 1);
  CHECK(files[0].starts_with("journal."));
  CHECK(ReadJournal(tmp / "sup/attempts").empty());
}

std::string EvalEnded() {
  AttemptOutcome done;
  done.started = true;
  done.exit_code = 0;
  return wire::EncodeEnded(wire::Ended{AttemptKey{RunId(7), "eval", 1}, done});
}

TEST_CASE("a supervisor started after one that died stops its orphans and reports them lost") {
  TempDir tmp;
  std::filesystem::create_directories(tmp / "sup/attempts");
  const pid_t orphan = SpawnOrphan();
  // The journal: a compacted head ("C"), appends after it, an attempt forgotten, a last line
  // torn by the death of its writer; and a newer journal whose compaction did not finish.
  std::ofstream(tmp / "sup/attempts/journal.3", std::ios::binary)
      << "R " << orphan << " " << StartTimeOf(orphan) << " 7.train.2\n"
      << "C\n"
      << "R 0 0 7.eval.1\n"
      << "E " << LowerHex(EvalEnded()) << " 7.eval.1\n"
      << "R 0 0 7.gone.1\n"
      << "F 7.gone.1\n"
      << "R 0 0 7.torn";
  std::ofstream(tmp / "sup/attempts/journal.4") << "R 0 0 7.half.1\n";
  std::ofstream(tmp / "sup/attempts/journal.x") << "not a journal\n";
  CheckTakesOver(tmp.path(), orphan);
}

TEST_CASE("a supervisor takes over the per-attempt files of a version before the journal") {
  TempDir tmp;
  std::filesystem::create_directories(tmp / "sup/attempts");
  const pid_t orphan = SpawnOrphan();
  std::ofstream(tmp / "sup/attempts/7.train.2")
      << "R " << orphan << " " << StartTimeOf(orphan) << "\n";
  std::ofstream(tmp / "sup/attempts/7.eval.1.end", std::ios::binary) << "E" << EvalEnded();
  CheckTakesOver(tmp.path(), orphan);
}

namespace {

// A supervisor with a fake ledger and a lease of `lease`, and a runner attached to it.
struct Leased {
  explicit Leased(Duration lease) : serving(tmp / "sup", ledger, lease) {
    auto dialed = Dial(options);
    REQUIRE(dialed.ok());
    runner.Attach(std::move(dialed).value());
  }
  // Starts `exec sleep 60` (attempt 1 of task t of run 7) and runs until its outcome.
  AttemptOutcome RunSleeper() {
    std::optional<AttemptOutcome> outcome;
    runner.Start(Launch(tmp, "t", "exec sleep 60"), [&](AttemptOutcome o) { outcome = o; });
    RunUntil(io, [&] { return outcome.has_value(); });
    return *outcome;
  }
  TempDir tmp;
  FakeLedger ledger;
  Serving serving;
  boost::asio::io_context io;
  SupervisedRunnerOptions options = RunnerOptions(tmp / "sup");
  SupervisedRunner runner{io, options};
};

}  // namespace

TEST_CASE("a supervisor that cannot renew its lease kills its attempts before it expires") {
  Leased l(std::chrono::milliseconds(900));
  {
    std::lock_guard lock(l.ledger.mu);
    l.ledger.fail_renew = true;
  }
  const AttemptOutcome outcome = l.RunSleeper();
  CHECK(outcome.killed);
  CHECK(outcome.signal == SIGKILL);
  CHECK(outcome.stop_cause == "fenced");
  CHECK(outcome.error ==
        "its supervisor could not renew its lease in time (is the database reachable?)");
}

TEST_CASE("a start that comes after the supervisor's fence went off is killed, fenced") {
  Leased l(std::chrono::milliseconds(600));
  {
    std::lock_guard lock(l.ledger.mu);
    l.ledger.fail_renew = true;
  }
  // The first failed renewal comes lease / 3 after the last that worked, the next ones at
  // least lease / 10 apart: after six, that one was sent more than 2/3 of the lease ago (the
  // fence's deadline), and the fence has gone off with nothing to kill.
  {
    std::unique_lock lock(l.ledger.mu);
    REQUIRE(l.ledger.renewal_failed.wait_for(lock, std::chrono::seconds(60),
                                             [&] { return l.ledger.failed_renewals >= 6; }));
  }
  const AttemptOutcome outcome = l.RunSleeper();
  CHECK(outcome.killed);
  CHECK(outcome.signal == SIGKILL);
  CHECK(outcome.stop_cause == "fenced");
}

TEST_CASE("attempts the database says must stop are stopped, with the cause") {
  Leased l(std::chrono::milliseconds(600));
  {
    std::lock_guard lock(l.ledger.mu);
    l.ledger.stops = {Ledger::Stop{AttemptKey{RunId(7), "t", 1}, "cancel"}};
  }
  const AttemptOutcome outcome = l.RunSleeper();
  CHECK(outcome.killed);
  CHECK(outcome.signal == SIGTERM);
  CHECK(outcome.stop_cause == "cancel");
  CHECK(outcome.error == "the run is being cancelled");
}

TEST_CASE("one daemon at a time, one supervisor per folder") {
  TempDir tmp;
  FakeLedger ledger;
  Serving serving(tmp / "sup", ledger);
  auto first = Dial(RunnerOptions(tmp / "sup"));
  REQUIRE(first.ok());
  auto once = RunnerOptions(tmp / "sup");
  once.busy_wait = Duration(0);  // the first stays connected: no use trying again
  auto second = Dial(once);
  CHECK(second.message() == "the supervisor at '" + (tmp / "sup/supervisor.sock").string() +
                                "' refused this daemon: another daemon is connected to this "
                                "supervisor");
  FakeLedger other;
  SupervisorOptions o;
  o.dir = tmp / "sup";
  o.name = "x";
  Supervisor again(o, other);
  CHECK(again.Start().message() == "another supervisor already runs for " + (tmp / "sup").string());
  ::close(first->fd);
}

TEST_CASE("a daemon waits for an exiting supervisor to let go of its folder, then starts one") {
  TempDir tmp;
  FakeLedger ledger;
  std::optional<Serving> serving;
  int spawns = 0;
  auto options = RunnerOptions(tmp / "sup");
  // The first two spawns meet the old supervisor still holding the folder's lock.
  options.spawn = [&]() -> Status {
    if (++spawns < 3) {
      return Status::Error(ErrorCode::kConflict,
                           "the supervisor did not start: another supervisor already runs");
    }
    serving.emplace(tmp / "sup", ledger);
    return Status::Ok();
  };
  auto dialed = Dial(options);
  if (!dialed.ok()) FAIL(dialed.message());
  CHECK(spawns == 3);
  ::close(dialed->fd);
  // Any other failure to spawn is reported at once.
  TempDir other;
  int tries = 0;
  auto failing = RunnerOptions(other / "sup");
  failing.spawn = [&] {
    ++tries;
    return Status::Error("starting the supervisor (kiln): Permission denied");
  };
  CHECK(Dial(failing).message() == "starting the supervisor (kiln): Permission denied");
  CHECK(tries == 1);
}

namespace {

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0; }

// The pid a task wrote to `file` (whole once it ends with a newline).
pid_t PidIn(boost::asio::io_context& io, const std::filesystem::path& file) {
  PollUntil(io, [&] { return std::filesystem::exists(file) && ReadFile(file).ends_with("\n"); });
  return static_cast<pid_t>(std::stol(ReadFile(file)));
}

}  // namespace

TEST_CASE("a start sent before it was recorded is stopped and forgotten when its daemon goes") {
  TempDir tmp;
  FakeLedger ledger;
  ledger.strict = true;
  ledger.recorded_starts = {{RunId(7), "kept", 1}};
  Serving serving(tmp / "sup", ledger, std::chrono::seconds(30));
  boost::asio::io_context io;
  auto options = RunnerOptions(tmp / "sup");
  options.early_starts = [] { return true; };
  std::optional<SupervisedRunner> runner;
  runner.emplace(io, options);
  runner->Attach(Dial(options).value());
  CHECK(runner->StartsBeforeCommit());
  // Two starts sent while they commit; one of them is then recorded.
  auto early = [&](const std::string& task, TaskId id) {
    auto l = Launch(tmp, task, "echo $$ > " + (tmp / (task + ".pid")).string() + "; exec sleep 60");
    l.task = id;
    l.start_recorded = false;
    runner->Start(std::move(l), [](AttemptOutcome) {});
  };
  early("lost", TaskId(0));
  early("kept", TaskId(1));
  const pid_t lost = PidIn(io, tmp / "lost.pid");
  const pid_t kept = PidIn(io, tmp / "kept.pid");
  runner->StartRecorded(RunId(7), TaskId(1), 1);
  bool drained = false;
  runner->Drain([&] { drained = true; });
  PollUntil(io, [&] { return drained; });
  runner.reset();  // the daemon goes (as if killed), after its confirmation was sent
  // The unconfirmed attempt is stopped at once; the confirmed one goes on.
  PollUntil(io, [&] { return !Alive(lost); });
  CHECK(Alive(kept));
  // The next daemon is told of the confirmed attempt only, and nothing went to the database.
  auto again = Dial(options);
  REQUIRE(again.ok());
  CHECK(again->welcome.running == std::vector<AttemptKey>{{RunId(7), "kept", 1}});
  CHECK(again->welcome.ended.empty());
  CHECK(ledger.Recorded().empty());
  auto journal = ReadJournal(tmp / "sup/attempts");
  CHECK(journal.count(AttemptKey{RunId(7), "lost", 1}) == 0);
  REQUIRE(journal.count(AttemptKey{RunId(7), "kept", 1}) == 1);
  CHECK(journal[AttemptKey{RunId(7), "kept", 1}].pid == kept);
  // That daemon may start the forgotten attempt again: it runs anew.
  runner.emplace(io, options);
  runner->Attach(std::move(again).value());
  std::optional<AttemptOutcome> second;
  auto l = Launch(tmp, "lost", "exit 4");
  runner->Start(std::move(l), [&](AttemptOutcome o) { second = o; });
  std::optional<AttemptOutcome> stopped;
  scheduler::AdoptRequest adopt;
  adopt.run = RunId(7);
  adopt.task = TaskId(1);
  adopt.task_id = "kept";
  adopt.supervisor = runner->supervisor();
  runner->Adopt(adopt, [&](AttemptOutcome o) { stopped = o; });
  runner->Kill(RunId(7), TaskId(1));
  RunUntil(io, [&] { return second.has_value() && stopped.has_value(); });
  CHECK(second->exit_code == 4);
  CHECK(stopped->killed);
  CHECK_FALSE(Alive(kept));
}

TEST_CASE("the end of a start never confirmed is not written to the database") {
  TempDir tmp;
  FakeLedger ledger;
  {
    ledger.strict = true;
    ledger.recorded_starts = {{RunId(7), "u", 1}};
    Serving serving(tmp / "sup", ledger);
    boost::asio::io_context io;
    auto options = RunnerOptions(tmp / "sup");
    options.early_starts = [] { return true; };
    SupervisedRunner runner(io, options);
    runner.Attach(Dial(options).value());
    std::optional<AttemptOutcome> first, second;
    auto unconfirmed = Launch(tmp, "t", "exit 0");
    unconfirmed.start_recorded = false;
    runner.Start(std::move(unconfirmed), [&](AttemptOutcome o) { first = o; });
    auto confirmed = Launch(tmp, "u", "exit 0");
    confirmed.task = TaskId(1);
    confirmed.start_recorded = false;
    runner.Start(std::move(confirmed), [&](AttemptOutcome o) { second = o; });
    runner.StartRecorded(RunId(7), TaskId(1), 1);  // the end may come first: both orders hold
    bool drained = false;
    runner.Drain([&] { drained = true; });
    RunUntil(io, [&] { return first.has_value() && second.has_value() && drained; });
    CHECK(first->exit_code == 0);
  }  // the daemon goes without acknowledging either end; the supervisor exits
  auto recorded = ledger.Recorded();
  REQUIRE(recorded.size() == 1);
  CHECK(recorded[0].key == (AttemptKey{RunId(7), "u", 1}));
  CHECK(ReadJournal(tmp / "sup/attempts").empty());
}

TEST_CASE("an unconfirmed start is stopped after a third of the lease, its daemon still there") {
  TempDir tmp;
  FakeLedger ledger;
  ledger.strict = true;  // the database never has it: its daemon's commit hangs
  Serving serving(tmp / "sup", ledger, std::chrono::milliseconds(900));
  boost::asio::io_context io;
  auto options = RunnerOptions(tmp / "sup");
  options.early_starts = [] { return true; };
  SupervisedRunner runner(io, options);
  runner.Attach(Dial(options).value());
  std::optional<AttemptOutcome> outcome;
  auto l = Launch(tmp, "t", "exec sleep 60");
  l.start_recorded = false;
  runner.Start(std::move(l), [&](AttemptOutcome o) { outcome = o; });
  RunUntil(io, [&] { return outcome.has_value(); });
  CHECK(outcome->killed);
  CHECK(outcome->signal == SIGKILL);
  CHECK(outcome->stop_cause == "unconfirmed");
  CHECK(outcome->error ==
        "its start was not recorded in time (the daemon that sent it did not confirm it)");
}

TEST_CASE("a lease renewal that finds an unconfirmed start recorded confirms it") {
  TempDir tmp;
  FakeLedger ledger;
  ledger.strict = true;
  const AttemptKey key{RunId(7), "t", 1};
  ledger.recorded_starts = {key};  // committed; its daemon never sends the confirmation
  Serving serving(tmp / "sup", ledger, std::chrono::milliseconds(900));
  boost::asio::io_context io;
  auto options = RunnerOptions(tmp / "sup");
  options.early_starts = [] { return true; };
  std::optional<SupervisedRunner> runner;
  runner.emplace(io, options);
  runner->Attach(Dial(options).value());
  auto l = Launch(tmp, "t", "echo $$ > " + (tmp / "t.pid").string() + "; exec sleep 60");
  l.start_recorded = false;
  runner->Start(std::move(l), [](AttemptOutcome) {});
  const pid_t pid = PidIn(io, tmp / "t.pid");
  // Two renewals that name it: the answer to the first has been applied when the second is sent.
  int named = 0;
  PollUntil(io, [&] {
    std::lock_guard lock(ledger.mu);
    if (ledger.last_running == std::vector<AttemptKey>{key}) ++named;
    ledger.last_running.clear();
    return named >= 2;
  });
  runner.reset();  // the daemon goes: a confirmed attempt goes on
  auto again = Dial(options);
  REQUIRE(again.ok());
  CHECK(again->welcome.running == std::vector<AttemptKey>{key});
  CHECK(Alive(pid));
  // Past a third of the lease it still runs: not stopped as unconfirmed either.
  runner.emplace(io, options);
  runner->Attach(std::move(again).value());
  std::optional<AttemptOutcome> stopped;
  scheduler::AdoptRequest adopt;
  adopt.run = RunId(7);
  adopt.task_id = "t";
  adopt.supervisor = runner->supervisor();
  runner->Adopt(adopt, [&](AttemptOutcome o) { stopped = o; });
  runner->Kill(RunId(7), TaskId(0));
  RunUntil(io, [&] { return stopped.has_value(); });
  CHECK(stopped->killed);
  CHECK(stopped->stop_cause.empty());
}

TEST_CASE("an attempt whose start was never recorded can be started again, as a new process") {
  TempDir tmp;
  FakeLedger ledger;
  ledger.strict = true;
  Serving serving(tmp / "sup", ledger);
  boost::asio::io_context io;
  auto options = RunnerOptions(tmp / "sup");
  options.early_starts = [] { return true; };
  SupervisedRunner runner(io, options);
  runner.Attach(Dial(options).value());
  // Its start is refused, its run let go and decided again by the same daemon: the same key.
  std::optional<AttemptOutcome> first, second;
  auto l = Launch(tmp, "t", "exit 0");
  l.start_recorded = false;
  runner.Start(std::move(l), [&](AttemptOutcome o) { first = o; });
  RunUntil(io, [&] { return first.has_value(); });
  runner.Start(Launch(tmp, "t", "exit 5"), [&](AttemptOutcome o) { second = o; });
  RunUntil(io, [&] { return second.has_value(); });
  CHECK(first->exit_code == 0);
  CHECK(second->exit_code == 5);
}

TEST_CASE("starts its daemon never confirmed but the database recorded go on when it goes") {
  TempDir tmp;
  FakeLedger ledger;
  ledger.strict = true;
  const AttemptKey ended{RunId(7), "ended", 1}, running{RunId(7), "running", 1};
  ledger.recorded_starts = {ended, running};  // committed; the daemon died before confirming
  Serving serving(tmp / "sup", ledger);
  boost::asio::io_context io;
  auto options = RunnerOptions(tmp / "sup");
  options.early_starts = [] { return true; };
  std::optional<SupervisedRunner> runner;
  runner.emplace(io, options);
  runner->Attach(Dial(options).value());
  std::optional<AttemptOutcome> first;
  auto e = Launch(tmp, "ended", "exit 0");
  e.start_recorded = false;
  runner->Start(std::move(e), [&](AttemptOutcome o) { first = o; });
  auto r = Launch(tmp, "running", "echo $$ > " + (tmp / "r.pid").string() + "; exec sleep 60");
  r.task = TaskId(1);
  r.start_recorded = false;
  runner->Start(std::move(r), [](AttemptOutcome) {});
  RunUntil(io, [&] { return first.has_value(); });
  const pid_t pid = PidIn(io, tmp / "r.pid");
  runner.reset();  // gone without confirming either
  // The database was asked: with no daemon connected, the ended one's end goes there. (A daemon
  // that connects before the answer would get it in its welcome instead, and record it itself:
  // the next test.)
  PollUntil(io, [&] { return ledger.Recorded().size() == 1; });
  CHECK(ledger.Recorded()[0].key == ended);
  CHECK(ledger.Recorded()[0].outcome.exit_code == 0);
  // The next daemon is welcomed with the running one, its to adopt.
  auto again = Dial(options);
  REQUIRE(again.ok());
  CHECK(again->welcome.running == std::vector<AttemptKey>{running});
  CHECK(again->welcome.ended.empty());
  CHECK(Alive(pid));
  {
    std::lock_guard lock(ledger.mu);
    CHECK(ledger.resolutions == 1);
  }
  runner.emplace(io, options);
  runner->Attach(std::move(again).value());
  std::optional<AttemptOutcome> stopped;
  scheduler::AdoptRequest adopt;
  adopt.run = RunId(7);
  adopt.task = TaskId(1);
  adopt.task_id = "running";
  adopt.supervisor = runner->supervisor();
  runner->Adopt(adopt, [&](AttemptOutcome o) { stopped = o; });
  runner->Kill(RunId(7), TaskId(1));
  RunUntil(io, [&] { return stopped.has_value(); });
  CHECK(stopped->killed);
}

TEST_CASE(
    "a daemon that connects while the last one's starts are resolved hears its welcome first") {
  TempDir tmp;
  FakeLedger ledger;
  ledger.strict = true;  // nothing recorded
  ledger.hold_resolutions = true;
  Serving serving(tmp / "sup", ledger);
  boost::asio::io_context io;
  auto options = RunnerOptions(tmp / "sup");
  options.early_starts = [] { return true; };
  std::optional<SupervisedRunner> runner;
  runner.emplace(io, options);
  runner->Attach(Dial(options).value());
  auto u = Launch(tmp, "u", "echo $$ > " + (tmp / "u.pid").string() + "; exec sleep 60");
  u.start_recorded = false;
  runner->Start(std::move(u), [](AttemptOutcome) {});
  // A confirmed one that ends when told to.
  auto c = Launch(tmp, "c",
                  "echo $$ > " + (tmp / "c.pid").string() + "; while [ ! -e " +
                      (tmp / "go").string() + " ]; do sleep 0.01; done");
  c.task = TaskId(1);
  runner->Start(std::move(c), [](AttemptOutcome) {});
  const pid_t unconfirmed = PidIn(io, tmp / "u.pid");
  // Both started before the daemon goes: a start frame still queued would go with it.
  PidIn(io, tmp / "c.pid");
  runner.reset();
  PollUntil(io, [&] {
    std::lock_guard lock(ledger.mu);
    return ledger.resolutions == 1;
  });
  // The next daemon dials while the question is pending; meanwhile an attempt ends.
  std::optional<Result<Dialed>> again;
  std::thread dialing([&] { again = Dial(options); });
  std::ofstream(tmp / "go") << "";
  const AttemptKey c_key{RunId(7), "c", 1};
  PollUntil(io, [&] {
    auto journal = ReadJournal(tmp / "sup/attempts");
    return journal.count(c_key) == 1 && journal[c_key].end.has_value();
  });
  {
    std::lock_guard lock(ledger.mu);
    ledger.hold_resolutions = false;
  }
  ledger.resolution_released.notify_all();
  dialing.join();
  REQUIRE(again.has_value());
  if (!again->ok()) FAIL(again->message());
  struct Closing {
    int fd;
    ~Closing() { ::close(fd); }
  } closing{(*again)->fd};
  // Its welcome tells of the end; the unrecorded start was killed before it (and is reaped).
  REQUIRE((*again)->welcome.ended.size() == 1);
  CHECK((*again)->welcome.ended[0].key == (AttemptKey{RunId(7), "c", 1}));
  CHECK((*again)->welcome.running.empty());
  PollUntil(io, [&] { return !Alive(unconfirmed); });
}

TEST_CASE(
    "an attempt its own supervisor never had, adopted at a start, is reported never launched") {
  TempDir tmp;
  FakeLedger ledger;
  Serving serving(tmp / "sup", ledger, std::chrono::seconds(30));
  boost::asio::io_context io;
  auto options = RunnerOptions(tmp / "sup");
  SupervisedRunner runner(io, options);
  runner.Attach(Dial(options).value());
  // Recorded under this supervisor, which has no record of it, adopted by a daemon that has
  // just started: the daemon that committed it died before sending it. Adopted later (a run
  // read again: the rows may predate an end already handed over), or under another supervisor
  // with no record here: lost.
  scheduler::AdoptRequest adopt;
  adopt.run = RunId(7);
  adopt.task = TaskId(0);
  adopt.task_id = "never";
  adopt.attempt = 2;
  adopt.supervisor = runner.supervisor();
  adopt.at_start = true;
  std::optional<AttemptOutcome> ours, later, other;
  runner.Adopt(adopt, [&](AttemptOutcome o) { ours = o; });
  adopt.task = TaskId(1);
  adopt.task_id = "later";
  adopt.at_start = false;
  runner.Adopt(adopt, [&](AttemptOutcome o) { later = o; });
  adopt.task = TaskId(2);
  adopt.task_id = "gone";
  adopt.supervisor = "host:/elsewhere/supervisor";
  adopt.at_start = true;
  runner.Adopt(adopt, [&](AttemptOutcome o) { other = o; });
  RunUntil(io, [&] { return ours.has_value() && later.has_value() && other.has_value(); });
  CHECK(ours->never_launched);
  CHECK_FALSE(ours->lost);
  CHECK(ours->error == "its start was recorded but never reached its supervisor");
  for (const auto* lost : {&*later, &*other}) {
    CHECK(lost->lost);
    CHECK_FALSE(lost->never_launched);
    CHECK(lost->error == "its supervisor has no record of it (it stopped while the attempt ran)");
  }
}

TEST_CASE("an end the supervisor sends right behind its welcome reaches the adopting daemon") {
  // Found by an e2e crash test: an attempt ended just as a restarted daemon was welcomed, the
  // supervisor sent the end right behind the welcome, one read took both, and Dial kept only the
  // welcome: the adopted attempt then waited for an end that had come already.
  TempDir tmp;
  const std::filesystem::path dir = tmp / "sup";
  std::filesystem::create_directories(dir);
  // A supervisor of the test's own, answering the hello with its welcome and an end in one write.
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = SocketPath(dir).string();
  REQUIRE(path.size() < sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 1) == 0);
  const scheduler::AttemptKey key{RunId(7), "a", 1};
  std::thread fake([&] {
    const int c = ::accept(listener, nullptr, nullptr);
    if (c < 0) return;
    std::string in;
    char buf[4096];
    bool error = false;
    while (wire::TakeFrames(in, &error, 1).empty() && !error) {
      const ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
    }
    wire::Welcome welcome;
    welcome.supervisor = "host:/data/supervisor";
    welcome.running = {key};
    wire::Ended ended;
    ended.key = key;
    ended.outcome.started = true;
    ended.outcome.exit_code = 3;
    const std::string both = wire::EncodeWelcome(welcome) + wire::EncodeEnded(ended);
    CHECK(::write(c, both.data(), both.size()) == static_cast<ssize_t>(both.size()));
    while (::read(c, buf, sizeof buf) > 0) {
    }
    ::close(c);
  });
  {
    auto options = RunnerOptions(dir);
    auto dialed = Dial(options);
    REQUIRE(dialed.ok());
    boost::asio::io_context io;
    SupervisedRunner runner(io, options);
    runner.Attach(std::move(dialed).value());
    scheduler::AdoptRequest request;
    request.run = key.run;
    request.task = TaskId(0);
    request.attempt = key.attempt;
    request.task_id = key.task_id;
    request.supervisor = "host:/data/supervisor";
    request.at_start = true;
    std::optional<AttemptOutcome> got;
    runner.Adopt(request, [&](AttemptOutcome o) { got = std::move(o); });
    PollUntil(io, [&] { return got.has_value(); });
    CHECK(got->started);
    CHECK(got->exit_code == 3);
    CHECK_FALSE(got->lost);
  }
  fake.join();
  ::close(listener);
}
