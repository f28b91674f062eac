#include "daemon/lease_keeper.h"

#include <memory>

#include "common/log.h"
#include "store/event_listener.h"

namespace kiln::daemon {

using namespace std::chrono_literals;

Status LeaseKeeper::Start() {
  auto db = store::Database::Connect(options_.url);
  if (!db.ok()) return db.status();
  const auto sent = std::chrono::steady_clock::now();
  auto renewed = (*db)->RenewLease(options_.name, "daemon", "", options_.lease);
  if (!renewed.ok()) return renewed.status();
  term_ = renewed->term;
  if (options_.clock) options_.clock->Renewed(sent);
  // Before anything is scheduled: a daemon alone on its database leads from its first check.
  if (options_.leadership && !Lead(**db)) {
    return Status::Error(ErrorCode::kUnavailable, "the leader lease could not be read");
  }
  // The thread goes on with this connection: one connection fewer to open.
  thread_ =
      std::thread([this, first = std::move(db).value()]() mutable { Loop(std::move(first)); });
  return Status::Ok();
}

void LeaseKeeper::Wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  wake_.notify_all();
  wakeup_.Notify();
}

void LeaseKeeper::StopLeading() {
  {
    std::lock_guard lock(mu_);
    resign_ = true;
    woken_ = true;
  }
  wake_.notify_all();
  wakeup_.Notify();
}

void LeaseKeeper::Stop(bool release) {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    release_ = release_ || release;
  }
  wake_.notify_all();
  wakeup_.Notify();
  if (thread_.joinable()) thread_.join();
  // What the thread could not give up on its own connection (it had none working), on a new one.
  // The leader lease goes whatever is left to the next start: another daemon fires at once.
  if (options_.leadership && options_.leadership->Term() >= 0) {
    if (auto db = store::Database::Connect(options_.url);
        !db.ok() || !Resign(**db, /*tell=*/false)) {
      options_.leadership->Set(-1);  // it expires by itself
    }
  }
  if (release && term_ >= 0) {
    if (auto db = store::Database::Connect(options_.url); db.ok()) {
      if (Status s = (*db)->ReleaseLease(options_.name); !s.ok()) log::Error(s.message());
    }
    term_ = -1;
  }
}

// One renewal: the lease, the cancels asked of this daemon's runs, a changed term, the takeover
// of expired daemons' runs. False when the database did not answer.
bool LeaseKeeper::Renew(store::Database& db) {
  const auto sent = std::chrono::steady_clock::now();
  auto renewed = db.RenewLease(options_.name, "daemon", "", options_.lease);
  if (!renewed.ok()) {
    log::Error("lease: " + renewed.message());
    return false;
  }
  if (renewed->term != term_) {
    log::Error("lease: runs of this daemon were taken over while its lease had expired");
    term_ = renewed->term;
    // Not held until the runs still its own were read again (the next renewal).
    if (options_.clock) options_.clock->Lost();
    if (hooks_.on_lapsed) hooks_.on_lapsed();
  } else if (options_.clock) {
    options_.clock->Renewed(sent);
  }
  if (!renewed->cancels.empty() && hooks_.on_cancels) hooks_.on_cancels(renewed->cancels);
  if (options_.leadership && !Lead(db)) return false;
  if (!TakeOver(db)) return false;
  if (hooks_.on_tick) hooks_.on_tick(db);
  return true;
}

bool LeaseKeeper::Resigning() {
  std::lock_guard lock(mu_);
  return resign_;
}

bool LeaseKeeper::Resign(store::Database& db, bool tell) {
  if (options_.leadership->Term() < 0) return true;
  if (Status s = db.ResignLead(options_.name); !s.ok()) {
    log::Error(s.message());
    return false;
  }
  options_.leadership->Set(-1);
  if (tell && hooks_.on_leading) hooks_.on_leading(-1);
  return true;
}

bool LeaseKeeper::Lead(store::Database& db) {
  // Stopping: the lease goes now, and is not taken again.
  if (Resigning()) return Resign(db);
  auto led = db.Lead(options_.name, options_.lease);
  if (!led.ok()) {
    log::Error("leader lease: " + led.message());
    return false;
  }
  led_at_ = std::chrono::steady_clock::now();
  const int64_t term = led->value_or(-1);
  if (!options_.leadership->Set(term)) return true;
  if (term >= 0) {
    log::Info("this daemon leads the daemons on its database (term " + std::to_string(term) +
              "): it fires the schedules and takes over the runs of daemons that stopped");
  } else {
    log::Info("another daemon leads the daemons on this database: it fires the schedules");
  }
  if (hooks_.on_leading) hooks_.on_leading(term);
  return true;
}

bool LeaseKeeper::TakeOver(store::Database& db) {
  if (!options_.take_over) return true;
  std::optional<store::LeaderFence> fence;
  if (options_.leadership) {
    fence = options_.leadership->Fence();
    if (!fence) return true;  // the leader takes runs over
  }
  auto taken = db.TakeOverRuns(options_.name, 1000, fence);
  if (!taken.ok()) {
    // The term ended since it was read: the next renewal learns who leads.
    if (taken.status().code() == ErrorCode::kConflict) return true;
    log::Error("lease: " + taken.message());
    return false;
  }
  if ((!taken->taken.empty() || !taken->cancelled.empty()) && hooks_.on_taken) {
    hooks_.on_taken(*taken);
  }
  return true;
}

