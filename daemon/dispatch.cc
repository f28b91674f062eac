#include "daemon/dispatch.h"

#include <boost/asio/post.hpp>

#include "common/log.h"
#include "executor/supervised_runner.h"
#include "executor/wire.h"

namespace kiln::daemon {

namespace asio = boost::asio;
using scheduler::AttemptKey;
using scheduler::AttemptOutcome;

Dispatcher::Dispatcher(std::string url, std::string from,
                       std::function<void(const AttemptKey&)> on_withdrawn)
    : url_(std::move(url)), from_(std::move(from)), on_withdrawn_(std::move(on_withdrawn)) {
  thread_ = std::thread([this] { Loop(); });
}

Dispatcher::~Dispatcher() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Dispatcher::Submit(store::Dispatch dispatch) {
  {
    std::lock_guard lock(mu_);
    pending_.push_back(std::move(dispatch));
  }
  wake_.notify_one();
}

void Dispatcher::Withdraw(const AttemptKey& key) {
  {
    std::lock_guard lock(mu_);
    withdraw_.push_back(key);
  }
  wake_.notify_one();
}

void Dispatcher::Loop() {
  std::unique_ptr<store::Database> db;
  std::vector<store::Dispatch> batch;
  std::vector<AttemptKey> withdraw;
  auto delay = std::chrono::milliseconds(0);
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // After a failure, wait before trying again (stopping still ends the wait).
      if (delay.count() > 0) wake_.wait_for(lock, delay, [&] { return stopping_; });
      wake_.wait(lock, [&] {
        return stopping_ || !pending_.empty() || !withdraw_.empty() || !batch.empty() ||
               !withdraw.empty();
      });
      if (stopping_) return;  // what is not handed out is lost with the daemon: see dispatch.h
      for (auto& d : pending_) batch.push_back(std::move(d));
      pending_.clear();
      withdraw.insert(withdraw.end(), withdraw_.begin(), withdraw_.end());
      withdraw_.clear();
    }
    if (!db) {
      auto connected = store::Database::Connect(url_);
      if (!connected.ok()) {
        log::Error("handing attempts to workers: " + connected.message());
        delay = std::chrono::seconds(1);
        continue;
      }
      db = std::move(connected).value();
    }
    if (!batch.empty()) {
      auto done = db->Dispatch(from_, batch);
      if (!done.ok()) {
        log::Error(done.message());
        if (done.status().code() == ErrorCode::kUnavailable) db.reset();
        delay = std::chrono::seconds(1);
        continue;
      }
      batch.clear();
    }
    while (!withdraw.empty()) {
      auto unclaimed = db->Withdraw(withdraw.back());
      if (!unclaimed.ok()) {
        log::Error(unclaimed.message());
        if (unclaimed.status().code() == ErrorCode::kUnavailable) db.reset();
        break;
      }
      if (*unclaimed) on_withdrawn_(withdraw.back());
      withdraw.pop_back();
    }
    delay = withdraw.empty() ? std::chrono::milliseconds(0) : std::chrono::milliseconds(1000);
  }
}

DispatchRunner::DispatchRunner(asio::io_context& io, scheduler::TaskRunner& local,
                               ForeignAttempts& foreign, Options options)
    : io_(io),
      local_(local),
      foreign_(foreign),
      options_(std::move(options)),
      dispatcher_(options_.url, options_.supervisor,
                  [this, &io](const AttemptKey& key) {
                    // Taken back before any worker had it: it never ran.
                    auto on_exit = foreign_.Take(key);
                    if (!on_exit) return;
                    AttemptOutcome o;
                    o.killed = true;
                    o.error = "stopped before its process started";
                    o.ended_at = NowUtc();
                    asio::post(io, [on_exit = std::move(*on_exit), o] { on_exit(o); });
                  }),
      alive_(std::make_shared<bool>(true)) {}

std::optional<store::Dispatch> DispatchRunner::Prepare(scheduler::LaunchRequest request,
                                                       std::function<void(AttemptOutcome)>& on_exit,
                                                       bool settled) {
  if (!request.mask.empty()) {
    // A launch handed out is stored in the database until a worker claims it, and a secret's
    // value is never stored.
    AttemptOutcome never;
    never.error = "pool '" + request.pool +
                  "' runs on workers, which are not sent secrets yet: run tasks that read "
                  "{{ secrets.* }} in a pool of the daemon's own ([executor] worker_pools)";
    asio::post(io_, [on_exit = std::move(on_exit), never] { on_exit(never); });
    return std::nullopt;
  }
  const AttemptKey key{request.run, request.task_id, request.attempt};
  remote_[{request.run, request.task}] = key;
  auto mark = [&](std::vector<std::string>& argv) {
    if (!argv.empty() && argv.front() == options_.kiln_exe) argv.front() = kKilnExeMark;
  };
  mark(request.argv);
  mark(request.collect_argv);
  store::Dispatch d;
  d.key = key;
  d.pool = request.pool;
  d.priority = request.priority;
  d.slots = request.slots;
  std::string frame = executor::wire::EncodeLaunch(
      executor::ToWire(std::move(request), options_.kill_grace, options_.log_cap_bytes));
  d.launch = frame.substr(4);  // the body, without the frame's length
  scheduler::AdoptRequest watch;
  watch.run = key.run;
  watch.task_id = key.task_id;
  watch.attempt = key.attempt;
  watch.supervisor = std::string(store::kDispatchedOwner);
  foreign_.Watch(watch, std::move(on_exit), settled);
  return d;
}

