// Starts a daemon sent while their commit was in flight, until they are confirmed (by the
// daemon, a lease renewal, or the database once the daemon is gone): docs/design.md, "Launching
// while the start commits".
#include "executor/supervisor_impl.h"

namespace kiln::executor {

// The daemon went away with starts it never confirmed: the database says which were recorded
// (after any commit of that daemon still in flight). Those are confirmed and go on; the others
// are killed and forgotten (Orphan). No daemon is welcomed meanwhile.
void Supervisor::Impl::Resolve() {
  if (resolving) return;
  std::vector<AttemptKey> keys;
  for (const auto& [key, a] : attempts) {
    if (a.unconfirmed) keys.push_back(key);
  }
  if (keys.empty()) return;
  resolving = true;
  {
    std::lock_guard lock(mu);
    to_resolve = std::move(keys);
  }
  cv.notify_one();
}

void Supervisor::Impl::OnResolved(const Result<std::set<AttemptKey>>& recorded) {
  resolving = false;
  if (recorded.ok()) {
    for (const AttemptKey& key : *recorded) Confirm(key);
  } else {
    log::Error("supervisor: cannot tell which starts of the daemon that went away were recorded (" +
               recorded.message() + "): they are stopped");
  }
  Orphan();
  if (conn && !conn->welcomed) Welcome(conn);
  MaybeIdle();
}

// Starts never confirmed, of a daemon that went away, that were not recorded (or nobody can
// tell): the next owner of their runs may decide them again. They are killed (the whole group,
// at once: no task code runs after that) and forgotten without a report, so that a start of the
// same attempt is a new one. Should one be recorded after all, the next daemon finds no record
// of it here and declares the attempt lost, as for a supervisor that died.
void Supervisor::Impl::Orphan() {
  std::vector<AttemptKey> gone;
  for (auto& [key, a] : attempts) {
    if (a.unconfirmed) gone.push_back(key);
  }
  for (const AttemptKey& key : gone) {
    Attempt& a = attempts.at(key);
    if (a.running) {
      log::Warn("supervisor: stopping attempt " + key.ToString() + ": " + StopText("orphaned"));
      processes->KillNow(a.handle);
      a.confirm_timer.reset();
      a.ack_timer.reset();
      dying.emplace(a.serial, std::move(a));
    }
    Drop(key);
  }
}

// Forgets an attempt whose start was never confirmed, with its records.
void Supervisor::Impl::Drop(const AttemptKey& key) {
  journal->Forget(key);
  attempts.erase(key);
  UpdateSnapshot();
  MaybeIdle();
}

// Its daemon launches early only while its lease has at least half of its length to run
// (daemon::LeaseClock). Not confirmed after lease / 6, the database is asked at once (a lease
// renewal); after lease / 3 it is stopped, before another daemon could take its run over and
// start it again.
void Supervisor::Impl::AwaitConfirmation(const AttemptKey& key, uint64_t serial, bool checked) {
  Attempt& a = attempts.at(key);
  a.confirm_timer = std::make_unique<asio::steady_timer>(io, options.lease / 6);
  a.confirm_timer->async_wait([this, key, serial, checked](const boost::system::error_code& e) {
    auto it = attempts.find(key);
    if (e || it == attempts.end() || it->second.serial != serial) return;
    Attempt& late = it->second;
    if (!late.unconfirmed || !late.running || !late.stop_cause.empty()) return;
    if (!checked) {
      {
        std::lock_guard lock(mu);
        renew_now = true;
      }
      cv.notify_one();
      AwaitConfirmation(key, serial, /*checked=*/true);
      return;
    }
    log::Warn("supervisor: stopping attempt " + key.ToString() + ": " + StopText("unconfirmed"));
    late.stop_cause = "unconfirmed";
    processes->KillNow(late.handle);
  });
}

// Its start is recorded: from now on it is an attempt like any other.
void Supervisor::Impl::Confirm(const AttemptKey& key) {
  auto it = attempts.find(key);
  if (it == attempts.end() || !it->second.unconfirmed) return;
  Attempt& a = it->second;
  a.unconfirmed = false;
  a.confirm_timer.reset();
  UpdateSnapshot();
  if (!a.running && a.end) {
    // Its end was kept back: it goes to the daemon's acknowledgement or to the database.
    if (!conn) {
      Queue(key);
      return;
    }
    a.ack_timer = std::make_unique<asio::steady_timer>(io, options.ack_timeout);
    a.ack_timer->async_wait([this, key](const boost::system::error_code& e) {
      if (!e) Queue(key);
    });
  }
}

}  // namespace kiln::executor
