#include "executor/supervisor.h"

#include "executor/supervisor_impl.h"

namespace kiln::executor {

fs::path SocketPath(const fs::path& dir) { return dir / "supervisor.sock"; }

std::string StopText(const std::string& cause) {
  if (cause == "cancel") return "the run is being cancelled";
  if (cause == "superseded") return "its run no longer has this attempt running";
  if (cause == "stop") return "the daemon that drives its run asked for it to stop";
  if (cause == "orphaned") {
    return "the daemon that sent it went away before its start was recorded";
  }
  if (cause == "unconfirmed") {
    return "its start was not recorded in time (the daemon that sent it did not confirm it)";
  }
  if (cause == "fenced") {
    return "its supervisor could not renew its lease in time (is the database reachable?)";
  }
  return "its supervisor was stopped";
}

Status Supervisor::Impl::Start() {
  std::error_code ec;
  if (Status s = os::MakeDirs(options.dir / "attempts", 0700); !s.ok()) return s;
  ::chmod(options.dir.c_str(), 0700);
  const fs::path lock_path = options.dir / "supervisor.lock";
  lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    return Status::Error("cannot open '" + lock_path.string() + "': " + os::ErrnoText(errno));
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    return Status::Error(ErrorCode::kConflict,
                         "another supervisor already runs for " + options.dir.string());
  }
  // The database must know this supervisor before any daemon records an attempt under it.
  auto renewed = ledger.Renew({});
  if (!renewed.ok()) return renewed.status();
  renewed_at = std::chrono::steady_clock::now();
  processes = std::make_unique<ProcessManager>(io);
  if (Status s = Recover(); !s.ok()) return s;
  if (Status s = RecordRecovered(); !s.ok()) return s;
  const fs::path socket_path = SocketPath(options.dir);
  if (socket_path.string().size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::Error("the supervisor's socket path '" + socket_path.string() +
                         "' is too long for a Unix socket; use a shorter data folder");
  }
  ::unlink(socket_path.c_str());  // a stale one: the lock says no supervisor uses it
  boost::system::error_code bec;
  acceptor = std::make_unique<local::acceptor>(io);
  acceptor->open(local(), bec);
  if (!bec) acceptor->bind(local::endpoint(socket_path.string()), bec);
  if (!bec) ::chmod(socket_path.c_str(), 0600);
  if (!bec) acceptor->listen(asio::socket_base::max_listen_connections, bec);
  if (bec) {
    return Status::Error("cannot listen on '" + socket_path.string() + "': " + bec.message());
  }
  ledger_thread = std::thread([this] { LedgerLoop(); });
  Accept();
  ArmFence();
  idle_timer.expires_after(options.first_daemon_grace);
  idle_timer.async_wait([this](const boost::system::error_code& e) {
    if (!e && !had_daemon) {
      had_daemon = true;  // from now on idle means idle
      MaybeIdle();
    }
  });
  signals.async_wait([this](const boost::system::error_code& e, int) {
    if (e) return;
    log::Info("supervisor: stopping: every attempt is stopped");
    stopping = true;
    for (auto& [key, a] : attempts) {
      if (!a.running) continue;
      a.stop_cause = "stopped";
      processes->Terminate(a.handle);
    }
    MaybeIdle();
  });
  (void)ec;
  return Status::Ok();
}

// Records left by a supervisor that died: ends are kept to be reported; attempts without an end
// are stopped (their whole group, if the same process still runs) and reported lost.
Status Supervisor::Impl::Recover() {
  journal = std::make_unique<AttemptJournal>(options.dir / "attempts");
  auto found = journal->Open();
  if (!found.ok()) return found.status();
  for (wire::Ended& end : *found) {
    Attempt a;
    a.running = false;
    const AttemptKey key = end.key;
    a.end = std::move(end);
    attempts.emplace(key, std::move(a));
  }
  for (auto& [key, a] : attempts) Queue(key);
  return Status::Ok();
}

