#include "executor/process.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "common/secret_mask.h"
#include "executor/cgroup.h"
#include "executor/guard.h"
#include "executor/os.h"

namespace kiln::executor {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

using Descriptor = asio::posix::stream_descriptor;

// Everything about one spawned process. Shared between the manager's table and the pending
// asynchronous operations, so that a handler that runs after the entry left the table (or after
// the manager is gone) still points at valid memory; `detached` tells it to do nothing.
struct Child {
  Child(asio::io_context& io, ProcessManager::Handle h, ProcessSpec s,
        std::function<void(ProcessResult)> cb)
      : handle(h),
        spec(std::move(s)),
        on_exit(std::move(cb)),
        masker(spec.mask),
        exit_watch(io),
        output(io),
        timeout_timer(io),
        kill_timer(io),
        output_timer(io) {}

  ProcessManager::Handle handle;
  ProcessSpec spec;
  std::function<void(ProcessResult)> on_exit;
  SecretMasker masker;  // of spec.mask: what reaches the log and result.error
  ProcessResult result;
  pid_t pid = -1;           // also the process-group id
  std::string cgroup;       // holds every process it starts (executor/cgroup.h); "" without cgroups
  os::UniqueFd log;         // opened at the first byte to write (OpenLog)
  bool log_failed = false;  // it could not be opened or written: output is dropped
  uint64_t logged = 0;      // task output bytes written to the log, masked (no marker)
  Descriptor exit_watch;    // pidfd of the main process
  Descriptor output;        // read end of the stdout/stderr pipe
  os::UniqueFd report;      // spawned as another user: what failed before its exec (os.h)
  std::shared_ptr<void> child_memory;  // and what it ran on until its exec: freed once reaped
  asio::steady_timer timeout_timer;
  asio::steady_timer kill_timer;    // SIGKILL after the grace period
  asio::steady_timer output_timer;  // gives up on a pipe held open from outside the group
  std::map<pid_t, std::unique_ptr<Descriptor>> member_watches;  // pidfds of leftover processes
  std::array<char, 64 * 1024> buffer;
  bool reaped = false;       // the main process was reaped
  bool group_done = false;   // no live process of the group remains
  bool output_done = false;  // the pipe reached end of file (or we stopped waiting for it)
  bool terminating = false;  // SIGTERM was sent to the group
  bool finished = false;     // on_exit was posted
  bool detached = false;     // the manager is gone
};

using ChildPtr = std::shared_ptr<Child>;

}  // namespace

struct ProcessManager::Impl {
  explicit Impl(asio::io_context& context) : io(context) {}
  ~Impl();

  Handle Spawn(ProcessSpec spec, std::function<void(ProcessResult)> on_exit);
  Status Launch(Child& c);
  void FailStart(const ChildPtr& c, const std::string& error);
  void WatchExit(const ChildPtr& c);
  void OnMainExit(const ChildPtr& c);
  void ReadOutput(const ChildPtr& c);
  void Consume(Child& c, size_t n);
  void WriteCapped(Child& c, std::string_view data);
  void WriteMarker(Child& c, std::string_view text);
  bool OpenLog(Child& c);
  void WriteMasked(Child& c, std::string_view data);
  void Terminate(const ChildPtr& c, bool by_request);
  void CheckGroup(const ChildPtr& c);
  bool WatchMember(const ChildPtr& c, pid_t member);
  void GroupDone(const ChildPtr& c);
  void MaybeFinish(const ChildPtr& c);
  void Deliver(std::function<void(ProcessResult)> on_exit, ProcessResult result);

  asio::io_context& io;
  std::unique_ptr<Cgroups> cgroups;  // null where the kernel offers none to kiln
  // Processes killed with their cgroup (outside the group of any child): reaped once they have
  // exited and are ours (re-parented to us, a subreaper), dropped once gone. Looked at when one
  // of them exits (its pidfd) and whenever a child's group is done.
  std::vector<pid_t> orphans;
  std::map<pid_t, std::unique_ptr<Descriptor>> orphan_watches;
  void KillCgroup(const std::string& cgroup);
  void SignalCgroup(const Child& c, int signal);
  void TrackOrphans(const std::vector<pid_t>& pids, pid_t main);
  void ReapOrphans();
  std::unordered_map<Handle, ChildPtr> children;
  Handle next_handle = 1;
  // Posted on_exit calls check this, so none runs after the manager is destroyed.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
};

