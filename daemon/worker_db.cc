// The worker's database thread (daemon/worker.h): it alone talks to PostgreSQL. Each round:
// the logs that grew are shipped, the ends that came are recorded (their logs whole first),
// attempts are claimed while slots are free, and the worker's row is renewed; then it waits on
// the notifications, the logs' inotify and a wake-up descriptor at once.
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>

#include "common/crash.h"
#include "common/log.h"
#include "daemon/worker_impl.h"
#include "executor/os.h"
#include "store/event_listener.h"

namespace kiln::daemon {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using scheduler::AttemptKey;
using namespace std::chrono_literals;

namespace {

// Bytes of one log read per attempt and round: a chatty task cannot hold the others' logs back.
constexpr size_t kShipSlice = 1 << 20;
// Logs of running attempts are shipped at most this often (ends are shipped at once).
constexpr auto kShipEvery = 100ms;

// Reads up to `max` bytes of `path` from `offset`.
std::string ReadFrom(const fs::path& path, uint64_t offset, size_t max) {
  executor::os::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  struct stat st {};
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) <= offset) {
    return "";
  }
  // Sized by what is there: most logs are short, and a whole slice would be zeroed each time.
  std::string out(std::min<uint64_t>(max, static_cast<uint64_t>(st.st_size) - offset), '\0');
  const ssize_t n = ::pread(fd.get(), out.data(), out.size(), static_cast<off_t>(offset));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

Worker::Round Failed(const Status& s) {
  log::Error("worker: " + s.message());
  return s.code() == ErrorCode::kUnavailable ? Worker::Round::kLost : Worker::Round::kFailed;
}

}  // namespace

bool Worker::Watch(const fs::path& folder) {
  FolderWatch& w = folders_[folder];
  if (w.wd < 0) {
    w.wd = ::inotify_add_watch(inotify_fd_, folder.c_str(),
                               IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_ONLYDIR);
    if (w.wd < 0) {
      const int error = errno;
      folders_.erase(folder);  // tried again next round
      if (unwatchable_.insert(folder).second) {
        log::Warn("worker: cannot watch " + folder.string() + ": " +
                  executor::os::ErrnoText(error) +
                  "; its logs are shipped when their attempts end until it can");
      }
      return false;
    }
    unwatchable_.erase(folder);
  }
  ++w.follows;
  return true;
}

void Worker::Unwatch(const fs::path& folder) {
  auto it = folders_.find(folder);
  if (it == folders_.end() || --it->second.follows > 0) return;
  ::inotify_rm_watch(inotify_fd_, it->second.wd);
  folders_.erase(it);
}

// Logs first: an attempt's log is whole in the database before its end is. Running attempts'
// logs go at most every kShipEvery, all at once; those of attempts that end (and leftovers), at
// once and whole.
Worker::Round Worker::ShipLogs(store::Database& db, std::map<AttemptKey, Follow>& follows,
                               const std::set<AttemptKey>& ending) {
  alignas(inotify_event) char buf[8192];
  std::map<std::pair<int, std::string>, AttemptKey> by_name;  // (folder's watch, file name)
  for (auto& [key, f] : follows) {
    // Watched only now: what was written before made no event.
    if (!f.watched && !f.leftover && Watch(f.path.parent_path())) f.watched = f.dirty = true;
    if (f.watched) {
      by_name[{folders_[f.path.parent_path()].wd, f.path.filename().string()}] = key;
    }
  }
  std::set<int> dropped;  // watches the kernel removed (their folder was deleted)
  for (ssize_t n; (n = ::read(inotify_fd_, buf, sizeof buf)) > 0;) {
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        for (auto& [key, f] : follows) f.dirty = true;  // events were lost: look at every log
      } else if (ev->mask & IN_IGNORED) {
        dropped.insert(ev->wd);
      } else if (ev->len > 0) {
        auto it = by_name.find({ev->wd, std::string(ev->name)});
        if (it != by_name.end()) follows[it->second].dirty = true;
      }
    }
  }
  if (!dropped.empty()) {
    // Watched again from the next round, if the folder comes back; read meanwhile.
    std::erase_if(folders_, [&](const auto& w) { return dropped.count(w.second.wd) != 0; });
    for (auto& [key, f] : follows) {
      if (f.watched && folders_.count(f.path.parent_path()) == 0) {
        f.watched = false;
        f.dirty = true;
      }
    }
  }
  std::vector<store::ShippedLog> chunks;
  std::set<AttemptKey> whole;       // read to the end this round: an end, a leftover
  std::map<AttemptKey, bool> more;  // read this round: whether a full slice came (more to read)
  const bool due = std::chrono::steady_clock::now() >= ship_at_;
  for (auto& [key, f] : follows) {
    const bool all = ending.count(key) != 0 || f.leftover;
    if (!all && (!f.dirty || !due)) continue;
    if (!f.known) {
      auto shipped = db.ReadShippedLog(key, 0, 0);
      if (!shipped.ok()) return Failed(shipped.status());
      f.shipped = shipped->second;
      f.known = true;
    }
    bool full = false;
    for (uint64_t at = f.shipped;;) {
      std::string data = ReadFrom(f.path, at, kShipSlice);
      if (data.empty()) break;
      const size_t n = data.size();
      full = n == kShipSlice;
      chunks.push_back(store::ShippedLog{key, at, std::move(data)});
      at += n;
      if (!all) break;  // running: the rest next round
    }
    more[key] = full && !all;
    if (all) whole.insert(key);
  }
  if (!chunks.empty()) {
    if (Status s = db.ShipLogs(chunks); !s.ok()) return Failed(s);
  }
  bool running_shipped = false;
  for (const auto& c : chunks) {
    follows[c.key].shipped += c.data.size();
    running_shipped = running_shipped || whole.count(c.key) == 0;
  }
  for (const auto& [key, again] : more) follows[key].dirty = again;
  if (running_shipped) ship_at_ = std::chrono::steady_clock::now() + kShipEvery;
  // Leftovers are whole in the database now: their files go.
  for (auto it = follows.begin(); it != follows.end();) {
    if (it->second.leftover && whole.count(it->first) != 0) {
      if (it->second.watched) Unwatch(it->second.path.parent_path());
      ::unlink(it->second.path.c_str());
      it = follows.erase(it);
    } else {
      ++it;
    }
  }
  return Round::kOk;
}