// What the supervisor that died left is written to the database before any daemon can connect.
// Some of it may be starts that were never confirmed: a daemon that decides such an attempt
// again must not find this report written after its own start (ends are conditioned on the
// attempt and on this supervisor's name, which a new start of the same attempt shares).
Status Supervisor::Impl::RecordRecovered() {
  std::vector<wire::Ended> ends;
  {
    std::lock_guard lock(mu);
    ends.swap(to_record);
  }
  if (ends.empty()) return Status::Ok();
  if (Status s = ledger.Record(ends); !s.ok()) {
    return Status::Error(s.code(),
                         "recording the " + std::to_string(ends.size()) +
                             " attempt ends left by the supervisor that died: " + s.message());
  }
  for (const wire::Ended& e : ends) Forget(e.key);
  return Status::Ok();
}

void Supervisor::Impl::Accept() {
  auto c = std::make_shared<Conn>(io);
  acceptor->async_accept(c->socket, [this, c](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || exiting) return;
    if (!ec) {
      ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(c->socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
          cred.uid != ::geteuid()) {
        log::Warn("supervisor: refused a connection from another user");
        Close(c);
      } else {
        Read(c);
      }
    }
    Accept();
  });
}

void Supervisor::Impl::Read(const std::shared_ptr<Conn>& c) {
  c->socket.async_read_some(
      asio::buffer(c->buffer), [this, c](const boost::system::error_code& ec, size_t n) {
        if (c->closed) return;
        if (ec) {
          Close(c);
          return;
        }
        c->in.append(c->buffer.data(), n);
        bool error = false;
        for (const std::string& body : wire::TakeFrames(c->in, &error)) {
          Handle(c, body);
          if (c->closed) return;
        }
        if (error) {
          log::Warn("supervisor: a daemon sent a broken frame; connection closed");
          Close(c);
          return;
        }
        Read(c);
      });
}

void Supervisor::Impl::Handle(const std::shared_ptr<Conn>& c, const std::string& body) {
  wire::Reader r(body);
  const auto type = static_cast<wire::Type>(r.U8());
  if (!c->hello) {
    auto hello = type == wire::Type::kHello ? wire::DecodeHello(r) : std::nullopt;
    if (!hello) {
      Close(c);
      return;
    }
    if (hello->first != wire::kProtocol) {
      Send(c, wire::EncodeRefused("this supervisor speaks protocol " +
                                  std::to_string(wire::kProtocol) + ", not " +
                                  std::to_string(hello->first)));
      Close(c);
      return;
    }
    if (conn) {
      Send(c, wire::EncodeRefused(std::string(wire::kBusyRefusal)));
      Close(c);
      return;
    }
    log::Info("supervisor: daemon " + hello->second + " connected");
    OnHello(c);
    return;
  }
  switch (type) {
    case wire::Type::kStart:
      if (auto launch = wire::DecodeLaunch(r)) {
        StartAttempt(std::move(*launch));
        return;
      }
      break;
    case wire::Type::kKill:
      if (auto key = wire::DecodeKey(r)) {
        if (auto it = attempts.find(*key); it != attempts.end() && it->second.running) {
          processes->Terminate(it->second.handle);
        }
        return;
      }
      break;
    case wire::Type::kAck:
      if (auto keys = wire::DecodeKeys(r)) {
        for (const AttemptKey& key : *keys) Forget(key);
        return;
      }
      break;
    case wire::Type::kConfirm:
      if (auto keys = wire::DecodeKeys(r)) {
        for (const AttemptKey& key : *keys) Confirm(key);
        return;
      }
      break;
    default:
      break;
  }
  log::Warn("supervisor: a daemon sent a message it cannot read; connection closed");
  Close(c);
}

void Supervisor::Impl::OnHello(const std::shared_ptr<Conn>& c) {
  c->hello = true;
  conn = c;
  had_daemon = true;
  idle_timer.cancel();
  // The starts the last daemon left unconfirmed are being resolved: this daemon may decide the
  // same attempts again, so it hears from this supervisor once they are settled (OnResolved).
  if (!resolving) Welcome(c);
}