namespace {

// Never freed, and reachable to the end (not a leak to a checker): what a killed child that was
// not reaped yet may still run on.
void KeepForever(std::shared_ptr<void> memory) {
  static std::mutex mu;
  static auto* kept = new std::vector<std::shared_ptr<void>>;
  std::lock_guard lock(mu);
  kept->push_back(std::move(memory));
}

}  // namespace

ProcessManager::Impl::~Impl() {
  *alive = false;
  for (auto& [handle, c] : children) {
    c->detached = true;
    if (!c->group_done) {
      ::kill(-c->pid, SIGKILL);
      guard::Gone(c->pid);  // killed; not reaped, so its number is not reused meanwhile
    }
    if (cgroups) KillCgroup(c->cgroup);
    if (!c->reaped && !os::TryReap(c->pid) && c->child_memory) {
      // Killed but maybe not gone yet: what it may still run on must outlive it (child_as.h).
      KeepForever(std::move(c->child_memory));
    }
    error_code ignored;
    c->exit_watch.close(ignored);
    c->output.close(ignored);
    c->timeout_timer.cancel();
    c->kill_timer.cancel();
    c->output_timer.cancel();
    c->member_watches.clear();
  }
}

ProcessManager::Handle ProcessManager::Impl::Spawn(ProcessSpec spec,
                                                   std::function<void(ProcessResult)> on_exit) {
  KILN_CHECK(on_exit != nullptr);
  auto c = std::make_shared<Child>(io, next_handle++, std::move(spec), std::move(on_exit));
  c->result.started_at = NowUtc();
  if (Status launched = Launch(*c); !launched.ok()) {
    FailStart(c, launched.message());
    return c->handle;
  }
  c->result.started = true;
  // The child makes itself its group's leader first thing; done here too, so that the group
  // exists before it is reported (a child that already ran its program refuses: EACCES).
  ::setpgid(c->pid, c->pid);
  guard::Spawned(c->pid);
  children.emplace(c->handle, c);
  WatchExit(c);
  ReadOutput(c);
  if (c->spec.timeout > Duration(0)) {
    c->timeout_timer.expires_after(c->spec.timeout);
    c->timeout_timer.async_wait([this, c](const error_code& ec) {
      if (ec || c->detached || c->reaped || c->terminating) return;
      c->result.timed_out = true;
      Terminate(c, false);
    });
  }
  return c->handle;
}

// Opens the log first so that every later failure can be written into it.
Status ProcessManager::Impl::Launch(Child& c) {
  const ProcessSpec& spec = c.spec;
  if (!spec.log_path.empty()) {
    Result<os::UniqueFd> log = os::PrepareLogFile(spec.log_path);
    if (!log.ok()) return log.status();
    c.log = std::move(log).value();
  }
  if (spec.argv.empty()) {
    return Status::Error("cannot start a process without a command (argv is empty)");
  }
  for (const std::filesystem::path& dir : spec.create_dirs) {
    Status made =
        spec.user.switch_user ? os::MakePrivateDir(dir, spec.user) : os::MakeDirs(dir, 0750);
    if (!made.ok()) return made;
  }
  // Whether it exists is checked here; whether the task's user may enter it and run the program,
  // by the child as that user (SpawnProcess).
  if (!spec.cwd.empty()) {
    if (Status cwd = os::CheckWorkingDirectory(spec.cwd); !cwd.ok()) return cwd;
  }
  // As another user the child searches the PATH itself, with that user's rights.
  Result<std::string> program = spec.user.switch_user && !spec.argv[0].empty()
                                    ? Result<std::string>(spec.argv[0])
                                    : os::ResolveProgram(spec.argv[0], spec.env, spec.cwd);
  if (!program.ok()) return program.status();
  Result<os::Spawned> spawned = Status::Error("not spawned");
  const auto spawn = [&] {
    spawned = os::SpawnProcess(*program, spec.argv, spec.env, spec.cwd, spec.user);
  };
  if (cgroups) {
    c.cgroup = cgroups->Make();
    cgroups->SpawnInside(c.cgroup, spawn);
  } else {
    spawn();
  }
  if (!spawned.ok()) {
    if (cgroups) KillCgroup(c.cgroup);
    return spawned.status();
  }
  c.pid = spawned->pid;
  error_code ec;
  // Ownership passes to Asio only when assign() succeeds.
  c.exit_watch.assign(spawned->pidfd.get(), ec);
  if (!ec) {
    spawned->pidfd.release();
    c.output.assign(spawned->output.get(), ec);
    if (!ec) spawned->output.release();
  }
  c.report = std::move(spawned->report);
  c.child_memory = std::move(spawned->child_memory);
  if (ec) {
    // Without both descriptors we could neither reap nor drain it; better not to run it at all.
    // The child itself too: it may not lead its group yet (setpgid is its first step).
    ::kill(-c.pid, SIGKILL);
    ::kill(c.pid, SIGKILL);
    if (cgroups) KillCgroup(c.cgroup);
    int status = 0;
    while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
    }
    return Status::Error("cannot start '" + spec.argv[0] + "': " + ec.message());
  }
  return Status::Ok();
}