// One round of the database thread (see the top of the file).
Worker::Round Worker::DbRound(store::Database& db, std::map<AttemptKey, Follow>& follows,
                              bool& backlog) {
  std::vector<store::RecordedOutcome> ends;
  bool draining = false;
  {
    std::lock_guard lock(mu_);
    for (NewFollow& n : follow_) {
      Follow& f = follows[n.key];
      f.path = std::move(n.path);
      f.known = n.fresh;
      // A file the worker still holds the attempt of is not left over: it may be written again.
      f.leftover = n.leftover && slots_.count(n.key) == 0;
      f.dirty = true;
    }
    follow_.clear();
    ends = ends_;  // kept until recorded
    draining = draining_;
  }
  std::set<AttemptKey> ending;
  for (const auto& e : ends) ending.insert(e.key);
  if (Round r = ShipLogs(db, follows, ending); r != Round::kOk) return r;
  if (!ends.empty()) {
    auto refused = db.RecordWorkerEnds(o_.name, supervisor_, ends);
    if (!refused.ok()) return Failed(refused.status());
    for (const AttemptKey& key : *refused) {
      log::Warn("worker: the end of attempt " + key.ToString() +
                " was not taken: it is no longer this worker's (its lease lapsed, or the task "
                "was stopped or ended elsewhere)");
    }
    std::vector<AttemptKey> keys;
    for (const auto& e : ends) {
      keys.push_back(e.key);
      auto it = follows.find(e.key);
      if (it != follows.end()) {
        if (it->second.watched) Unwatch(it->second.path.parent_path());
        // Whole in the database: the file here has done its job.
        ::unlink(it->second.path.c_str());
        follows.erase(it);
      }
    }
    {
      std::lock_guard lock(mu_);
      ends_.erase(ends_.begin(), ends_.begin() + static_cast<ptrdiff_t>(ends.size()));
      for (const AttemptKey& key : keys) {
        auto it = slots_.find(key);
        if (it == slots_.end()) continue;
        in_flight_ -= it->second;
        slots_.erase(it);
      }
    }
    asio::post(io_, [this, keys] { Acked(keys); });
    backlog = true;  // slots came free: look again
  }
  int free = 0;
  {
    std::lock_guard lock(mu_);
    free = o_.slots - in_flight_;
  }
  if (backlog && !draining && free > 0) {
    auto claimed = db.Claim(o_.name, supervisor_, o_.pools, free);
    if (!claimed.ok()) return Failed(claimed.status());
    int taken = 0;
    {
      std::lock_guard lock(mu_);
      for (const store::Claimed& c : *claimed) {
        slots_[c.key] = c.slots;
        in_flight_ += c.slots;
        taken += c.slots;
      }
    }
    // All that was free was taken: more may be waiting.
    backlog = taken >= free;
    if (!claimed->empty()) CrashPoint("worker.claimed");
    for (store::Claimed& c : *claimed) {
      asio::post(io_, [this, c = std::move(c)]() mutable { StartClaimed(std::move(c)); });
    }
  }
  return Round::kOk;
}