void Supervisor::Impl::Welcome(const std::shared_ptr<Conn>& c) {
  c->welcomed = true;
  wire::Welcome welcome;
  welcome.supervisor = options.name;
  for (const auto& [key, a] : attempts) {
    if (a.running) {
      welcome.running.push_back(key);
    } else if (a.end) {
      welcome.ended.push_back(*a.end);
    }
  }
  Send(c, wire::EncodeWelcome(welcome));
  for (auto& [key, a] : attempts) {
    if (!a.running && a.end) {
      a.ack_timer = std::make_unique<asio::steady_timer>(io, options.ack_timeout);
      a.ack_timer->async_wait([this, key = key](const boost::system::error_code& e) {
        if (!e) Queue(key);
      });
    }
  }
}

void Supervisor::Impl::Send(const std::shared_ptr<Conn>& c, std::string frame) {
  if (c->closed) return;
  c->out.push_back(std::move(frame));
  Flush(c);
}

void Supervisor::Impl::Flush(const std::shared_ptr<Conn>& c) {
  if (c->writing || c->out.empty() || c->closed) return;
  c->writing = true;
  asio::async_write(c->socket, asio::buffer(c->out.front()),
                    [this, c](const boost::system::error_code& ec, size_t) {
                      c->writing = false;
                      if (c->closed) return;
                      if (ec) {
                        Close(c);
                        return;
                      }
                      c->out.pop_front();
                      Flush(c);
                    });
}

void Supervisor::Impl::Close(const std::shared_ptr<Conn>& c) {
  if (c->closed) return;
  c->closed = true;
  boost::system::error_code ignored;
  c->socket.close(ignored);
  if (conn != c) return;
  conn.reset();
  log::Info("supervisor: the daemon disconnected");
  Resolve();
  // Ends it did not acknowledge go to the database.
  std::vector<AttemptKey> ended;
  for (auto& [key, a] : attempts) {
    if (!a.running) ended.push_back(key);
  }
  for (const AttemptKey& key : ended) Queue(key);
  MaybeIdle();
}

void Supervisor::Impl::StartAttempt(wire::Launch l) {
  if (stopping) return;
  if (auto it = attempts.find(l.key); it != attempts.end()) {
    if (!it->second.unconfirmed) return;  // a start sent twice
    // An earlier start of it that was never recorded (refused, its run let go and decided again
    // since): that one is over, or killed and forgotten now; this one runs.
    Attempt& old = it->second;
    if (old.running) {
      processes->KillNow(old.handle);
      old.confirm_timer.reset();
      old.ack_timer.reset();
      dying.emplace(old.serial, std::move(old));
    }
    attempts.erase(it);
    journal->Forget(l.key);
  }
  ProcessSpec spec;
  spec.argv = std::move(l.argv);
  spec.env = std::move(l.env);
  spec.cwd = l.cwd;
  spec.log_path = l.log_path;
  spec.log_cap_bytes = l.log_cap_bytes > 0 ? l.log_cap_bytes : kDefaultLogCapBytes;
  for (const auto& d : l.create_dirs) spec.create_dirs.emplace_back(d);
  spec.timeout = Duration(l.timeout_ms);
  spec.kill_grace = Duration(l.kill_grace_ms);
  spec.user = l.user;
  spec.mask = std::move(l.mask);
  const AttemptKey key = l.key;
  const uint64_t serial = next_serial++;
  Attempt& a = attempts[key];
  a.serial = serial;
  a.unconfirmed = !l.confirmed;
  if (a.unconfirmed) AwaitConfirmation(key, serial, /*checked=*/false);
  a.collect = CollectJob{std::move(l.collect_argv), spec.cwd,        spec.log_path,
                         std::move(l.user),         spec.kill_grace, std::move(l.collect_also_on)};
  // Recorded before the spawn too: a supervisor killed between the spawn and the record below
  // leaves this attempt reported lost by the next one, never unknown (a daemon starts an
  // attempt its supervisor has no record of again: AdoptRequest::at_start).
  journal->Started(key, 0);
  a.handle = processes->Spawn(
      std::move(spec), [this, key, serial](ProcessResult result) { OnExit(key, serial, result); });
  WriteStartRecord(key, a.handle);
  // Past the fence's deadline (the lease not renewed meanwhile), its timer has already killed
  // what ran then and is armed again only by a renewal: this one is killed now, as they were.
  if (std::chrono::steady_clock::now() >= renewed_at + options.lease * 2 / 3) {
    log::Error("supervisor: killing attempt " + key.ToString() + ": " + StopText("fenced"));
    a.stop_cause = "fenced";
    processes->KillNow(a.handle);
  }
  UpdateSnapshot();
}

