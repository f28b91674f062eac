// The daemon's schedule clock: one thread that sleeps until the earliest instant any pipeline
// asked to be looked at again (its next fire), or until a pipeline is touched (loaded, changed,
// unpaused, a run of it ended), and then calls the check for each such pipeline. Idle pipelines
// cost nothing: the thread is asleep until the next fire of all of them, however many there are.
// The deadline is on the wall clock (CLOCK_REALTIME), so a clock step wakes it at the right time.
// Thread-safe.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/time.h"

namespace kiln::daemon {

class FireTimer {
 public:
  // Called on the timer's thread with a pipeline and the current instant (`now()`); returns when
  // to look at it again, or nullopt for "only when touched".
  using Check = std::function<std::optional<Instant>(const std::string& name, Instant now)>;

  // `now`: the instant schedules are read at (the daemon's clock plus its clock_offset). Sleeps
  // are on the wall clock: a due instant d is waited for until wall now + (d - now()).
  FireTimer(Check check, std::function<Instant()> now)
      : check_(std::move(check)), now_(std::move(now)) {}
  ~FireTimer() { Stop(); }
  FireTimer(const FireTimer&) = delete;
  FireTimer& operator=(const FireTimer&) = delete;

  void Start();
  // Checks `name` as soon as the thread gets to it (also a pipeline not known yet).
  void Touch(const std::string& name);
  // Runs `job` on the timer's thread, before the next checks (work that may block on the
  // database and must not run on the scheduler's loop).
  // False (the job dropped) once the timer stops.
  bool Post(std::function<void()> job);
  // Forgets `name` (a deleted pipeline).
  void Forget(const std::string& name);
  // Joins the thread; a check in progress finishes first. Idempotent.
  void Stop();

  Instant Now() const { return now_(); }

 private:
  void Loop();
  // Removes `name`'s entry from due_ and next_. With mu_ held.
  void Unfile(const std::string& name);

  Check check_;
  const std::function<Instant()> now_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::multimap<Instant, std::string> due_;  // next look per pipeline, earliest first
  std::map<std::string, Instant> next_;      // the entry of each pipeline in due_
  std::set<std::string> touched_;
  std::vector<std::function<void()>> jobs_;
  std::string checking_;    // the pipeline being checked now ("" between checks)
  bool forgotten_ = false;  // it was forgotten during its check
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace kiln::daemon
