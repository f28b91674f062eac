// The crash harness: real daemons killed with SIGKILL at chosen points (KILN_CRASH_AT), stopped
// with SIGTERM, frozen with SIGSTOP, and a database that goes away; then restarted. Every
// scenario checks, in SQL and in the process table, that each attempt has exactly one outcome,
// that no task ever had two attempts running at once, that every run ended, and that no process
// of a task (nor a supervisor) is left behind.
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "common/sha256.h"
#include "daemon.h"
#include "harness.h"

using nlohmann::json;
namespace fs = std::filesystem;
using namespace kiln::e2e;
using namespace std::chrono_literals;

namespace {

// `a` writes its pid to a.started, prints a line, waits for the file `go` of the test folder,
// prints another; `b` (after `a`) appends a line to b.count. Both in `dir`.
std::string TwoTasks(const std::string& name, const TempDir& dir, const std::string& b_keys = "") {
  const std::string d = dir.path().string();
  return "[pipeline]\nname = \"" + name + "\"\n[tasks.a]\ncommand = \"echo $$ > " + d +
         "/a.started; echo line 1; while [ ! -e " + d +
         "/go ]; do sleep 0.02; done; echo line 2\"\n[tasks.b]\nneeds = [\"a\"]\n" + b_keys +
         "command = \"echo b >> " + d + "/b.count\"\n";
}

void WaitStarted(const TempDir& dir) {
  // Whole: the shell creates the file before it writes the pid and its newline.
  WaitFor([&] { return ReadFile(dir / "a.started").ends_with("\n"); }, "task a to start");
}

// The first task of `run` has its start recorded. A task may start while its start commits: a
// daemon killed in that instant is the crash-point test's; the others kill it after.
void WaitStartRecorded(int64_t run, const std::string& task = "a") {
  WaitFor(
      [&] {
        return Sql("select state from task_instances where task_id = '" + task +
                   "' and run_id = " + std::to_string(run)) == "running";
      },
      "the start of " + task + " to be recorded");
}

int Lines(const fs::path& file) {
  if (!fs::exists(file)) return 0;
  std::string text = ReadFile(file);
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

// The invariants every scenario ends with, on the database at `url`.
void CheckInvariants(const std::string& url) {
  // Every run reached an end state, and so did every task of it.
  CHECK(SqlAt(url,
              "select count(*) from runs where state not in ('success', 'failed', "
              "'cancelled')") == "0");
  CHECK(SqlAt(url,
              "select count(*) from task_instances where state in ('pending', 'queued', "
              "'running', 'up_for_retry')") == "0");
  // Each attempt has exactly one outcome: its row ended once, and each task's attempts are
  // numbered 1..n with the task row at n.
  CHECK(SqlAt(url,
              "select count(*) from attempts where state = 'running' or ended_at is "
              "null") == "0");
  CHECK(SqlAt(url,
              "select count(*) from task_instances t where t.attempt <> (select count(*) "
              "from attempts a where a.run_id = t.run_id and a.task_id = t.task_id)") == "0");
  // No task ever had two attempts running at once.
  CHECK(SqlAt(url,
              "select count(*) from attempts a join attempts b on a.run_id = b.run_id and "
              "a.task_id = b.task_id and a.attempt < b.attempt where b.started_at < "
              "a.ended_at") == "0");
}

// No process of the test (tasks, supervisors, daemons) is left: each mentions its folder.
void NoProcessesLeft(const TempDir& dir) {
  WaitFor([&] { return ProcessesMentioning(dir.path().string()).empty(); },
          "every process of " + dir.path().string() + " to end");
}

DaemonOptions Leaving(const fs::path& pipelines, const std::string& lease = "30s") {
  DaemonOptions o(pipelines);
  o.on_stop = "leave";
  o.lease = lease;
  return o;
}

std::string Attempts(const std::string& url, int64_t run) {
  return SqlAt(url,
               "select string_agg(task_id || '#' || attempt || ':' || state, ',' order by "
               "task_id, attempt) from attempts where run_id = " +
                   std::to_string(run));
}

}  // namespace

TEST_CASE("a task that ends while no daemon runs is recorded by the next one, which goes on") {
  TempDir dir;
  const std::string name = Unique("gap");
  WriteFile(dir / "pipelines/p.toml", TwoTasks(name, dir));
  int64_t run = 0;
  {
    Daemon first(dir, Leaving(dir / "pipelines"));
    auto op = first.Client(kOperatorToken);
    run = Trigger(op, name);
    WaitStarted(dir);
    WaitStartRecorded(run);
    first.Signal(SIGKILL);
  }
  // The task goes on without a daemon; its supervisor records its end in the database.
  WriteFile(dir / "go", "");
  WaitFor(
      [&] {
        return Sql("select count(*) from attempts where outcome is not null and task_id = 'a'") ==
               "1";
      },
      "the supervisor to record the end of a");
  CHECK(Sql("select state from task_instances where task_id = 'a'") == "running");
  Daemon second(dir, Leaving(dir / "pipelines"));
  CHECK(WaitForRunEnd(second, run) == "success");
  CHECK(Attempts(DatabaseUrl(), run) == "a#1:success,b#1:success");
  CHECK(Lines(dir / "b.count") == 1);
  CHECK(ReadFile(second.data_dir() / ("logs/" + name + "/" + std::to_string(run) + "/a.1.log")) ==
        "line 1\nline 2\n");
  CHECK(second.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

TEST_CASE("a task's files collected while no daemon runs are recorded by the next one, once") {
  TempDir dir;
  const std::string name = Unique("collect");
  const std::string d = dir.path().string();
  WriteFile(dir / "pipelines/p.toml",
            "[pipeline]\nname = \"" + name + "\"\n[tasks.a]\ncommand = '''echo $$ > " + d +
                "/a.started; while [ ! -e " + d +
                "/go ]; do sleep 0.02; done; echo model > {{ run.dir }}/model.bin; "
                "echo '{\"loss\": 0.5}' > {{ run.dir }}/m.json'''\n"
                "outputs = [\"{{ run.dir }}/model.bin\"]\nmetrics = \"{{ run.dir }}/m.json\"\n");
  int64_t run = 0;
  {
    Daemon first(dir, Leaving(dir / "pipelines"));
    auto op = first.Client(kOperatorToken);
    run = Trigger(op, name);
    WaitStarted(dir);
    WaitStartRecorded(run);
    first.Signal(SIGKILL);
  }
  WriteFile(dir / "go", "");
  const std::string where = " where run_id = " + std::to_string(run);
  WaitFor(
      [&] {
        return Sql("select count(*) from attempts" + where + " and outcome is not null") == "1";
      },
      "the supervisor to record the end of a with its results");
  Daemon second(dir, Leaving(dir / "pipelines"));
  CHECK(WaitForRunEnd(second, run) == "success");
  CHECK(Attempts(DatabaseUrl(), run) == "a#1:success");
  CHECK(Sql("select results->'metrics'->>'loss' from attempts" + where) == "0.5");
  CHECK(Sql("select count(*) || ' ' || min(role) || ' ' || min(sha256) from artifacts" + where) ==
        "1 output " + kiln::Sha256Hex("model\n"));
  // The outcome keeps no second copy of the results.
  CHECK(Sql("select outcome ? 'results' from attempts" + where) == "f");
  CHECK(second.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

TEST_CASE("a task running across a restart is adopted, its end is recorded once, its log whole") {
  TempDir dir;
  const std::string name = Unique("adopt");
  WriteFile(dir / "pipelines/p.toml", TwoTasks(name, dir));
  int64_t run = 0;
  int pid = 0;
  {
    Daemon first(dir, Leaving(dir / "pipelines"));
    auto op = first.Client(kOperatorToken);
    run = Trigger(op, name);
    WaitStarted(dir);
    WaitStartRecorded(run);
    pid = std::stoi(ReadFile(dir / "a.started"));
    first.Signal(SIGKILL);
  }
  CHECK(ProcessAlive(pid));
  Daemon second(dir, Leaving(dir / "pipelines"));
  CHECK(Sql("select count(*) from attempts where task_id = 'a'") == "1");
  WriteFile(dir / "go", "");
  CHECK(WaitForRunEnd(second, run) == "success");
  CHECK(Attempts(DatabaseUrl(), run) == "a#1:success,b#1:success");
  CHECK(Sql("select exit_code from attempts where task_id = 'a'") == "0");
  CHECK(ReadFile(second.data_dir() / ("logs/" + name + "/" + std::to_string(run) + "/a.1.log")) ==
        "line 1\nline 2\n");
  CHECK(Lines(dir / "b.count") == 1);
  CHECK(second.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

TEST_CASE("a daemon killed between an end and its commit, or inside the commit, halves nothing") {
  // Commits of this run: 1 = the run starts with a; 2 = a ends and b starts.
  const std::string point = GENERATE(as<std::string>{}, "end.received", "commit.before:2",
                                     "commit.inside:2", "commit.after:2");
  INFO("crash at " << point);
  TempDir dir;
  const std::string name = Unique("halves");
  // b's start goes to the supervisor while it commits, unconfirmed. When the daemon dies, its
  // supervisor asks the database which unconfirmed starts were recorded: those go on, the
  // others are stopped and forgotten (and b may then run a second time).
  const std::string retry = "retries = 1\nretry_delay = \"0s\"\n";
  std::string pipeline = TwoTasks(name, dir, retry);
  pipeline.insert(pipeline.find("[tasks.a]\n") + 10, retry);
  WriteFile(dir / "pipelines/p.toml", pipeline);
  WriteFile(dir / "go", "");
  int64_t run = 0;
  {
    DaemonOptions o = Leaving(dir / "pipelines");
    o.env["KILN_CRASH_AT"] = point;
    Daemon first(dir, o);
    auto op = first.Client(kOperatorToken);
    run = Trigger(op, name);
    CHECK(first.Wait() == 128 + SIGKILL);
  }
  // Nothing of the interrupted commit is there, or all of it. b's start is in commit 2, and so
  // is its end when b ran and ended while commit 1 was still on its way (its transitions wait
  // for the commit in flight, then go out together): b is then success:1 after commit 2.
  const std::string of_run = " and run_id = " + std::to_string(run);
  const std::string b =
      Sql("select state || ':' || attempt from task_instances where task_id = 'b'" + of_run);
  const std::string b_events =
      Sql("select coalesce(string_agg(to_state, ',' order by id), '') from events where task_id = "
          "'b' and kind = 'task_state'" +
          of_run);
  INFO("b is " << b << ", its events " << b_events);
  CHECK((b == "pending:0" || b == "running:1" || b == "success:1"));
  if (b == "pending:0") CHECK(b_events == "");
  if (b == "running:1") CHECK(b_events == "running");
  if (b == "success:1") {
    CHECK(point == "commit.after:2");
    CHECK(b_events == "running,success");
  }
  Daemon second(dir, Leaving(dir / "pipelines"));
  CHECK(WaitForRunEnd(second, run) == "success");
  // Never committed (before, inside): the next daemon decides b's first attempt again.
  // Committed but never confirmed (after): the supervisor asks the database once the daemon is
  // gone, finds it recorded, and b's attempt goes on to be adopted. Nothing is lost either way.
  // With end.received, a's end came while its own start may still have been on its way to the
  // server: the supervisor's question waits for the dead daemon's session to end, so a start
  // the server had not read yet is recorded before the answer (or was never sent: a runs again
  // as attempt 1).
  // After the commit, b's frame may not have left the daemon yet (a write before it in
  // progress): then its supervisor never had it, and the next daemon starts it as the same
  // attempt (never launched, not a retry).
  CHECK(Attempts(DatabaseUrl(), run) == "a#1:success,b#1:success");
  const int b_runs = Lines(dir / "b.count");
  if (point == "commit.before:2" || point == "commit.inside:2") {
    // At least once, and at most once more than recorded: the unconfirmed start ran, or was
    // stopped before its shell wrote, when the daemon died.
    CHECK(b_runs >= 1);
    CHECK(b_runs <= 2);
  } else {
    CHECK(b_runs == 1);
  }
  CHECK(second.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

namespace {

// The server processes of the sessions on which the daemon of `data_dir` commits (they hold
// its supervisor's committer lock, shared: store/database.h), and that lock's key; none until
// then.
struct Committers {
  std::vector<int> pids;
  std::string lock;
};
Committers CommitterSessions(const fs::path& data_dir) {
  const std::string rows = Sql(
      "select l.pid || ' ' || l.objid from pg_locks l join daemons d on d.kind = 'supervisor' "
      "and l.objid = hashtext(d.name)::oid where l.locktype = 'advisory' and l.classid = "
      "1802071150 and l.objsubid = 2 and l.mode = 'ShareLock' and l.granted and d.name like '%" +
      data_dir.string() + "/%'");
  Committers out;
  std::istringstream lines(rows);
  std::string pid;
  while (lines >> pid >> out.lock) out.pids.push_back(std::stoi(pid));
  return out;
}

// Bytes the server process `pid` has not read from its client yet (its socket's Recv-Q).
long long UnreadBy(const std::string& pid) {
  const Output ss = Exec({"/usr/bin/ss", "-xpn"});
  std::istringstream lines(ss.out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find("pid=" + pid + ",") == std::string::npos) continue;
    std::istringstream fields(line);
    std::string netid, state;
    long long recv_q = 0;
    if (fields >> netid >> state >> recv_q && recv_q > 0) return recv_q;
  }
  return 0;
}

}  // namespace

TEST_CASE("a daemon killed while the server had its start's commit unread: nothing is lost") {
  // The start of a goes to the supervisor while its commit is on its way. The server process
  // of the daemon's commits is stopped, so the commit waits, unread, in its socket; the daemon
  // dies. The supervisor asks which starts are recorded and waits for that session to be gone
  // (the committer lock): the server reads the commit, commits it, sees the daemon gone. The
  // start is recorded, so a goes on (no retries: a lost attempt would fail the run).
  TempDir dir;
  const std::string name = Unique("unread");
  WriteFile(dir / "pipelines/p.toml", TwoTasks(name, dir));
  // The pipeline's session and the one of the update-by-update fallback both hold the lock.
  Committers committers;
  struct Resume {
    std::vector<int>* pids;
    ~Resume() {
      for (int pid : *pids) ::kill(pid, SIGCONT);
    }
  } resume{&committers.pids};
  int64_t run = 0;
  // The supervisor waits a tenth of its lease for the daemon's sessions: 30 s here, for the test
  // to resume them in while it waits.
  const std::string lease = "300s";
  {
    Daemon first(dir, Leaving(dir / "pipelines", lease));
    WaitFor([&] { return CommitterSessions(first.data_dir()).pids.size() == 2; },
            "the daemon's committing sessions");
    committers = CommitterSessions(first.data_dir());
    for (int pid : committers.pids) REQUIRE(::kill(pid, SIGSTOP) == 0);
    auto op = first.Client(kOperatorToken);
    run = Trigger(op, name);
    WaitStarted(dir);
    WaitFor(
        [&] {
          return std::any_of(committers.pids.begin(), committers.pids.end(),
                             [](int pid) { return UnreadBy(std::to_string(pid)) > 0; });
        },
        "the commit of a's start to reach the server");
    first.Signal(SIGKILL);
    CHECK(first.Wait() == 128 + SIGKILL);
  }
  CHECK(Sql("select attempt from task_instances where task_id = 'a' and run_id = " +
            std::to_string(run)) == "0");
  WaitFor(
      [&] {
        return Sql("select count(*) from pg_locks where locktype = 'advisory' and classid = "
                   "1802071150 and objsubid = 2 and objid = " +
                   committers.lock + " and not granted") == "1";
      },
      "the supervisor to wait for the daemon's sessions");
  // Resumed while the question waits (a tenth of the lease, then it reads without the lock).
  for (int pid : committers.pids) REQUIRE(::kill(pid, SIGCONT) == 0);
  committers.pids.clear();
  WaitStartRecorded(run);
  const int a_pid = std::stoi(ReadFile(dir / "a.started"));
  WriteFile(dir / "go", "");
  Daemon second(dir, Leaving(dir / "pipelines", lease));
  CHECK(WaitForRunEnd(second, run) == "success");
  CHECK(Attempts(DatabaseUrl(), run) == "a#1:success,b#1:success");
  // Confirmed by the answer, not stopped and run again: a lost attempt would have failed.
  CHECK(std::stoi(ReadFile(dir / "a.started")) == a_pid);
  CHECK(second.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

TEST_CASE("a start committed and never sent to the supervisor starts as the same attempt") {
  // A task that reads the result cache first is launched after its start commits (never
  // early): killed right after that commit, the daemon never sent it. Its supervisor has no
  // record of it, so the next daemon starts it again as attempt 1, not as a retry (there is
  // none: a lost attempt would fail the run).
  TempDir dir;
  const std::string name = Unique("unsent");
  const std::string d = dir.path().string();
  WriteFile(dir / "pipelines/p.toml",
            "[pipeline]\nname = \"" + name + "\"\n[tasks.a]\ncommand = \"echo $$ >> " + d +
                "/a.runs; echo x > {{ run.dir }}/out.txt\"\noutputs = [\"{{ run.dir }}/out.txt\"]\n"
                "cache = true\n");
  int64_t run = 0;
  {
    DaemonOptions o = Leaving(dir / "pipelines");
    o.env["KILN_CRASH_AT"] = "commit.after:1";
    Daemon first(dir, o);
    auto op = first.Client(kOperatorToken);
    run = Trigger(op, name);
    CHECK(first.Wait() == 128 + SIGKILL);
  }
  const std::string of_run = " and run_id = " + std::to_string(run);
  CHECK(Sql("select state || ':' || attempt from task_instances where task_id = 'a'" + of_run) ==
        "running:1");
  CHECK(Lines(dir / "a.runs") == 0);
  Daemon second(dir, Leaving(dir / "pipelines"));
  CHECK(WaitForRunEnd(second, run) == "success");
  CHECK(Attempts(DatabaseUrl(), run) == "a#1:success");
  CHECK(Lines(dir / "a.runs") == 1);
  auto metrics = second.Client(kViewerToken).Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("kiln_attempts_relaunched_total 1\n") != std::string::npos);
  CHECK(metrics->body.find("kiln_attempts_lost_total 0\n") != std::string::npos);
  CHECK(second.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

TEST_CASE("a daemon killed while a schedule fires creates each logical date once") {
  TempDir dir;
  const std::string name = Unique("fires");
  WriteFile(dir / "pipelines/p.toml",
            Pipeline(name, "schedule = \"* * * * *\"\ncatchup = \"all\"\nmax_active_runs = 3"));
  // Each phase starts 5 s into a minute of the schedule clock: none straddles a fire.
  const int64_t base = AlignedOffset(std::chrono::minutes(1), std::chrono::seconds(5));
  auto start = [&](int64_t offset, const std::string& crash) {
    DaemonOptions o = Leaving(dir / "pipelines");
    o.extra_config = "[scheduler]\nclock_offset = \"" + OffsetText(offset) + "\"\n";
    if (!crash.empty()) o.env["KILN_CRASH_AT"] = crash;
    return std::make_unique<Daemon>(dir, o);
  };
  {
    auto daemon = start(base, "");
    WaitFor(
        [&] {
          return Sql("select count(*) from pipelines where fire_cursor is not null and "
                     "name = '" +
                     name + "'") == "1";
        },
        "the first check of the schedule");
    CHECK(daemon->Stop() == 0);
  }
  const std::string cursor =
      Sql("select floor(extract(epoch from fire_cursor))::int8 from pipelines where name = '" +
          name + "'");
  {
    // Ten minutes later: the catch-up's runs are written in one transaction, which dies.
    auto daemon = start(base + 600, "fire.inside");
    CHECK(daemon->Wait() == 128 + SIGKILL);
  }
  CHECK(Sql("select count(*) from runs where pipeline = '" + name + "'") == "0");
  CHECK(Sql("select floor(extract(epoch from fire_cursor))::int8 from pipelines where name = '" +
            name + "'") == cursor);
  auto daemon = start(base + 600, "");
  WaitFor(
      [&] {
        return Sql("select count(*) from runs where pipeline = '" + name +
                   "' and state = 'success'") != "0" &&
               Sql("select count(*) from runs where pipeline = '" + name +
                   "' and state not in ('success', 'failed', 'cancelled')") == "0";
      },
      "the catch-up runs to end");
  CHECK(daemon->Stop() == 0);
  // Every minute after the first cursor, each once, none missing.
  const std::string dates =
      Sql("select count(*), count(distinct logical_date), (extract(epoch from max(logical_date)) - "
          "extract(epoch from min(logical_date)))::int8 / 60 + 1 from runs where pipeline = '" +
          name + "'");
  const auto bar = dates.find('|');
  const std::string count = dates.substr(0, bar);
  CHECK(std::stoi(count) >= 10);
  CHECK(dates == count + "|" + count + "|" + count);
  // The first is the first minute after the cursor.
  CHECK(Sql("select (extract(epoch from min(logical_date)))::int8 from runs where pipeline = '" +
            name + "'") == std::to_string((std::stoll(cursor) / 60 + 1) * 60));
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

TEST_CASE("a scheduled pipeline with the default overlap keeps firing after a SIGKILL") {
  TempDir dir;
  const std::string name = Unique("beat");
  const std::string d = dir.path().string();
  // Each run waits for `go`; the default overlap skips fires while one runs.
  WriteFile(dir / "pipelines/p.toml", "[pipeline]\nname = \"" + name +
                                          "\"\nschedule = \"every 1s\"\n[tasks.t]\ncommand = "
                                          "\"echo $$ > " +
                                          d + "/a.started; while [ ! -e " + d +
                                          "/go ]; do sleep 0.02; done\"\n");
  int64_t orphan = 0;
  {
    Daemon first(dir, Leaving(dir / "pipelines"));
    WaitStarted(dir);
    orphan = std::stoll(Sql("select min(id) from runs where pipeline = '" + name + "'"));
    WaitStartRecorded(orphan, "t");
    first.Signal(SIGKILL);
  }
  DaemonOptions o(dir / "pipelines");  // cancels what runs when it stops
  Daemon second(dir, o);
  // The orphan is resumed, not skipped over: later fires wait for it.
  WriteFile(dir / "go", "");
  CHECK(WaitForRunEnd(second, orphan) == "success");
  WaitFor(
      [&] {
        return Sql("select count(*) from runs where pipeline = '" + name + "' and id > " +
                   std::to_string(orphan) + " and state = 'success'") != "0";
      },
      "a run fired after the restart to succeed");
  CHECK(Sql("select count(*) - count(distinct logical_date) from runs where pipeline = '" + name +
            "'") == "0");
  CHECK(second.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

TEST_CASE("SIGTERM leaves a long task running, after the restart its run succeeds") {
  TempDir dir;
  const std::string name = Unique("upgrade");
  WriteFile(dir / "pipelines/p.toml", TwoTasks(name, dir));
  int64_t run = 0;
  int pid = 0;
  {
    Daemon first(dir, Leaving(dir / "pipelines"));
    auto op = first.Client(kOperatorToken);
    run = Trigger(op, name);
    WaitStarted(dir);
    pid = std::stoi(ReadFile(dir / "a.started"));
    CHECK(first.Stop() == 0);
  }
  CHECK(ProcessAlive(pid));
  CHECK(Sql("select state from runs where id = " + std::to_string(run)) == "running");
  Daemon second(dir, Leaving(dir / "pipelines"));
  WriteFile(dir / "go", "");
  CHECK(WaitForRunEnd(second, run) == "success");
  // Not interrupted: one attempt, exit 0, the whole log.
  CHECK(Attempts(DatabaseUrl(), run) == "a#1:success,b#1:success");
  CHECK(Sql("select exit_code from attempts where task_id = 'a'") == "0");
  CHECK(ReadFile(second.data_dir() / ("logs/" + name + "/" + std::to_string(run) + "/a.1.log")) ==
        "line 1\nline 2\n");
  CHECK(second.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

TEST_CASE("with on_stop = cancel, SIGTERM cancels the run and stops its processes") {
  TempDir dir;
  const std::string name = Unique("cancel-on-stop");
  WriteFile(dir / "pipelines/p.toml", TwoTasks(name, dir));
  DaemonOptions o(dir / "pipelines");
  o.on_stop = "cancel";
  Daemon daemon(dir, o);
  auto op = daemon.Client(kOperatorToken);
  int64_t run = Trigger(op, name);
  WaitStarted(dir);
  const int pid = std::stoi(ReadFile(dir / "a.started"));
  CHECK(daemon.Stop() == 0);
  CHECK_FALSE(ProcessAlive(pid));
  CHECK(Sql("select state from runs where id = " + std::to_string(run)) == "cancelled");
  CHECK(Attempts(DatabaseUrl(), run) == "a#1:cancelled");
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

TEST_CASE("two daemons on one database: the other takes a killed daemon's runs over") {
  TempDir dir, a_dir, b_dir;
  const std::string name = Unique("takeover");
  WriteFile(dir / "pipelines/p.toml", TwoTasks(name, dir));
  auto a = std::make_unique<Daemon>(a_dir, Leaving(dir / "pipelines", "2s"));
  Daemon b(b_dir, Leaving(dir / "pipelines", "2s"));
  auto op = a->Client(kOperatorToken);
  const int64_t run = Trigger(op, name);
  WaitStarted(dir);
  WaitStartRecorded(run);
  const std::string a_name = Sql("select lease_owner from runs where id = " + std::to_string(run));
  a->Signal(SIGKILL);
  // After A's lease expires, B drives the run; A's supervisor still runs the task.
  WaitFor(
      [&] {
        return Sql("select lease_owner <> '" + a_name +
                   "' from runs where id = " + std::to_string(run)) == "t";
      },
      "B to take the run over");
  CHECK(Sql("select count(*) from events where kind = 'run_taken_over' and detail->>'from' = '" +
            a_name + "'") == "1");
  WriteFile(dir / "go", "");
  CHECK(WaitForRunEnd(b, run) == "success");
  CHECK(Attempts(DatabaseUrl(), run) == "a#1:success,b#1:success");
  CHECK(Sql("select lease_owner from attempts where task_id = 'a'") == a_name + "/supervisor");
  CHECK(Sql("select lease_owner <> '" + a_name +
            "/supervisor' from attempts where task_id = 'b'") == "t");
  CHECK(Lines(dir / "b.count") == 1);
  CHECK(b.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
  NoProcessesLeft(a_dir);
  NoProcessesLeft(b_dir);
}

TEST_CASE("a daemon frozen past its lease is fenced when it wakes and launches nothing") {
  TempDir dir, a_dir, b_dir;
  const std::string name = Unique("frozen");
  WriteFile(dir / "pipelines/p.toml", TwoTasks(name, dir));
  Daemon a(a_dir, Leaving(dir / "pipelines", "2s"));
  Daemon b(b_dir, Leaving(dir / "pipelines", "2s"));
  auto op = a.Client(kOperatorToken);
  const int64_t run = Trigger(op, name);
  WaitStarted(dir);
  const std::string a_name = Sql("select lease_owner from runs where id = " + std::to_string(run));
  a.Signal(SIGSTOP);
  WaitFor(
      [&] {
        return Sql("select lease_owner <> '" + a_name +
                   "' from runs where id = " + std::to_string(run)) == "t";
      },
      "B to take the run over");
  // The task ends while A is frozen: its supervisor gets no acknowledgement from A, writes the
  // end to the database, and B goes on with it.
  WriteFile(dir / "go", "");
  CHECK(WaitForRunEnd(b, run) == "success");
  a.Signal(SIGCONT);
  // A wakes: either its lease renewal tells it first that its run was taken (it lets the run go),
  // or the end it was sent while frozen comes first and its commit (the end, b's start) is
  // fenced. Either way it launches nothing.
  auto a_metric = [&](const std::string& name) {
    std::string text = a.Client(kViewerToken).Get("/metrics")->body;
    auto at = text.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stoi(text.substr(at + name.size() + 2));
  };
  WaitFor(
      [&] {
        return a_metric("kiln_updates_refused_total") > 0 ||
               a_metric("kiln_runs_released_total") > 0;
      },
      "A to learn that it lost the run");
  CHECK(Attempts(DatabaseUrl(), run) == "a#1:success,b#1:success");
  CHECK(Sql("select lease_owner <> '" + a_name +
            "/supervisor' from attempts where task_id = 'b'") == "t");
  CHECK(Lines(dir / "b.count") == 1);
  CHECK(a.Stop() == 0);
  CHECK(b.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
  NoProcessesLeft(a_dir);
  NoProcessesLeft(b_dir);
}

TEST_CASE("PostgreSQL away for 10 s in the middle of a run: the run finishes, /readyz tells") {
  TempDir dir;
  // A server of its own: the test's fixture server is shared with other tests.
  char pg_tmpl[] = "/tmp/kpg-XXXXXX";
  REQUIRE(mkdtemp(pg_tmpl) != nullptr);
  const std::string pg = pg_tmpl;
  const std::string script = (SourceDir() / "tests/support/pg_cluster.sh").string();
  REQUIRE(Exec({script, "start", pg}).code == 0);
  struct Cleanup {
    std::string script, pg;
    ~Cleanup() { Exec({script, "stop", pg}); }
  } cleanup{script, pg};
  const std::string url = "postgresql:///kiln_test?host=" + pg + "&user=kiln";
  const std::string name = Unique("dbaway");
  WriteFile(dir / "pipelines/p.toml", TwoTasks(name, dir));
  DaemonOptions o = Leaving(dir / "pipelines");
  o.database_url = url;
  Daemon daemon(dir, o);
  auto op = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(op, name);
  WaitStarted(dir);
  CHECK(op.Get("/readyz")->status == 200);
  REQUIRE(Exec({script, "halt", pg}).code == 0);
  const auto halted = std::chrono::steady_clock::now();
  // Once the daemon's lease keeper has seen the database go, starts wait for their commit.
  WaitFor(
      [&] {
        auto r = op.Get("/readyz");
        return r->status == 503 && r->body.find("lease cannot be renewed") != std::string::npos;
      },
      "/readyz to say not ready");
  // The task ends while the database is away: nothing can be recorded, nothing new starts.
  WriteFile(dir / "go", "");
  std::this_thread::sleep_until(halted + 10s);  // the outage itself, not a wait for a race
  CHECK(Lines(dir / "b.count") == 0);
  REQUIRE(Exec({script, "resume", pg}).code == 0);
  CHECK(WaitForRunEnd(daemon, run) == "success");
  WaitFor([&] { return op.Get("/readyz")->status == 200; }, "/readyz to say ready again");
  CHECK(Attempts(url, run) == "a#1:success,b#1:success");
  CHECK(Lines(dir / "b.count") == 1);
  CHECK(daemon.Stop() == 0);
  CheckInvariants(url);
  NoProcessesLeft(dir);
}

TEST_CASE("a reason that is not UTF-8 is stored safely, the rest of its batch commits") {
  TempDir dir;
  const std::string name = Unique("bytes");
  // The pipeline's folder has a byte that is not UTF-8 in its name; a task whose working folder
  // is missing fails with a reason that names that path.
  const fs::path folder = dir / "pipe\xff";
  WriteFile(folder / "p.toml", "[pipeline]\nname = \"" + name +
                                   "\"\n[tasks.bad]\nworkdir = \"missing\"\ncommand = \"true\"\n"
                                   "[tasks.good]\ncommand = \"true\"\n");
  DaemonOptions o(folder);
  Daemon daemon(dir, o);
  auto op = daemon.Client(kOperatorToken);
  const int64_t run = Trigger(op, name);
  CHECK(WaitForRunEnd(daemon, run) == "failed");
  CHECK(Attempts(DatabaseUrl(), run) == "bad#1:failed,good#1:success");
  CHECK(Sql("select reason from attempts where task_id = 'bad'") ==
        "could not start: working directory '" + dir.path().string() +
            "/pipe\xef\xbf\xbd/missing' does not exist");
  // The scheduler carries on.
  const int64_t next = Trigger(op, name);
  CHECK(WaitForRunEnd(daemon, next) == "failed");
  CHECK(daemon.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

TEST_CASE("retention removes old runs with their folders and events, nothing of an active run") {
  TempDir dir;
  const std::string quick = Unique("quick"), slow = Unique("slow");
  WriteFile(dir / "pipelines/quick.toml", Pipeline(quick, "", "echo hi"));
  WriteFile(dir / "pipelines/slow.toml", TwoTasks(slow, dir));
  DaemonOptions o(dir / "pipelines");
  o.extra_config = "[retention]\nruns = \"1s\"\nevents = \"1s\"\nmin_runs = 1\ninterval = \"1s\"\n";
  Daemon daemon(dir, o);
  auto op = daemon.Client(kOperatorToken);
  const int64_t active = Trigger(op, slow);
  WaitStarted(dir);
  const fs::path logs = daemon.data_dir() / "logs";
  const fs::path runs = daemon.data_dir() / "runs";
  std::vector<int64_t> done;
  for (int i = 0; i < 3; ++i) {
    done.push_back(Trigger(op, quick));
    CHECK(WaitForRunEnd(daemon, done.back()) == "success");
    // The newest run of its pipeline (min_runs = 1) stays, however old: its log is there.
    if (i == 0) CHECK(fs::exists(logs / quick / std::to_string(done[0])));
  }
  // The newest run of each pipeline stays; the older ended ones go with their folders.
  WaitFor(
      [&] {
        return Sql("select string_agg(id::text, ',' order by id) from runs where pipeline = '" +
                   quick + "'") == std::to_string(done[2]);
      },
      "the old runs to be deleted");
  for (int i = 0; i < 2; ++i) {
    CHECK_FALSE(fs::exists(logs / quick / std::to_string(done[i])));
    CHECK_FALSE(fs::exists(runs / quick / std::to_string(done[i])));
  }
  CHECK(fs::exists(logs / quick / std::to_string(done[2])));
  WaitFor(
      [&] {
        return Sql("select count(*) from events where run_id = " + std::to_string(done[0])) == "0";
      },
      "the old events to be deleted");
  // The active run keeps everything, however old its rows.
  const std::string events = "select count(*) from events where run_id = " + std::to_string(active);
  CHECK(Sql(events) != "0");
  CHECK(fs::exists(logs / slow / std::to_string(active) / "a.1.log"));
  WriteFile(dir / "go", "");
  CHECK(WaitForRunEnd(daemon, active) == "success");
  CHECK(Attempts(DatabaseUrl(), active) == "a#1:success,b#1:success");
  CHECK(daemon.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
}

TEST_CASE("a cancel sent to another daemon reaches the run's owner, a mark is refused clearly") {
  TempDir dir, a_dir, b_dir;
  const std::string name = Unique("remote");
  WriteFile(dir / "pipelines/p.toml", TwoTasks(name, dir));
  Daemon a(a_dir, Leaving(dir / "pipelines"));
  Daemon b(b_dir, Leaving(dir / "pipelines"));
  auto on_a = a.Client(kOperatorToken);
  const int64_t run = Trigger(on_a, name);
  WaitStarted(dir);
  const int pid = std::stoi(ReadFile(dir / "a.started"));
  const std::string a_name = Sql("select lease_owner from runs where id = " + std::to_string(run));
  auto admin_b = b.Client(kAdminToken);
  const std::string path = "/api/v1/runs/" + std::to_string(run);
  auto mark = admin_b.Post((path + "/tasks/a/mark").c_str(), R"({"state": "success"})", kJson);
  CHECK(mark->status == 409);
  CHECK(Body(mark)["error"]["message"] ==
        "run " + std::to_string(run) + " is driven by the daemon " + a_name +
            "; send the mark to that daemon, or cancel the run from any");
  auto cancel = admin_b.Post((path + "/cancel").c_str(), "", kJson);
  CHECK(cancel->status == 202);
  // A, told through the database, stops the task and ends the run.
  CHECK(WaitForRunEnd(a, run) == "cancelled");
  CHECK_FALSE(ProcessAlive(pid));
  CHECK(Attempts(DatabaseUrl(), run) == "a#1:cancelled");
  CHECK(Sql("select actor from events where kind = 'cancel_requested' and run_id = " +
            std::to_string(run)) == "admin");
  CHECK(a.Stop() == 0);
  CHECK(b.Stop() == 0);
  CheckInvariants(DatabaseUrl());
  NoProcessesLeft(dir);
  NoProcessesLeft(a_dir);
  NoProcessesLeft(b_dir);
}