// The process a supervisor that starts after this one dies must stop.
void Supervisor::Impl::WriteStartRecord(const AttemptKey& key, ProcessManager::Handle handle) {
  const int pid = processes->pid(handle);
  if (pid > 0) journal->Started(key, pid);
}

void Supervisor::Impl::OnExit(const AttemptKey& key, uint64_t serial, const ProcessResult& result) {
  if (dying.erase(serial) != 0) {
    MaybeIdle();
    return;
  }
  auto it = attempts.find(key);
  if (it == attempts.end() || it->second.serial != serial) return;
  Attempt& a = it->second;
  AttemptOutcome outcome = ToAttemptOutcome(result);
  if (ShouldCollect(a.collect, outcome) && (!a.stop_cause.empty() || stopping)) {
    // Told to stop as it ended: its files are not vouched for. A kind's "no" stays a skip,
    // without its results.
    if (!BestEffort(a.collect, outcome)) {
      outcome.collect_failed = true;
      outcome.killed = true;
      outcome.error = "stopped before its inputs, outputs and metrics were collected";
    }
  } else if (ShouldCollect(a.collect, outcome)) {
    // Still running for everyone: a kill or a fence stops the collector; a supervisor that dies
    // meanwhile leaves it lost (retried), like a task.
    a.collecting = true;
    a.handle = Collect(*processes, a.collect, std::move(outcome),
                       [this, key, serial](AttemptOutcome collected) {
                         Ended(key, serial, std::move(collected));
                       });
    WriteStartRecord(key, a.handle);
    return;
  }
  Ended(key, serial, std::move(outcome));
}

void Supervisor::Impl::Ended(const AttemptKey& key, uint64_t serial, AttemptOutcome outcome) {
  if (dying.erase(serial) != 0) {
    MaybeIdle();
    return;
  }
  auto it = attempts.find(key);
  if (it == attempts.end() || it->second.serial != serial) return;
  Attempt& a = it->second;
  a.confirm_timer.reset();
  if (!a.stop_cause.empty() && outcome.killed) {
    outcome.stop_cause = a.stop_cause;
    outcome.error = StopText(a.stop_cause);
  }
  a.running = false;
  a.collecting = false;
  a.end = wire::Ended{key, outcome};
  // Sent first: the record is for a supervisor that starts after this one dies, and a daemon
  // that gets the end before the record exists loses nothing by it.
  Deliver(key);
  auto kept = attempts.find(key);
  if (kept == attempts.end() || kept->second.serial != serial) return;  // dropped
  journal->Ended(*kept->second.end);
  UpdateSnapshot();
}

void Supervisor::Impl::Deliver(const AttemptKey& key) {
  Attempt& a = attempts.at(key);
  // A daemon not welcomed yet hears of it in its welcome.
  if (!conn || !conn->welcomed) {
    Queue(key);
    return;
  }
  Send(conn, wire::EncodeEnded(*a.end));
  a.ack_timer = std::make_unique<asio::steady_timer>(io, options.ack_timeout);
  a.ack_timer->async_wait([this, key](const boost::system::error_code& e) {
    if (!e) Queue(key);  // the daemon is slow to commit it: the database gets it now
  });
}