// Stopping, on the thread's connection: the leader lease goes (another daemon fires at once),
// and with `release` this daemon's lease row.
void LeaseKeeper::GiveUp(store::Database& db, bool release) {
  if (options_.leadership && options_.leadership->Term() >= 0) Resign(db, /*tell=*/false);
  if (release && term_ >= 0) {
    if (Status s = db.ReleaseLease(options_.name); s.ok()) term_ = -1;
  }
}

void LeaseKeeper::Loop(std::unique_ptr<store::Database> db) {
  std::unique_ptr<store::EventListener> listener;
  auto next = std::chrono::steady_clock::now() + options_.lease / 3;
  auto health = [this](bool ok) {
    if (!ok && options_.clock) options_.clock->Lost();
    // A lease not kept for its whole length is over: another daemon may lead by now.
    if (!ok && options_.leadership && options_.leadership->Term() >= 0 &&
        std::chrono::steady_clock::now() - led_at_ > options_.lease) {
      log::Error("leader lease: not renewed for " + FormatDuration(options_.lease) +
                 "; this daemon no longer leads");
      options_.leadership->Set(-1);
      if (hooks_.on_leading) hooks_.on_leading(-1);
    }
    if (ok == healthy_) return;
    healthy_ = ok;
    if (hooks_.on_health) hooks_.on_health(ok);
  };
  while (true) {
    {
      std::unique_lock lock(mu_);
      if (stopping_) {
        const bool release = release_;
        lock.unlock();
        if (db) GiveUp(*db, release);
        return;
      }
    }
    if (!db || !listener) {
      if (!db) {
        if (auto d = store::Database::Connect(options_.url); d.ok()) db = std::move(d).value();
      }
      if (!listener) {
        std::vector<std::string> channels = {"kiln_commands", "kiln_outcomes"};
        if (options_.leadership) channels.push_back("kiln_leader");
        if (hooks_.on_pipelines) channels.push_back("kiln_pipelines");
        if (auto l = store::EventListener::Connect(options_.url, channels); l.ok()) {
          listener = std::move(l).value();
        }
      }
      if (db && listener) {
        next = std::chrono::steady_clock::now();  // renew now: notifications may have been missed
      } else {
        health(false);
        std::unique_lock lock(mu_);
        wake_.wait_for(lock, 1s, [this] { return stopping_; });
        continue;
      }
    }
    if (std::chrono::steady_clock::now() >= next) {
      const auto sent = std::chrono::steady_clock::now();
      if (Renew(*db)) {
        next = sent + options_.lease / 3;
        health(true);
      } else {
        db.reset();
        health(false);
        next = sent + std::min<Duration>(1s, options_.lease / 10);
        continue;
      }
    }
    bool woken = false;
    {
      std::lock_guard lock(mu_);
      woken = std::exchange(woken_, false);
    }
    if (woken && options_.leadership && Resigning() && !Resign(*db)) {  // StopLeading
      db.reset();
      continue;
    }
    if (woken && hooks_.on_tick) hooks_.on_tick(*db);
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        next - std::chrono::steady_clock::now());
    auto notified = listener->Wait(std::max(left, 0ms), &wakeup_);
    if (!notified.ok()) {
      listener.reset();
      continue;
    }
    bool outcomes = false;
    bool resigned = false;
    std::set<RunId> runs;
    for (const store::Notification& n : listener->Take()) {
      if (n.channel == "kiln_leader") {
        resigned |= n.payload != options_.name;
      } else if (n.channel == "kiln_pipelines") {
        hooks_.on_pipelines(n.payload);
      } else if (n.channel == "kiln_outcomes") {
        outcomes = true;
        for (size_t at = 0; at < n.payload.size();) {
          size_t comma = n.payload.find(',', at);
          if (comma == std::string::npos) comma = n.payload.size();
          try {
            runs.insert(RunId(std::stoll(n.payload.substr(at, comma - at))));
          } catch (const std::exception&) {
            log::Warn("lease: ignoring outcomes of run '" + n.payload.substr(at, comma - at) + "'");
          }
          at = comma + 1;
        }
      } else if (n.channel == "kiln_commands" && hooks_.on_command) {
        try {
          const size_t space = n.payload.find(' ');
          hooks_.on_command(
              RunId(std::stoll(n.payload.substr(0, space))),
              space == std::string::npos ? "run cancelled" : n.payload.substr(space + 1));
        } catch (const std::exception&) {
          log::Warn("lease: ignoring a command for run '" + n.payload + "'");
        }
      }
    }
    // The leader stopped: one of the others takes the lease now, not at its next renewal.
    if (resigned && options_.leadership->Term() < 0) {
      if (!Lead(*db) || !TakeOver(*db)) {
        db.reset();
        continue;
      }
    }
    if (outcomes && hooks_.on_outcomes) {
      hooks_.on_outcomes(*db, runs);
    } else if (outcomes && hooks_.on_tick) {
      hooks_.on_tick(*db);
    }
  }
}

}  // namespace kiln::daemon