void ProcessManager::Impl::FailStart(const ChildPtr& c, const std::string& error) {
  c->result.started = false;
  c->result.error = c->masker.MaskAll(error);
  c->result.ended_at = NowUtc();
  if (c->log.valid() || OpenLog(*c))
    os::WriteAll(c->log.get(), "[kiln: " + c->result.error + "]\n");
  c->log.reset();
  c->finished = true;
  Deliver(std::move(c->on_exit), std::move(c->result));
}

void ProcessManager::Impl::WatchExit(const ChildPtr& c) {
  c->exit_watch.async_wait(Descriptor::wait_read, [this, c](const error_code& ec) {
    if (c->detached || ec == asio::error::operation_aborted) return;
    OnMainExit(c);
  });
}

void ProcessManager::Impl::OnMainExit(const ChildPtr& c) {
  int status = 0;
  struct rusage usage {};
  pid_t r;
  while ((r = ::wait4(c->pid, &status, WNOHANG, &usage)) < 0 && errno == EINTR) {
  }
  if (r == 0) {  // the pidfd woke us before the process became waitable; wait again
    WatchExit(c);
    return;
  }
  c->reaped = true;
  c->result.ended_at = NowUtc();
  if (r < 0) {
    c->result.error = "process " + std::to_string(c->pid) +
                      " was reaped by someone else; its exit status is unknown";
  } else if (WIFEXITED(status)) {
    c->result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    c->result.signal = WTERMSIG(status);
  }
  auto to_ms = [](const timeval& tv) {
    return Duration(int64_t{tv.tv_sec} * 1000 + tv.tv_usec / 1000);
  };
  c->result.cpu = to_ms(usage.ru_utime) + to_ms(usage.ru_stime);
  c->result.max_rss_kb = usage.ru_maxrss;
  if (c->report.valid()) {
    // Written before it exited, so it is there now if it never exec'd.
    if (auto failure =
            os::StartFailure(c->report.get(), c->spec.argv[0], c->spec.cwd, c->spec.user)) {
      c->result.started = false;
      c->result.error = *failure;
      c->result.exit_code.reset();
      WriteMarker(*c, "[kiln: " + *failure + "]\n");
    }
    c->report.reset();
  }
  c->child_memory.reset();  // reaped: it runs no more
  error_code ignored;
  c->exit_watch.close(ignored);
  c->timeout_timer.cancel();
  CheckGroup(c);
}

void ProcessManager::Impl::ReadOutput(const ChildPtr& c) {
  c->output.async_read_some(asio::buffer(c->buffer), [this, c](const error_code& ec, size_t n) {
    if (c->detached || c->finished) return;
    if (n > 0) Consume(*c, n);
    if (ec) {  // eof, or an error that would repeat forever
      c->output_done = true;
      c->output_timer.cancel();
      MaybeFinish(c);
      return;
    }
    ReadOutput(c);
  });
}

// Keeps draining past the cap: a task must never block on a full pipe because of its log.
void ProcessManager::Impl::Consume(Child& c, size_t n) {
  c.result.log_bytes += n;
  if (c.result.log_truncated) return;
  const std::string_view raw(c.buffer.data(), n);
  if (c.masker.empty()) {
    WriteCapped(c, raw);
  } else {
    WriteCapped(c, c.masker.Feed(raw));
  }
}

// Masked output up to the cap; past it, one marker line and nothing more. What the masker holds
// back where the log is cut is dropped: it may be the start of a secret.
void ProcessManager::Impl::WriteCapped(Child& c, std::string_view data) {
  if (c.result.log_truncated) return;
  const uint64_t cap = c.spec.log_cap_bytes;
  const uint64_t room = cap > c.logged ? cap - c.logged : 0;
  const size_t keep = static_cast<size_t>(std::min<uint64_t>(room, data.size()));
  if (keep > 0) {
    WriteMasked(c, data.substr(0, keep));
    c.logged += keep;
  }
  if (keep < data.size()) {
    c.result.log_truncated = true;
    c.masker.Drop();
    WriteMasked(c, "\n[kiln: log truncated at " + std::to_string(cap) +
                       " bytes; further output discarded]\n");
  }
}