void Supervisor::Impl::Queue(const AttemptKey& key) {
  auto it = attempts.find(key);
  if (it == attempts.end() || it->second.queued || !it->second.end) return;
  if (it->second.unconfirmed) {
    // Never to the database: its start may not be recorded, and a later start of the same
    // attempt must not find this end there. It waits for a confirmation (from its daemon, from
    // a lease renewal, or from the resolution when its daemon went away).
    if (!conn && !resolving) Drop(key);
    return;
  }
  it->second.queued = true;
  {
    std::lock_guard lock(mu);
    to_record.push_back(*it->second.end);
  }
  cv.notify_one();
}

void Supervisor::Impl::Forget(const AttemptKey& key) {
  auto it = attempts.find(key);
  if (it == attempts.end() || it->second.running) return;
  journal->Forget(key);
  attempts.erase(it);
  MaybeIdle();
}

void Supervisor::Impl::UpdateSnapshot() {
  std::vector<AttemptKey> running;
  std::set<AttemptKey> unconfirmed;
  // Unconfirmed ones too, ended or not: a renewal that finds one recorded under this supervisor
  // confirms it (its daemon may be frozen with the confirmation unsent).
  for (const auto& [key, a] : attempts) {
    if (a.running || a.unconfirmed) running.push_back(key);
    if (a.unconfirmed) unconfirmed.insert(key);
  }
  std::lock_guard lock(mu);
  running_snapshot = std::move(running);
  unconfirmed_snapshot = std::move(unconfirmed);
}

void Supervisor::Impl::OnRenewed(SteadyTime sent, const std::set<AttemptKey>& unconfirmed,
                                 std::vector<Ledger::Stop> stops) {
  renewed_at = std::max(renewed_at, sent);
  ArmFence();
  // An attempt unconfirmed when the renewal was sent that the database has running under this
  // supervisor (not superseded) is recorded: confirmed.
  std::set<AttemptKey> superseded;
  for (const Ledger::Stop& stop : stops) {
    if (stop.cause == "superseded") superseded.insert(stop.key);
  }
  for (const AttemptKey& key : unconfirmed) {
    if (superseded.count(key) == 0) Confirm(key);
  }
  for (const Ledger::Stop& stop : stops) {
    auto it = attempts.find(stop.key);
    if (it == attempts.end() || !it->second.running || !it->second.stop_cause.empty()) continue;
    // Not recorded when the renewal read the rows (it may be since): its own timer stops it.
    if (unconfirmed.count(stop.key) != 0) continue;
    log::Info("supervisor: stopping attempt " + stop.key.ToString() + ": " + StopText(stop.cause));
    it->second.stop_cause = stop.cause;
    processes->Terminate(it->second.handle);
  }
}

// Kills every attempt before the lease could expire without having been renewed: after that,
// another daemon may declare them lost and start them again.
void Supervisor::Impl::ArmFence() {
  const SteadyTime deadline = renewed_at + options.lease * 2 / 3;
  fence_timer.expires_at(deadline);
  fence_timer.async_wait([this, deadline](const boost::system::error_code& e) {
    if (e || renewed_at + options.lease * 2 / 3 > deadline) return;
    for (auto& [key, a] : attempts) {
      if (!a.running) continue;
      if (a.stop_cause.empty()) {
        log::Error("supervisor: killing attempt " + key.ToString() + ": " + StopText("fenced"));
      }
      a.stop_cause = "fenced";
      processes->KillNow(a.handle);
    }
  });
}

void Supervisor::Impl::MaybeIdle() {
  if (exiting || !had_daemon || !attempts.empty() || !dying.empty() || (conn && !stopping)) return;
  Exit();
}

void Supervisor::Impl::Exit() {
  exiting = true;
  log::Info("supervisor: nothing left to supervise; exiting");
  boost::system::error_code ignored;
  if (acceptor) acceptor->close(ignored);
  ::unlink(SocketPath(options.dir).c_str());
  if (conn) Close(conn);
  fence_timer.cancel();
  idle_timer.cancel();
  signals.cancel();
  {
    std::lock_guard lock(mu);
    ledger_stop = true;
  }
  cv.notify_one();
}

