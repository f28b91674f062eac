// The daemon's lease, on a thread of its own with its own connections: every lease / 3 one
// statement renews the lease (and brings the cancels asked of its runs), then one looks for
// daemons whose lease expired and takes their runs over. Between renewals it LISTENs, so that a
// cancel asked through another daemon ('kiln_commands') and an end recorded by a supervisor
// ('kiln_outcomes') are acted on at once. Jobs that need the database now and then (the checks
// of attempts supervised elsewhere, retention) run on this thread after each renewal.
//
// Thread safety: Start, Wake and Stop may be called from any thread; hooks run on the keeper's
// thread (they post to the loop what touches the scheduler).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/time.h"
#include "store/database.h"
#include "store/event_listener.h"

namespace kiln::daemon {

// Whether this daemon leads the daemons on its database (docs/design.md, "Several daemons"): set
// by its lease keeper, read by whoever fires schedules. Thread-safe.
class Leadership {
 public:
  explicit Leadership(std::string holder) : holder_(std::move(holder)) {}
  const std::string& holder() const { return holder_; }
  // The fence of the term this daemon leads in; nullopt while it follows.
  std::optional<store::LeaderFence> Fence() const {
    const int64_t term = term_.load();
    if (term < 0) return std::nullopt;
    return store::LeaderFence{holder_, term};
  }
  int64_t Term() const { return term_.load(); }  // -1 while following
  // Sets the term (-1: following); true when it changed.
  bool Set(int64_t term) { return term_.exchange(term) != term; }

 private:
  const std::string holder_;
  std::atomic<int64_t> term_{-1};
};

// When the daemon's lease was last renewed, on the steady clock (which runs on while the process
// is frozen): whether no other daemon can have taken its runs yet. Set by its lease keeper; read
// before launching a start whose commit is still in flight (docs/design.md, "Launching while the
// start commits"). Thread-safe.
class LeaseClock {
 public:
  explicit LeaseClock(Duration lease) : lease_(lease) {}
  // A renewal sent at `sent` succeeded.
  void Renewed(std::chrono::steady_clock::time_point sent) {
    renewed_at_.store(sent.time_since_epoch().count(), std::memory_order_relaxed);
  }
  // The database did not answer: not held until the next renewal works.
  void Lost() { renewed_at_.store(kNever, std::memory_order_relaxed); }
  // Renewed less than lease / 2 ago, and the database answered since: another daemon cannot take
  // its runs for at least lease / 2 (a supervisor stops an unconfirmed start after lease / 3).
  // False before the first renewal.
  bool Held() const {
    const int64_t at = renewed_at_.load(std::memory_order_relaxed);
    if (at == kNever) return false;
    const auto since = std::chrono::steady_clock::now().time_since_epoch() -
                       std::chrono::steady_clock::duration(at);
    return since < lease_ / 2;
  }

 private:
  static constexpr int64_t kNever = INT64_MIN;
  const Duration lease_;
  std::atomic<int64_t> renewed_at_{kNever};
};

struct LeaseKeeperOptions {
  std::string url;
  std::string name;  // the daemon's (DaemonName) or a `kiln run`'s (ForegroundName)
  Duration lease = std::chrono::seconds(30);
  bool take_over = true;  // look for expired daemons' runs (a `kiln run` does not)
  // Set: the keeper also keeps or takes the leader lease (same holder name) at each renewal, and
  // takes runs over only while it leads. Null: it never leads (and takes over when take_over).
  std::shared_ptr<Leadership> leadership;
  // Set: told of every renewal that worked.
  std::shared_ptr<LeaseClock> clock;
};

struct LeaseKeeperHooks {
  // Active runs of this daemon whose cancel was requested.
  std::function<void(const std::vector<std::pair<RunId, std::string>>&)> on_cancels;
  // The lease's term grew: another daemon took runs of this one over while its lease had
  // expired. Which runs are still this daemon's must be read again.
  std::function<void()> on_lapsed;
  // Runs taken over from expired daemons (and `kiln run` runs ended).
  std::function<void(const store::Takeover&)> on_taken;
  // A run whose cancel was requested, and why (a notification; the run may be anyone's).
  std::function<void(RunId, const std::string&)> on_command;
  // After each renewal (and when woken), with the keeper's connection.
  std::function<void(store::Database&)> on_tick;
  // On 'kiln_outcomes' notifications: the runs whose attempts' ends were recorded elsewhere
  // (every notification that came since the last call). Unset: on_tick.
  std::function<void(store::Database&, const std::set<RunId>&)> on_outcomes;
  // The leader term changed (-1: another daemon leads now).
  std::function<void(int64_t)> on_leading;
  // A 'kiln_pipelines' notification: "pause <pipeline>" or "reload" (store::Database::SetPaused,
  // AskReload). Unset: not listened to.
  std::function<void(const std::string&)> on_pipelines;
  // Whether the last renewal worked (the database answers), each time it changes.
  std::function<void(bool)> on_health;
};

class LeaseKeeper {
 public:
  LeaseKeeper(LeaseKeeperOptions options, LeaseKeeperHooks hooks)
      : options_(std::move(options)), hooks_(std::move(hooks)) {}
  ~LeaseKeeper() { Stop(false); }
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Renews once, here (the lease must exist before this daemon creates or claims a run), then
  // starts the thread. Errors as Database::RenewLease.
  Status Start();
  // Runs on_tick soon (an attempt elsewhere is newly watched).
  void Wake();
  // From now on the keeper neither leads nor takes runs over; it gives the leader lease up at
  // once (on its thread), so that another daemon fires while this one stops.
  void StopLeading();
  // Joins the thread. With `release`, the lease row is deleted (this daemon drives nothing any
  // more); otherwise it is left to expire, and a restart under the same name takes it back.
  // Idempotent.
  void Stop(bool release);

 private:
  void Loop(std::unique_ptr<store::Database> db);
  void GiveUp(store::Database& db, bool release);
  bool Renew(store::Database& db);
  // Keeps or takes the leader lease (gives it up once StopLeading was called); false when the
  // database did not answer.
  bool Lead(store::Database& db);
  bool Resigning();  // StopLeading was called
  // Gives the leader lease up now when this daemon leads; false when the database did not answer.
  // `tell`: call on_leading (not from Stop: hooks run on the keeper's thread).
  bool Resign(store::Database& db, bool tell = true);
  // Takes the runs of expired daemons over (only while leading, when there is a leadership).
  bool TakeOver(store::Database& db);

  LeaseKeeperOptions options_;
  LeaseKeeperHooks hooks_;
  int64_t term_ = -1;
  bool healthy_ = true;
  std::mutex mu_;
  std::condition_variable wake_;
  store::Wakeup wakeup_;  // ends the thread's wait for notifications (Wake, StopLeading, Stop)
  bool stopping_ = false;
  bool release_ = false;  // Stop(true): the lease row goes
  bool woken_ = false;
  bool resign_ = false;  // StopLeading was called
  // When the leader lease was last kept: after `lease` without, this daemon no longer leads.
  std::chrono::steady_clock::time_point led_at_{};
  std::thread thread_;
};

}  // namespace kiln::daemon