// kiln's own line: after what the masker held back, masked as a whole.
void ProcessManager::Impl::WriteMarker(Child& c, std::string_view text) {
  WriteMasked(c, c.masker.Flush() + c.masker.MaskAll(text));
}

// Creates the log at its first byte (os::PrepareLogFile). False when it cannot be: the error is
// the attempt's, and output is drained and dropped from here on.
bool ProcessManager::Impl::OpenLog(Child& c) {
  if (c.log_failed || c.spec.log_path.empty()) return false;
  c.log = os::UniqueFd(os::CreateLogFile(c.spec.log_path));
  if (c.log.valid()) return true;
  c.log_failed = true;
  if (c.result.error.empty()) {
    c.result.error =
        "cannot open log file '" + c.spec.log_path.string() + "': " + os::ErrnoText(errno);
  }
  return false;
}

void ProcessManager::Impl::WriteMasked(Child& c, std::string_view data) {
  if (data.empty() || (!c.log.valid() && !OpenLog(c))) return;
  if (int err = os::WriteAll(c.log.get(), data); err != 0) {
    // The task keeps running; its output is drained and dropped from here on.
    c.result.error =
        "cannot write log file '" + c.spec.log_path.string() + "': " + os::ErrnoText(err);
    c.log.reset();
    c.log_failed = true;
  }
}

void ProcessManager::Impl::Terminate(const ChildPtr& c, bool by_request) {
  if (c->terminating || c->group_done) return;
  c->terminating = true;
  if (by_request) c->result.killed = true;
  ::kill(-c->pid, SIGTERM);
  // A stopped process would only see SIGTERM once continued.
  ::kill(-c->pid, SIGCONT);
  if (cgroups) {  // and those that left the group
    SignalCgroup(*c, SIGTERM);
    SignalCgroup(*c, SIGCONT);
  }
  c->kill_timer.expires_after(c->spec.kill_grace);
  c->kill_timer.async_wait([this, c](const error_code& ec) {
    if (ec || c->detached || c->group_done) return;
    ::kill(-c->pid, SIGKILL);
    if (cgroups) SignalCgroup(*c, SIGKILL);
  });
}

// After the main process is reaped, its pid stays reserved as long as any member of the group is
// alive or a zombie, so signalling -pid cannot hit an unrelated group.
void ProcessManager::Impl::CheckGroup(const ChildPtr& c) {
  if (c->group_done) return;
  if (::kill(-c->pid, 0) != 0 && errno == ESRCH) {
    GroupDone(c);
    return;
  }
  Terminate(c, false);
  bool live = false;
  for (const os::GroupMember& member : os::ListGroupMembers(c->pid)) {
    if (member.zombie) {
      os::TryReap(member.pid);  // an orphan re-parented to us (we are a subreaper)
    } else if (c->member_watches.contains(member.pid) || WatchMember(c, member.pid)) {
      live = true;
    }
  }
  if (!live) GroupDone(c);
}

bool ProcessManager::Impl::WatchMember(const ChildPtr& c, pid_t member) {
  int fd = os::OpenPidfd(member);
  if (fd < 0) return false;  // gone since /proc was read
  // The pid could have been reused between reading /proc and pidfd_open.
  if (::getpgid(member) != c->pid) {
    ::close(fd);
    return false;
  }
  auto watch = std::make_unique<Descriptor>(io);
  error_code ec;
  watch->assign(fd, ec);
  if (ec) {
    ::close(fd);
    return false;
  }
  watch->async_wait(Descriptor::wait_read, [this, c, member](const error_code& wait_ec) {
    if (c->detached || c->group_done || wait_ec == asio::error::operation_aborted) return;
    c->member_watches.erase(member);
    os::TryReap(member);
    CheckGroup(c);
  });
  c->member_watches.emplace(member, std::move(watch));
  return true;
}