void Supervisor::Impl::LedgerLoop() {
  auto next_renew = std::chrono::steady_clock::now() + options.lease / 3;
  auto next_record = std::chrono::steady_clock::now();
  std::unique_lock lock(mu);
  while (true) {
    if (std::exchange(renew_now, false)) next_renew = std::chrono::steady_clock::now();
    const auto now = std::chrono::steady_clock::now();
    const bool record_due = !to_record.empty() && now >= next_record;
    if (ledger_stop && to_record.empty()) break;
    if (!to_resolve.empty()) {
      std::vector<AttemptKey> keys = std::exchange(to_resolve, {});
      lock.unlock();
      auto recorded = ledger.StartsRecorded(keys);
      // Once more on failure (a connection gone stale is made again): the alternative is to
      // stop starts that may well be recorded.
      if (!recorded.ok()) recorded = ledger.StartsRecorded(keys);
      asio::post(io, [this, recorded = std::move(recorded)] { OnResolved(recorded); });
      lock.lock();
      continue;
    }
    if (!record_due && now < next_renew) {
      auto until = next_renew;
      if (!to_record.empty()) until = std::min(until, next_record);
      cv.wait_until(lock, until);
      continue;
    }
    std::vector<wire::Ended> records;
    if (record_due) records.swap(to_record);
    const bool renew = now >= next_renew;
    std::vector<AttemptKey> running = running_snapshot;
    std::set<AttemptKey> unconfirmed = unconfirmed_snapshot;
    lock.unlock();
    if (!records.empty()) {
      Status s = ledger.Record(records);
      if (s.ok()) {
        std::vector<AttemptKey> keys;
        for (const auto& e : records) keys.push_back(e.key);
        asio::post(io, [this, keys] {
          for (const AttemptKey& key : keys) Forget(key);
        });
      } else {
        log::Error("supervisor: recording " + std::to_string(records.size()) +
                   " attempt ends: " + s.message() + "; trying again");
        lock.lock();
        records.insert(records.end(), to_record.begin(), to_record.end());
        to_record.swap(records);
        next_record = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        lock.unlock();
      }
    }
    if (renew) {
      const SteadyTime sent = std::chrono::steady_clock::now();
      auto renewed = ledger.Renew(running);
      if (renewed.ok()) {
        next_renew = sent + options.lease / 3;
        asio::post(io, [this, sent, unconfirmed = std::move(unconfirmed),
                        stops = std::move(renewed).value()]() mutable {
          OnRenewed(sent, unconfirmed, std::move(stops));
        });
      } else {
        log::Error("supervisor: renewing its lease: " + renewed.message());
        next_renew = sent + std::min<Duration>(std::chrono::seconds(1), options.lease / 10);
      }
    }
    lock.lock();
  }
  lock.unlock();
  if (Status s = ledger.Release(); !s.ok()) log::Error("supervisor: " + s.message());
  asio::post(io, [this] { io.stop(); });
}

Supervisor::Supervisor(SupervisorOptions options, Ledger& ledger)
    : impl_(std::make_unique<Impl>(std::move(options), ledger)) {}

Supervisor::~Supervisor() {
  if (impl_->ledger_thread.joinable()) {
    {
      std::lock_guard lock(impl_->mu);
      impl_->ledger_stop = true;
      impl_->to_record.clear();
    }
    impl_->cv.notify_one();
    impl_->ledger_thread.join();
  }
  if (impl_->lock_fd >= 0) ::close(impl_->lock_fd);
}

Status Supervisor::Start() { return impl_->Start(); }

int Supervisor::Run() {
  // The loop may run out of work before the ledger thread has released the lease (nothing is
  // left to wait for once the acceptor is closed): the idle hook runs after both are done.
  impl_->io.run();
  if (impl_->ledger_thread.joinable()) impl_->ledger_thread.join();
  if (impl_->exiting && impl_->options.on_idle_exit) impl_->options.on_idle_exit();
  return 0;
}

}  // namespace kiln::executor
