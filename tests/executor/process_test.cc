#include "executor/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>

#include "tests/executor/test_util.h"

using namespace std::chrono_literals;
using kiln::executor::ProcessManager;
using kiln::executor::ProcessResult;
using kiln::executor::ProcessSpec;
namespace t = kiln::executor::testing;

TEST_CASE("exit codes are reported") {
  t::TempDir dir;
  ProcessResult ok = t::RunProcess(t::ShellSpec(dir, "exit 0"));
  CHECK(ok.started);
  CHECK(ok.error.empty());
  CHECK(ok.exit_code == 0);
  CHECK_FALSE(ok.signal.has_value());
  CHECK_FALSE(ok.timed_out);
  CHECK_FALSE(ok.killed);
  CHECK(ok.started_at <= ok.ended_at);
  CHECK(ok.started_at.time_since_epoch() > 0ms);

  ProcessResult three = t::RunProcess(t::ShellSpec(dir, "exit 3"));
  CHECK(three.exit_code == 3);
  CHECK_FALSE(three.signal.has_value());
}

TEST_CASE("a signal that ends the process is reported") {
  t::TempDir dir;
  ProcessResult r = t::RunProcess(t::ShellSpec(dir, "kill -USR1 $$; sleep 5"));
  CHECK(r.started);
  CHECK(r.signal == SIGUSR1);
  CHECK_FALSE(r.exit_code.has_value());
  CHECK_FALSE(r.timed_out);
}