void ProcessManager::Impl::GroupDone(const ChildPtr& c) {
  c->group_done = true;
  guard::Gone(c->pid);
  // The attempt is over: whatever it started outside its group (setsid, double forks) goes too.
  if (cgroups) KillCgroup(c->cgroup);
  c->kill_timer.cancel();
  c->member_watches.clear();
  if (!c->output_done) {
    // Something outside the group (e.g. a process that called setsid) still holds the pipe.
    c->output_timer.expires_after(c->spec.kill_grace);
    c->output_timer.async_wait([this, c](const error_code& ec) {
      if (ec || c->detached || c->finished) return;
      c->output_done = true;
      MaybeFinish(c);
    });
  }
  MaybeFinish(c);
}

void ProcessManager::Impl::KillCgroup(const std::string& cgroup) {
  TrackOrphans(cgroups->KillAndRemove(cgroup), -1);
}

void ProcessManager::Impl::SignalCgroup(const Child& c, int signal) {
  TrackOrphans(cgroups->Signal(c.cgroup, signal), c.pid);
}

void ProcessManager::Impl::TrackOrphans(const std::vector<pid_t>& pids, pid_t main) {
  for (pid_t pid : pids) {
    // The main process is reaped through its own pidfd, with its exit status.
    if (pid == main || orphan_watches.contains(pid)) continue;
    orphans.push_back(pid);
    int fd = os::OpenPidfd(pid);
    if (fd < 0) continue;  // already gone
    auto watch = std::make_unique<Descriptor>(io);
    error_code ec;
    watch->assign(fd, ec);
    if (ec) {
      ::close(fd);
      continue;
    }
    watch->async_wait(Descriptor::wait_read, [this, pid, alive = alive](const error_code& e) {
      if (e || !*alive) return;
      orphan_watches.erase(pid);
      ReapOrphans();
    });
    orphan_watches[pid] = std::move(watch);
  }
  ReapOrphans();
}

void ProcessManager::Impl::ReapOrphans() {
  std::erase_if(orphans, [](pid_t pid) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return true;
    // Not (yet) our child: its parent reaps it, or it is re-parented to us when the parent dies.
    return r < 0 && errno == ECHILD && ::kill(pid, 0) != 0 && errno == ESRCH;
  });
}

void ProcessManager::Impl::MaybeFinish(const ChildPtr& child) {
  if (child->finished || !child->reaped || !child->group_done || !child->output_done) return;
  ChildPtr c = child;  // `child` may be the table's own reference, erased below
  c->finished = true;
  c->output_timer.cancel();
  error_code ignored;
  c->output.close(ignored);
  WriteCapped(*c, c->masker.Flush());
  c->result.error = c->masker.MaskAll(c->result.error);
  c->log.reset();
  children.erase(c->handle);
  Deliver(std::move(c->on_exit), std::move(c->result));
}

void ProcessManager::Impl::Deliver(std::function<void(ProcessResult)> on_exit,
                                   ProcessResult result) {
  asio::post(io, [alive = alive, on_exit = std::move(on_exit), result = std::move(result)]() {
    if (*alive) on_exit(result);
  });
}

ProcessManager::ProcessManager(asio::io_context& io) : impl_(std::make_unique<Impl>(io)) {
  impl_->cgroups = Cgroups::Open(std::to_string(::getpid()));
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    log::Warn(
        "executor: cannot become a child subreaper; orphaned task processes will be reaped "
        "by init instead");
  }
}

ProcessManager::~ProcessManager() = default;

ProcessManager::Handle ProcessManager::Spawn(ProcessSpec spec,
                                             std::function<void(ProcessResult)> on_exit) {
  return impl_->Spawn(std::move(spec), std::move(on_exit));
}

void ProcessManager::Terminate(Handle handle) {
  auto it = impl_->children.find(handle);
  if (it == impl_->children.end() || it->second->reaped) return;
  impl_->Terminate(it->second, true);
}

void ProcessManager::TerminateAll() {
  for (auto& [handle, c] : impl_->children) {
    if (!c->reaped) impl_->Terminate(c, true);
  }
}

void ProcessManager::KillNow(Handle handle) {
  auto it = impl_->children.find(handle);
  if (it == impl_->children.end() || it->second->group_done) return;
  Child& c = *it->second;
  c.result.killed = true;
  c.terminating = true;
  ::kill(-c.pid, SIGKILL);
  if (impl_->cgroups) impl_->SignalCgroup(c, SIGKILL);
}

int ProcessManager::pid(Handle handle) const {
  auto it = impl_->children.find(handle);
  return it == impl_->children.end() ? -1 : it->second->pid;
}

size_t ProcessManager::running() const { return impl_->children.size(); }

}  // namespace kiln::executor