void DispatchRunner::Start(scheduler::LaunchRequest request,
                           std::function<void(AttemptOutcome)> on_exit) {
  if (!options_.pools.OnWorkers(request.pool)) {
    local_.Start(std::move(request), std::move(on_exit));
    return;
  }
  if (auto d = Prepare(std::move(request), on_exit, true)) dispatcher_.Submit(std::move(*d));
}

std::optional<scheduler::Handout> DispatchRunner::HandOut(
    scheduler::LaunchRequest request, std::function<void(AttemptOutcome)> on_exit) {
  const auto id = std::make_tuple(request.run, request.task, request.attempt);
  auto d = Prepare(std::move(request), on_exit, false);
  if (!d) return std::nullopt;
  unsettled_[id] = Unsettled{d->key, false};
  return scheduler::Handout{d->pool, d->priority, d->slots, std::move(d->launch)};
}

std::optional<DispatchRunner::Unsettled> DispatchRunner::TakeUnsettled(RunId run, TaskId task,
                                                                       int attempt) {
  auto it = unsettled_.find(std::make_tuple(run, task, attempt));
  if (it == unsettled_.end()) return std::nullopt;
  Unsettled u = it->second;
  unsettled_.erase(it);
  return u;
}

void DispatchRunner::StartRecorded(RunId run, TaskId task, int attempt) {
  auto u = TakeUnsettled(run, task, attempt);
  if (!u) {
    local_.StartRecorded(run, task, attempt);
    return;
  }
  foreign_.Settle(u->key);
  if (u->killed) dispatcher_.Withdraw(u->key);  // its row is there now to take back
}

void DispatchRunner::StartRefused(RunId run, TaskId task, int attempt) {
  auto u = TakeUnsettled(run, task, attempt);
  if (!u) {
    local_.StartRefused(run, task, attempt);
    return;
  }
  // No row was written: no worker can have it.
  if (auto it = remote_.find({run, task}); it != remote_.end() && it->second == u->key) {
    remote_.erase(it);
  }
  if (auto on_exit = foreign_.Take(u->key)) {
    AttemptOutcome o;
    o.killed = true;
    o.error = "its start was not recorded";
    o.ended_at = NowUtc();
    asio::post(io_, [on_exit = std::move(*on_exit), o] { on_exit(o); });
  }
}

void DispatchRunner::Adopt(const scheduler::AdoptRequest& request,
                           std::function<void(AttemptOutcome)> on_exit) {
  // Handed to workers before this daemon took the run (a restart, a takeover): kills go to the
  // dispatcher, as for attempts handed out here.
  if (request.supervisor != options_.supervisor) {
    remote_[{request.run, request.task}] =
        AttemptKey{request.run, request.task_id, request.attempt};
  }
  // Handed out here in a commit whose end this runner has not heard of (the run was read again
  // meanwhile): adopted from its row, it is settled; a kill held for it goes now.
  if (auto u = TakeUnsettled(request.run, request.task, request.attempt); u && u->killed) {
    dispatcher_.Withdraw(u->key);
  }
  local_.Adopt(request, std::move(on_exit));
}

void DispatchRunner::Kill(RunId run, TaskId task) {
  auto it = remote_.find({run, task});
  if (it == remote_.end()) {
    local_.Kill(run, task);
    return;
  }
  const auto id = std::make_tuple(run, task, it->second.attempt);
  if (auto u = unsettled_.find(id); u != unsettled_.end()) {
    u->second.killed = true;  // taken back once its commit is over
    return;
  }
  dispatcher_.Withdraw(it->second);
}

void DispatchRunner::Recorded(RunId run, TaskId task, int attempt) {
  auto it = remote_.find({run, task});
  if (it != remote_.end() && it->second.attempt == attempt) {
    remote_.erase(it);
    return;
  }
  local_.Recorded(run, task, attempt);
}

}  // namespace kiln::daemon