TEST_CASE("stdout and stderr go into one log file, folders created") {
  t::TempDir dir;
  ::mode_t old_umask = ::umask(022);
  ProcessSpec spec = t::ShellSpec(dir, "echo out; echo err >&2; printf 'no newline'");
  spec.log_path = dir / "logs/run-1/task.log";
  ProcessResult r = t::RunProcess(spec);
  ::umask(old_umask);
  CHECK(r.exit_code == 0);
  CHECK(t::ReadFile(spec.log_path) == "out\nerr\nno newline");
  CHECK(r.log_bytes == 18);
  CHECK_FALSE(r.log_truncated);
  struct stat st;
  REQUIRE(::stat(spec.log_path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
  REQUIRE(::stat((dir / "logs").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0750);
  REQUIRE(::stat((dir / "logs/run-1").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0750);
}

TEST_CASE("the log file is made at the first byte, and one already there is emptied at the start") {
  t::TempDir dir;
  // Nothing printed: no file (the folder is made before the start all the same).
  ProcessSpec quiet = t::ShellSpec(dir, "exit 0");
  quiet.log_path = dir / "logs/run-2/quiet.log";
  ProcessResult r = t::RunProcess(quiet);
  CHECK(r.exit_code == 0);
  CHECK(r.error.empty());
  CHECK(r.log_bytes == 0);
  CHECK(std::filesystem::is_directory(dir / "logs/run-2"));
  CHECK_FALSE(std::filesystem::exists(quiet.log_path));

  // A file left at the path (an attempt run again) shows none of its old text.
  {
    std::ofstream old(dir / "again.log");
    old << "the first try's output\n";
  }
  quiet.log_path = dir / "again.log";
  r = t::RunProcess(quiet);
  CHECK(r.exit_code == 0);
  CHECK(t::ReadFile(quiet.log_path).empty());
  ProcessSpec loud = t::ShellSpec(dir, "echo second");
  loud.log_path = dir / "again.log";
  r = t::RunProcess(loud);
  CHECK(t::ReadFile(loud.log_path) == "second\n");

  // The folder gone by the first byte: the process still ran; the result says why no log.
  ProcessSpec gone = t::ShellSpec(dir, "rm -r '" + (dir / "logs/run-3").string() + "'; echo lost");
  gone.log_path = dir / "logs/run-3/gone.log";
  r = t::RunProcess(gone);
  CHECK(r.started);
  CHECK(r.exit_code == 0);
  CHECK(r.log_bytes == 5);
  CHECK(r.error ==
        "cannot open log file '" + gone.log_path.string() + "': No such file or directory");
  CHECK_FALSE(std::filesystem::exists(gone.log_path));
}

TEST_CASE("secret values are masked in the log and the error, also split across writes") {
  t::TempDir dir;
  // Each byte of the secret in a write of its own, with pauses between: the reader sees several
  // chunks. Then a secret at the very end, and a start failure naming one.
  ProcessSpec spec = t::ShellSpec(
      dir,
      "echo \"pw=$PW.\"; for c in h u n t e r 2; do printf %s $c; sleep 0.01; done; echo; "
      "printf 'hunt'; printf 'end hunter2'");
  spec.env.emplace_back("PW", "hunter2");
  spec.mask = {"hunter2"};
  ProcessResult r = t::RunProcess(spec);
  CHECK(r.exit_code == 0);
  CHECK(t::ReadFile(spec.log_path) == "pw=***.\n***\nhuntend ***");
  CHECK(r.log_bytes == 35);  // the task's own bytes

  // Wherever the cap cuts, no part of the secret is written.
  for (uint64_t cap = 1; cap <= 24; ++cap) {
    ProcessSpec capped = t::ShellSpec(dir, "printf 0123456789hunt; sleep 0.01; printf 'er2 after'");
    capped.mask = {"hunter2"};
    capped.log_cap_bytes = cap;
    ProcessResult cr = t::RunProcess(capped);
    const std::string log = t::ReadFile(capped.log_path);
    INFO("cap " << cap << ": " << log);
    CHECK(log.find("hu") == std::string::npos);
    CHECK(log.starts_with(std::string("0123456789***").substr(0, cap)));
    CHECK(cr.log_truncated == (cap < 19));
  }

  ProcessSpec missing = t::ShellSpec(dir, "true");
  missing.argv = {"/no/such/hunter2"};
  missing.mask = {"hunter2"};
  ProcessResult failed = t::RunProcess(missing);
  CHECK_FALSE(failed.started);
  CHECK(failed.error == "cannot start '/no/such/***': No such file or directory");
  CHECK(t::ReadFile(missing.log_path) ==
        "[kiln: cannot start '/no/such/***': No such file or directory]\n");
}

TEST_CASE("the environment is exactly the one given") {
  t::TempDir dir;
  ::setenv("KILN_SHOULD_NOT_LEAK", "secret", 1);
  ProcessSpec spec;
  spec.argv = {"env"};
  spec.env = {{"PATH", "/usr/bin:/bin"}, {"KILN_IDEMPOTENCY_KEY", "run 1/a b"}};
  spec.log_path = dir / "env.log";
  ProcessResult r = t::RunProcess(spec);
  ::unsetenv("KILN_SHOULD_NOT_LEAK");
  CHECK(r.exit_code == 0);
  CHECK(t::ReadFile(spec.log_path) == "PATH=/usr/bin:/bin\nKILN_IDEMPOTENCY_KEY=run 1/a b\n");
}

TEST_CASE("the child sees only fds 0, 1 and 2, with stdin from /dev/null") {
  t::TempDir dir;
  // An fd the daemon leaked without O_CLOEXEC must not reach the task either.
  int leaked = ::open("/dev/null", O_RDONLY);
  REQUIRE(leaked >= 3);
  ProcessSpec spec = t::ShellSpec(dir, "ls /proc/$$/fd; readlink /proc/$$/fd/0; cat; echo end");
  ProcessResult r = t::RunProcess(spec);
  ::close(leaked);
  CHECK(r.exit_code == 0);
  CHECK(t::ReadFile(spec.log_path) == "0\n1\n2\n/dev/null\nend\n");
}

TEST_CASE("signal mask and dispositions are reset in the child") {
  t::TempDir dir;
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  REQUIRE(::pthread_sigmask(SIG_BLOCK, &block, &old_mask) == 0);
  struct sigaction ignore {
  }, old_action{};
  ignore.sa_handler = SIG_IGN;
  REQUIRE(::sigaction(SIGHUP, &ignore, &old_action) == 0);

  ProcessSpec spec;
  spec.argv = {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"};
  spec.env = t::kEnv;
  spec.log_path = dir / "sig.log";
  ProcessResult r = t::RunProcess(spec);

  ::sigaction(SIGHUP, &old_action, nullptr);
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  CHECK(r.exit_code == 0);
  unsigned long long blocked = 0, ignored = 0;
  REQUIRE(std::sscanf(t::ReadFile(spec.log_path).c_str(), "SigBlk:\t%llx\nSigIgn:\t%llx", &blocked,
                      &ignored) == 2);
  CHECK(blocked == 0);
  // glibc 2.36's posix_spawn leaves its two internal signals (32 and 33, below SIGRTMIN, unusable
  // by programs) ignored; sigaddset refuses them, so they cannot be reset through the attributes.
  constexpr unsigned long long kGlibcInternal = (1ull << 31) | (1ull << 32);
  CHECK((ignored & ~kGlibcInternal) == 0);
}

// Runs `spec` with a timeout of 200 ms, and again with twice the last one while the shell had not
// written `marker` (the end of its set-up) when the timeout came: a machine too busy to run a few
// builtins in that time proves nothing about what the timeout does.
ProcessResult RunTimingOut(ProcessSpec spec, const std::filesystem::path& marker) {
  ProcessResult r;
  for (auto timeout = 200ms; timeout <= 12800ms; timeout *= 2) {
    std::filesystem::remove(marker);
    spec.timeout = timeout;
    r = t::RunProcess(spec);
    const std::string text = t::ReadFile(marker);
    if (!text.empty() && text.back() == '\n') break;
  }
  return r;
}

TEST_CASE("a timeout terminates the whole group, background grandchild included") {
  t::TempDir dir;
  ProcessSpec spec = t::ShellSpec(dir, "echo $$ > pgid; sleep 100 & echo $! > grandchild; wait");
  spec.kill_grace = 200ms;
  ProcessResult r = RunTimingOut(spec, dir / "grandchild");
  CHECK(r.started);
  CHECK(r.timed_out);
  CHECK_FALSE(r.killed);
  CHECK(r.signal == SIGTERM);
  pid_t pgid = t::ReadPid(dir / "pgid");
  pid_t grandchild = t::ReadPid(dir / "grandchild");
  CHECK(t::Gone(-pgid));
  CHECK(t::Gone(grandchild));
}

TEST_CASE("a child that ignores SIGTERM is killed after the grace period") {
  t::TempDir dir;
  ProcessSpec spec = t::ShellSpec(dir, "trap '' TERM; echo $$ > pgid; sleep 30; echo survived");
  spec.kill_grace = 200ms;
  ProcessResult r = RunTimingOut(spec, dir / "pgid");
  CHECK(r.timed_out);
  CHECK(r.signal == SIGKILL);
  CHECK(t::ReadFile(spec.log_path).find("survived") == std::string::npos);
  CHECK(t::Gone(-t::ReadPid(dir / "pgid")));
}

TEST_CASE("background processes left behind by a finished task are terminated") {
  t::TempDir dir;
  // One leftover dies on SIGTERM, the other ignores it and needs the SIGKILL; both hold the pipe.
  ProcessSpec spec =
      t::ShellSpec(dir,
                   "echo $$ > pgid; sleep 100 & echo $! > polite; (trap '' TERM; exec sleep 100) & "
                   "echo $! > stubborn; echo done");
  spec.kill_grace = 200ms;
  ProcessResult r = t::RunProcess(spec);
  CHECK(r.exit_code == 0);
  CHECK_FALSE(r.timed_out);
  CHECK_FALSE(r.killed);
  CHECK(t::ReadFile(spec.log_path) == "done\n");
  CHECK(t::Gone(-t::ReadPid(dir / "pgid")));
  CHECK(t::Gone(t::ReadPid(dir / "polite")));
  CHECK(t::Gone(t::ReadPid(dir / "stubborn")));
}

namespace {

// Whether this machine gives kiln a cgroup v1 "pids" hierarchy (executor/cgroup.h).
bool CgroupsOffered() { return ::access("/sys/fs/cgroup/pids/tasks", W_OK) == 0; }

// True when `pid` has ended: reaped here (ended by SIGTERM or SIGKILL) or already gone.
bool KilledAndGone(pid_t pid) {
  int status = 0;
  pid_t r = ::waitpid(pid, &status, 0);
  if (r == pid &&
      !(WIFSIGNALED(status) && (WTERMSIG(status) == SIGKILL || WTERMSIG(status) == SIGTERM))) {
    return false;
  }
  return t::Gone(pid);
}

// A task whose escapee (a process that left its group with setsid) writes its pid to `escaped`
// before the task goes on with `rest`.
std::string Escaping(const std::string& rest) {
  return "mkfifo f; setsid sh -c 'echo $$ > f; exec sleep 30' & read pid < f; "
         "echo $pid > escaped; " +
         rest;
}

}  // namespace

TEST_CASE("a process that left the group is killed when its attempt ends") {
  t::TempDir dir;
  ProcessSpec spec = t::ShellSpec(dir, Escaping("echo main done"));
  spec.kill_grace = 200ms;
  ProcessResult r = t::RunProcess(spec);
  CHECK(r.exit_code == 0);
  CHECK(t::ReadFile(spec.log_path) == "main done\n");
  pid_t escaped = t::ReadPid(dir / "escaped");
  if (CgroupsOffered()) {
    CHECK(KilledAndGone(escaped));
  } else {
    // Without cgroups only the group is followed: the escapee lives on (and held the pipe,
    // which delayed the result by the grace only).
    WARN("no cgroup v1 pids hierarchy: a process that leaves its group outlives its attempt");
    CHECK(::kill(escaped, SIGKILL) == 0);
    CHECK(KilledAndGone(escaped));
  }
}

TEST_CASE("a process that left the group is killed when its attempt times out") {
  t::TempDir dir;
  ProcessSpec spec = t::ShellSpec(dir, Escaping("sleep 30"));
  spec.timeout = 2s;
  spec.kill_grace = 200ms;
  ProcessResult r = t::RunProcess(spec);
  CHECK(r.timed_out);
  pid_t escaped = t::ReadPid(dir / "escaped");
  if (CgroupsOffered()) {
    CHECK(KilledAndGone(escaped));
  } else {
    WARN("no cgroup v1 pids hierarchy: a process that leaves its group outlives its attempt");
    CHECK(::kill(escaped, SIGKILL) == 0);
    CHECK(KilledAndGone(escaped));
  }
}

TEST_CASE("the cgroups of a process killed earlier are emptied when the next one starts") {
  if (!CgroupsOffered()) {
    WARN("no cgroup v1 pids hierarchy: nothing is left behind in one either");
    return;
  }
  // A pid that is gone (a supervisor killed with SIGKILL, say) and a process it left in one of
  // its cgroups.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  int status = 0;
  REQUIRE(::waitpid(dead, &status, 0) == dead);
  const std::filesystem::path owner = "/sys/fs/cgroup/pids/kiln/" + std::to_string(dead);
  pid_t left = ::fork();
  if (left == 0) {
    ::execlp("sleep", "sleep", "60", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Another test process's ProcessManager may remove the dead owner's cgroups while they are
  // still empty: they are made again until the process is in one (a cgroup holding a process
  // cannot be removed; if that manager kills it, the checks below hold all the same).
  bool placed = false;
  for (int i = 0; i < 100 && !placed; ++i) {
    std::error_code ec;
    std::filesystem::create_directories(owner / "7", ec);
    std::ofstream procs(owner / "7" / "cgroup.procs");
    procs << left;
    procs.close();
    placed = !procs.fail();
  }
  REQUIRE(placed);
  boost::asio::io_context io;
  { ProcessManager manager(io); }
  REQUIRE(::waitpid(left, &status, 0) == left);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  // Once it has exited, the next start removes the emptied cgroups.
  { ProcessManager manager(io); }
  CHECK_FALSE(std::filesystem::exists(owner));
}

// Runs a shell script that prints its pids cgroup, then how many processes are in it, counted
// with builtins (a pipeline's processes start one after another: a count by `cat | wc` races
// them); its output. The script counts only once it has read a line from a FIFO that this writes
// after Spawn() returned: until then the spawning thread may still sit in that cgroup (it moves
// on right after the spawn), and a count taken before would see this process there.
std::string RunCountingMembers(ProcessManager& manager, boost::asio::io_context& io,
                               const t::TempDir& dir) {
  const std::filesystem::path fifo = dir / "go";
  std::filesystem::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Read and write: opening never blocks, and the line stays in the FIFO until the shell reads.
  const int go = ::open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(go >= 0);
  std::optional<ProcessResult> result;
  ProcessSpec spec = t::ShellSpec(
      dir, "cg=$(sed -n 's/^[0-9]*:pids://p' /proc/self/cgroup); echo \"$cg\"; read -r _ < '" +
               fifo.string() +
               "'; n=0; while read -r p; do n=$((n + 1)); done < "
               "\"/sys/fs/cgroup/pids$cg/cgroup.procs\"; echo $n");
  manager.Spawn(spec, [&](ProcessResult r) { result = std::move(r); });
  CHECK(::write(go, "go\n", 3) == 3);
  t::RunUntil(io, [&] { return result.has_value(); });
  ::close(go);
  CHECK(result->exit_code == 0);
  return t::ReadFile(spec.log_path);
}

// The pids cgroup of a thread of this process ("/" outside kiln's).
std::string PidsCgroupOf(const std::string& task) {
  std::ifstream in("/proc/self/task/" + task + "/cgroup");
  for (std::string line; std::getline(in, line);) {
    if (auto at = line.find(":pids:"); at != std::string::npos) return line.substr(at + 6);
  }
  return "";
}

TEST_CASE("each process starts alone in its cgroup, a kept one too, and none is left behind") {
  if (!CgroupsOffered()) {
    WARN("no cgroup v1 pids hierarchy: processes are followed by their group only");
    return;
  }
  t::TempDir dir;
  boost::asio::io_context io;
  const std::string home = "/kiln/" + std::to_string(::getpid()) + "/";
  {
    ProcessManager manager(io);
    auto run = [&](const std::string& script) {
      std::optional<ProcessResult> result;
      ProcessSpec spec = t::ShellSpec(dir, script);
      manager.Spawn(spec, [&](ProcessResult r) { result = std::move(r); });
      t::RunUntil(io, [&] { return result.has_value(); });
      CHECK(result->exit_code == 0);
      return t::ReadFile(spec.log_path);
    };
    // Its cgroup held what it left behind: it is killed, and that cgroup is not used again.
    run(Escaping("true"));
    CHECK(KilledAndGone(t::ReadPid(dir / "escaped")));
    // The shell alone, counting with builtins: neither an earlier process nor a thread of kiln.
    std::set<std::string> seen;
    for (int i = 0; i < 4; ++i) {
      const std::string out = RunCountingMembers(manager, io, dir);
      const size_t newline = out.find('\n');
      REQUIRE(newline != std::string::npos);
      const std::string cgroup = out.substr(0, newline);
      CHECK_THAT(cgroup, Catch::StartsWith(home));
      CHECK(out.substr(newline + 1) == "1\n");
      seen.insert(cgroup);
    }
    // Emptied cgroups are used again rather than made anew for each process.
    CHECK(seen.size() < 4);
  }
  // Every thread of this process is back in the root, and the manager's cgroups are gone.
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    CHECK(PidsCgroupOf(task.path().filename().string()) == "/");
  }
  CHECK_FALSE(std::filesystem::exists("/sys/fs/cgroup/pids" + home));
}

TEST_CASE("two managers spawning from one thread each start processes in their own cgroups") {
  if (!CgroupsOffered()) {
    WARN("no cgroup v1 pids hierarchy: processes are followed by their group only");
    return;
  }
  t::TempDir dir;
  boost::asio::io_context io;
  ProcessManager first(io);
  ProcessManager second(io);
  auto run = [&](ProcessManager& manager, const std::string& script) {
    std::optional<ProcessResult> result;
    ProcessSpec spec = t::ShellSpec(dir, script);
    manager.Spawn(spec, [&](ProcessResult r) { result = std::move(r); });
    t::RunUntil(io, [&] { return result.has_value(); });
    CHECK(result->exit_code == 0);
    return t::ReadFile(spec.log_path);
  };
  // Each parks the thread in the cgroup of its next spawn; the second moved it last.
  run(first, "true");
  run(second, "true");
  // The first's next process, left running: in a cgroup of the first's, not where the thread
  // was last parked (the second's next).
  std::optional<ProcessResult> sleeper;
  ProcessSpec sleep = t::ShellSpec(dir, "echo started; exec sleep 30");
  sleep.log_path = dir / "sleeper.log";
  const auto handle = first.Spawn(sleep, [&](ProcessResult r) { sleeper = std::move(r); });
  // Its output wakes the loop once it runs.
  t::RunUntil(io, [&] { return t::ReadFile(sleep.log_path) == "started\n"; });
  // The second's next process finds nobody else in its cgroup.
  const std::string second_out = RunCountingMembers(second, io, dir);
  CHECK(second_out.substr(second_out.find('\n') + 1) == "1\n");
  // And when that one ends, only what was in its cgroup is killed: the first's process lives on
  // until its own manager stops it.
  CHECK(run(second, "true").empty());
  first.Terminate(handle);
  t::RunUntil(io, [&] { return sleeper.has_value(); });
  CHECK(sleeper->killed);
  CHECK(sleeper->signal == SIGTERM);
}

TEST_CASE("a kept cgroup removed meanwhile is not used: every process still starts in one") {
  if (!CgroupsOffered()) {
    WARN("no cgroup v1 pids hierarchy: processes are followed by their group only");
    return;
  }
  t::TempDir dir;
  boost::asio::io_context io;
  const std::string home = "/kiln/" + std::to_string(::getpid()) + "/";
  ProcessManager manager(io);
  auto cgroup_of_next = [&] {
    std::optional<ProcessResult> result;
    ProcessSpec spec = t::ShellSpec(dir, "sed -n 's/^[0-9]*:pids://p' /proc/self/cgroup");
    manager.Spawn(spec, [&](ProcessResult r) { result = std::move(r); });
    t::RunUntil(io, [&] { return result.has_value(); });
    CHECK(result->exit_code == 0);
    return t::ReadFile(spec.log_path);
  };
  // Two processes: the manager then keeps an emptied cgroup for a later one.
  CHECK_THAT(cgroup_of_next(), Catch::StartsWith(home));
  CHECK_THAT(cgroup_of_next(), Catch::StartsWith(home));
  // Another manager of this process removes the empty cgroups it finds, the kept one included.
  { ProcessManager other(io); }
  for (int i = 0; i < 3; ++i) CHECK_THAT(cgroup_of_next(), Catch::StartsWith(home));
}

TEST_CASE("output beyond the cap is drained and discarded") {
  t::TempDir dir;
  ProcessSpec spec;
  spec.argv = {"head", "-c", "104857600", "/dev/zero"};
  spec.env = t::kEnv;
  spec.log_path = dir / "big.log";
  spec.log_cap_bytes = 1 << 20;
  ProcessResult r = t::RunProcess(spec);
  CHECK(r.exit_code == 0);
  CHECK(r.log_bytes == 104857600);
  CHECK(r.log_truncated);
  const std::string marker = "\n[kiln: log truncated at 1048576 bytes; further output discarded]\n";
  std::string log = t::ReadFile(spec.log_path);
  REQUIRE(log.size() == (1u << 20) + marker.size());
  CHECK(log.substr(1 << 20) == marker);
  CHECK(log.find_first_not_of('\0') == (1u << 20));
}

TEST_CASE("output exactly at the cap is not truncated") {
  t::TempDir dir;
  ProcessSpec spec = t::ShellSpec(dir, "printf 0123456789");
  spec.log_cap_bytes = 10;
  ProcessResult r = t::RunProcess(spec);
  CHECK_FALSE(r.log_truncated);
  CHECK(t::ReadFile(spec.log_path) == "0123456789");
}

TEST_CASE("a missing program is a start failure, reported in the result and the log") {
  t::TempDir dir;
  ProcessSpec spec;
  spec.env = t::kEnv;
  spec.log_path = dir / "fail.log";

  spec.argv = {"kiln-no-such-program", "arg"};
  ProcessResult r = t::RunProcess(spec);
  CHECK_FALSE(r.started);
  CHECK(r.error == "cannot start 'kiln-no-such-program': No such file or directory");
  CHECK_FALSE(r.exit_code.has_value());
  CHECK_FALSE(r.signal.has_value());
  CHECK(t::ReadFile(spec.log_path) == "[kiln: " + r.error + "]\n");

  spec.argv = {"/nonexistent/kiln-prog"};
  r = t::RunProcess(spec);
  CHECK_FALSE(r.started);
  CHECK(r.error == "cannot start '/nonexistent/kiln-prog': No such file or directory");
  CHECK(t::ReadFile(spec.log_path) == "[kiln: " + r.error + "]\n");
}

TEST_CASE("a program without execute permission is a start failure") {
  t::TempDir dir;
  {
    std::ofstream script(dir / "script.sh");
    script << "#!/bin/sh\necho hi\n";
  }
  ::chmod((dir / "script.sh").c_str(), 0644);
  ProcessSpec spec;
  spec.env = {{"PATH", (dir.path()).string() + ":/usr/bin"}};
  spec.log_path = dir / "fail.log";
  spec.argv = {"script.sh"};
  ProcessResult r = t::RunProcess(spec);
  CHECK_FALSE(r.started);
  CHECK(r.error == "cannot start 'script.sh': Permission denied");

  spec.argv = {(dir / "script.sh").string()};
  r = t::RunProcess(spec);
  CHECK_FALSE(r.started);
  CHECK(r.error == "cannot start '" + spec.argv[0] + "': Permission denied");
  CHECK(t::ReadFile(spec.log_path) == "[kiln: " + r.error + "]\n");
}

TEST_CASE("a missing or non-folder working directory is a start failure") {
  t::TempDir dir;
  ProcessSpec spec = t::ShellSpec(dir, "true");
  spec.cwd = dir / "nope";
  ProcessResult r = t::RunProcess(spec);
  CHECK_FALSE(r.started);
  CHECK(r.error == "working directory '" + spec.cwd.string() + "' does not exist");
  CHECK(t::ReadFile(spec.log_path) == "[kiln: " + r.error + "]\n");

  { std::ofstream(dir / "file") << "x"; }
  spec.cwd = dir / "file";
  r = t::RunProcess(spec);
  CHECK_FALSE(r.started);
  CHECK(r.error == "working directory '" + spec.cwd.string() + "' is not a directory");
}

TEST_CASE("an unwritable log location is a start failure") {
  t::TempDir dir;
  { std::ofstream(dir / "file") << "x"; }
  ProcessSpec spec = t::ShellSpec(dir, "true");
  spec.log_path = dir / "file/sub/out.log";
  ProcessResult r = t::RunProcess(spec);
  CHECK_FALSE(r.started);
  CHECK(r.error == "cannot open log file '" + spec.log_path.string() + "': cannot create folder '" +
                       (dir / "file/sub").string() + "': Not a directory");
}

TEST_CASE("the program runs in the working directory and is found on the task's PATH") {
  t::TempDir dir;
  std::filesystem::create_directory(dir / "bin");
  {
    std::ofstream script(dir / "bin/kiln-hello");
    script << "#!/bin/sh\npwd\n";
  }
  ::chmod((dir / "bin/kiln-hello").c_str(), 0755);
  ProcessSpec spec;
  spec.argv = {"kiln-hello"};
  spec.env = {{"PATH", "bin:/usr/bin:/bin"}};  // relative entries count from the cwd
  spec.cwd = dir.path();
  spec.log_path = dir / "out.log";
  ProcessResult r = t::RunProcess(spec);
  CHECK(r.exit_code == 0);
  CHECK(t::ReadFile(spec.log_path) == dir.path().string() + "\n");
}

TEST_CASE("a process runs as the spec's user, without capabilities, in a folder of its own") {
  if (::geteuid() != 0) return;  // only root starts processes as another user
  t::TempDir dir;
  ::chmod(dir.path().c_str(), 0711);
  auto nobody = kiln::LookupIdentity("nobody");
  REQUIRE(nobody.ok());
  ProcessSpec spec = t::ShellSpec(
      dir,
      "id -u; id -G; grep -E '^Cap(Prm|Eff)' /proc/self/status; grep -E '^Sig(Blk|Ign)' "
      "/proc/self/status; readlink /proc/self/fd/0; [ \"$(cut -d' ' -f5 /proc/$$/stat)\" = $$ ] "
      "&& echo 'leads its group'; touch mine && echo wrote; "
      "touch ../theirs 2>/dev/null || echo 'parent refused'; ls .. >/dev/null 2>&1 || echo "
      "'listing refused'; cat " +
          (dir / "root-only").string() + " 2>/dev/null || echo 'root file refused'");
  { std::ofstream(dir / "root-only") << "secret"; }
  ::chmod((dir / "root-only").c_str(), 0600);
  const std::filesystem::path run_dir = dir / "runs/p/7";
  spec.create_dirs = {run_dir};
  spec.cwd = run_dir;
  spec.user = *nobody;
  ProcessResult r = t::RunProcess(spec);
  CHECK(r.exit_code == 0);
  CHECK(t::ReadFile(spec.log_path) ==
        "65534\n65534\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n/dev/null\nleads its group\n"
        "wrote\n"
        "parent refused\nlisting refused\nroot file refused\n");
  struct stat st;
  REQUIRE(::stat(run_dir.c_str(), &st) == 0);
  CHECK(st.st_uid == 65534);
  CHECK((st.st_mode & 07777) == 0700);
  REQUIRE(::stat((dir / "runs/p").c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  CHECK((st.st_mode & 07777) == 0711);
  // This thread is root again, with every id.
  uid_t ruid = 1, euid = 1, suid = 1;
  REQUIRE(::getresuid(&ruid, &euid, &suid) == 0);
  CHECK((ruid | euid | suid) == 0);

  SECTION("the PATH is searched as the user: a program only root may run is passed over") {
    std::filesystem::create_directories(dir / "private/bin");
    ::chmod((dir / "private").c_str(), 0700);
    { std::ofstream(dir / "private/bin/kiln-which") << "#!/bin/sh\necho private\n"; }
    ::chmod((dir / "private/bin/kiln-which").c_str(), 0755);
    std::filesystem::create_directories(dir / "public/bin");
    ::chmod((dir / "public").c_str(), 0755);
    { std::ofstream(dir / "public/bin/kiln-which") << "#!/bin/sh\necho public\n"; }
    ::chmod((dir / "public/bin/kiln-which").c_str(), 0755);
    spec.argv = {"kiln-which"};
    spec.env = {{"PATH", (dir / "private/bin").string() + ":" + (dir / "public/bin").string()}};
    r = t::RunProcess(spec);
    CHECK(r.exit_code == 0);
    CHECK(t::ReadFile(spec.log_path) == "public\n");
    // Only the private one: denied, as the user.
    spec.env = {{"PATH", (dir / "private/bin").string()}};
    r = t::RunProcess(spec);
    CHECK_FALSE(r.started);
    CHECK(r.error == "cannot start 'kiln-which': Permission denied (as user 'nobody')");
  }
  SECTION("a folder the user cannot enter is a start failure that names the user") {
    std::filesystem::create_directory(dir / "closed");
    ::chmod((dir / "closed").c_str(), 0700);
    spec.cwd = dir / "closed";
    r = t::RunProcess(spec);
    CHECK_FALSE(r.started);
    CHECK(r.error == "working directory '" + spec.cwd.string() +
                         "' is not accessible: Permission denied (as user 'nobody')");
  }
  SECTION("an existing run folder is taken over, a symbolic link is refused") {
    REQUIRE(::chown(run_dir.c_str(), 0, 0) == 0);
    ::chmod(run_dir.c_str(), 0755);
    r = t::RunProcess(spec);
    CHECK(r.exit_code == 0);
    REQUIRE(::stat(run_dir.c_str(), &st) == 0);
    CHECK(st.st_uid == 65534);
    CHECK((st.st_mode & 07777) == 0700);

    std::filesystem::create_directory(dir / "elsewhere");
    std::filesystem::create_directory_symlink(dir / "elsewhere", dir / "runs/p/8");
    spec.create_dirs = {dir / "runs/p/8"};
    spec.cwd = dir.path();
    r = t::RunProcess(spec);
    CHECK_FALSE(r.started);
    CHECK(r.error == "cannot create folder '" + (dir / "runs/p/8").string() + "': Not a directory");
    REQUIRE(::stat((dir / "elsewhere").c_str(), &st) == 0);
    CHECK(st.st_uid == 0);
  }
}

TEST_CASE("resource use: peak RSS and CPU time of the process") {
  t::TempDir dir;
  ProcessSpec spec;
  spec.argv = {"python3", "-c", "b = b'x' * (50 * 1024 * 1024)"};
  spec.env = t::kEnv;
  spec.log_path = dir / "rss.log";
  ProcessResult r = t::RunProcess(spec);
  CHECK(r.exit_code == 0);
  CHECK(r.max_rss_kb > 40000);

  spec.argv = {"python3", "-c",
               "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: "
               "pass"};
  r = t::RunProcess(spec);
  CHECK(r.exit_code == 0);
  CHECK(r.cpu >= 250ms);
  CHECK(r.cpu < 10s);
}

TEST_CASE("Terminate stops the process and reports killed") {
  t::TempDir dir;
  boost::asio::io_context io;
  ProcessManager manager(io);
  std::optional<ProcessResult> result;
  ProcessSpec spec = t::ShellSpec(dir, "sleep 30");
  spec.kill_grace = 5s;
  ProcessManager::Handle h = manager.Spawn(spec, [&](ProcessResult r) { result = std::move(r); });
  CHECK(manager.running() == 1);
  manager.Terminate(h + 1000);  // unknown: nothing happens
  manager.Terminate(h);
  manager.Terminate(h);  // twice: still one result
  t::RunUntil(io, [&] { return result.has_value(); });
  CHECK(result->killed);
  CHECK_FALSE(result->timed_out);
  CHECK(result->signal == SIGTERM);
  CHECK(manager.running() == 0);
  manager.Terminate(h);  // finished: nothing happens
}

TEST_CASE("TerminateAll stops every process, each on_exit comes exactly once") {
  t::TempDir dir;
  boost::asio::io_context io;
  ProcessManager manager(io);
  int calls = 0;
  int killed = 0;
  for (int i = 0; i < 3; ++i) {
    ProcessSpec spec = t::ShellSpec(dir, "sleep 30");
    spec.log_path = dir / ("log" + std::to_string(i));
    manager.Spawn(spec, [&](ProcessResult r) {
      ++calls;
      killed += r.killed ? 1 : 0;
    });
  }
  CHECK(manager.running() == 3);
  manager.TerminateAll();
  t::RunUntil(io, [&] { return calls == 3; });
  io.run();  // nothing left: returns at once, and no callback comes twice
  CHECK(calls == 3);
  CHECK(killed == 3);
}

TEST_CASE("destroying the manager kills its processes and drops their callbacks") {
  t::TempDir dir;
  boost::asio::io_context io;
  bool called = false;
  {
    ProcessManager manager(io);
    manager.Spawn(t::ShellSpec(dir, "sleep 30"), [&](ProcessResult) { called = true; });
    ProcessSpec failing = t::ShellSpec(dir, "true");
    failing.cwd = dir / "missing";
    manager.Spawn(failing, [&](ProcessResult) { called = true; });
  }
  io.run();
  CHECK_FALSE(called);
}

TEST_CASE("spawn cost", "[.][bench]") {
  t::TempDir dir;
  ::chmod(dir.path().c_str(), 0777);  // for the runs as nobody
  boost::asio::io_context io;
  ProcessManager manager(io);
  constexpr int kCount = 100;
  std::vector<kiln::Identity> users = {kiln::CurrentIdentity()};
  if (::geteuid() == 0) users.push_back(*kiln::LookupIdentity("nobody"));
  for (const kiln::Identity& user : users) {
    const std::string touch = "touch f" + std::to_string(user.uid);
    for (const std::vector<std::string>& argv :
         {std::vector<std::string>{"true"}, std::vector<std::string>{"sh", "-c", touch}}) {
      int done = 0;
      std::chrono::steady_clock::duration in_spawn{};
      auto begin = std::chrono::steady_clock::now();
      for (int i = 0; i < kCount; ++i) {
        ProcessSpec spec;
        spec.argv = argv;
        spec.env = t::kEnv;
        spec.cwd = dir.path();
        spec.log_path = dir / "bench.log";
        spec.user = user;
        auto before = std::chrono::steady_clock::now();
        manager.Spawn(spec, [&](ProcessResult r) { done += r.exit_code == 0 ? 1 : 0; });
        in_spawn += std::chrono::steady_clock::now() - before;
        t::RunUntil(io, [&] { return done == i + 1; });
      }
      using Ms = std::chrono::duration<double, std::milli>;
      WARN((user.switch_user ? "as " + user.name : std::string("as kiln's user"))
           << ", " << argv.back() << ": "
           << Ms(std::chrono::steady_clock::now() - begin).count() / kCount
           << " ms per task (spawn, wait, reap, log), " << Ms(in_spawn).count() / kCount
           << " ms of it inside Spawn()");
    }
  }
}