void Worker::OnNotifications(const std::vector<store::Notification>& notes, bool& backlog) {
  for (const store::Notification& n : notes) {
    if (n.channel == "kiln_dispatch") {
      for (size_t at = 0; at <= n.payload.size();) {
        size_t comma = n.payload.find(',', at);
        if (comma == std::string::npos) comma = n.payload.size();
        const std::string pool = n.payload.substr(at, comma - at);
        if (std::find(o_.pools.begin(), o_.pools.end(), pool) != o_.pools.end()) backlog = true;
        at = comma + 1;
      }
    } else if (n.channel == "kiln_kills") {
      asio::post(io_, [this, text = n.payload] {
        KillWhere([&](const AttemptKey& key) { return key.ToString() == text; });
      });
    } else if (n.channel == "kiln_commands") {
      const std::string run = n.payload.substr(0, n.payload.find(' '));
      asio::post(io_, [this, run] {
        KillWhere([&](const AttemptKey& key) { return ToString(key.run) == run; });
      });
    }
  }
}

void Worker::DbLoop() {
  std::unique_ptr<store::Database> db;
  std::unique_ptr<store::EventListener> listener;
  std::map<AttemptKey, Follow> follows;
  bool backlog = true;  // claim at once: attempts may be waiting
  auto next_renew = std::chrono::steady_clock::now() + o_.lease / 3;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (quit_) return;
    }
    if (!db || !listener) {
      auto d = store::Database::Connect(o_.database_url);
      auto l = store::EventListener::Connect(o_.database_url,
                                             {"kiln_dispatch", "kiln_kills", "kiln_commands"});
      auto held =
          d.ok() ? (*d)->ClaimedBy(supervisor_) : Result<std::vector<store::Claimed>>(d.status());
      if (!d.ok() || !l.ok() || !held.ok()) {
        log::Error("worker: " + (!d.ok() ? d.message() : !l.ok() ? l.message() : held.message()));
        ::poll(nullptr, 0, 1000);
        continue;
      }
      db = std::move(d).value();
      listener = std::move(l).value();
      backlog = true;  // notifications may have been missed
      for (auto& [key, f] : follows) f.known = false;
      {
        // What the database says each held attempt takes, before any claim or end of this
        // connection (adopted attempts count one slot until now).
        std::lock_guard lock(mu_);
        for (const store::Claimed& c : *held) {
          auto [it, added] = slots_.emplace(c.key, c.slots);
          in_flight_ += added ? c.slots : c.slots - it->second;
          it->second = c.slots;
        }
      }
      // Listening first, then what this worker holds: a kill missed while away is found by the
      // supervisor's renewal (stop_requested); a claim whose start never happened, here.
      asio::post(io_,
                 [this, held = std::move(held).value()]() mutable { Reconcile(std::move(held)); });
    }
    const Round round = DbRound(*db, follows, backlog);
    if (round != Round::kOk) {
      if (round == Round::kLost) db.reset();
      ::poll(nullptr, 0, round == Round::kLost ? 0 : 1000);  // a failing statement: not in a spin
      continue;
    }
    if (std::chrono::steady_clock::now() >= next_renew) {
      auto renewed = db->RenewWorker(o_.name, o_.pools, o_.slots, o_.lease);
      if (!renewed.ok()) {
        if (renewed.status().code() == ErrorCode::kConflict) {
          // Another worker of this name took its row while this one was away: two of one name
          // would keep each other's attempts alive. This one stops claiming and leaves.
          log::Error("worker: " + renewed.message() + "; stopping");
          asio::post(io_, [this] { OnSignal(); });
        }
        if (Failed(renewed.status()) == Round::kLost) db.reset();
        ::poll(nullptr, 0, 1000);
        continue;
      }
      next_renew = std::chrono::steady_clock::now() + o_.lease / 3;
    }
    bool pending = false;
    {
      std::lock_guard lock(mu_);
      pending = !ends_.empty() || !follow_.empty();
    }
    if (pending) continue;
    // Wait for a notification, a wake-up (an end, a new log, a signal) or a log that grew.
    auto until = next_renew;
    if (std::any_of(follows.begin(), follows.end(), [](const auto& f) { return f.second.dirty; })) {
      until = std::min(until, ship_at_);  // logs grew: ship them when due
    }
    const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    pollfd fds[3] = {
        {listener->Socket(), POLLIN, 0}, {wake_.fd(), POLLIN, 0}, {inotify_fd_, POLLIN, 0}};
    if (::poll(fds, 3, static_cast<int>(std::max<int64_t>(0, timeout.count()))) < 0 &&
        errno != EINTR) {
      log::Error("worker: poll: " + executor::os::ErrnoText(errno));
    }
    if (fds[1].revents & POLLIN) wake_.Clear();
    if (fds[0].revents & POLLIN) {
      auto got = listener->Wait(0ms);
      if (!got.ok()) {
        listener.reset();
        continue;
      }
      OnNotifications(listener->Take(), backlog);
    }
  }
}

}  // namespace kiln::daemon
