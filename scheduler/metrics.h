// Operational figures the scheduler keeps on its own thread and hands out as copies. Pure data
// (no I/O): web/ renders a snapshot in the Prometheus text format.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kiln::scheduler {

// A cumulative-bucket histogram over seconds, as Prometheus defines it.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double seconds);
  const std::vector<double>& bounds() const { return bounds_; }
  // counts()[i] = observations <= bounds()[i] (cumulative); the +Inf bucket is count().
  const std::vector<uint64_t>& counts() const { return counts_; }
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

  // 1 ms .. 1 h, for task durations.
  static Histogram ForDurations();
  // 0.1 ms .. 10 s, for scheduling lag and commit latency.
  static Histogram ForLatencies();

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  double sum_ = 0;
};

struct PoolFigures {
  int slots = 0;       // size of the pool
  int in_use = 0;      // slots held by running attempts
  size_t waiting = 0;  // ready tasks waiting for slots
};

struct MetricsSnapshot {
  std::map<std::string, uint64_t> runs_finished;         // end state -> count since start
  std::map<std::string, uint64_t> tasks_finished;        // end state -> count since start
  Histogram task_duration = Histogram::ForDurations();   // attempt wall time
  Histogram scheduling_lag = Histogram::ForLatencies();  // ready (upstream ended) -> started
  Histogram commit_latency = Histogram::ForLatencies();  // one batch commit
  std::map<std::string, PoolFigures> pools;
  uint64_t active_runs = 0;
  uint64_t running_attempts = 0;
  uint64_t attempts_adopted = 0;  // running attempts taken over from before a restart or takeover
  // Adopted attempts whose start was recorded but which never reached their supervisor, started
  // then as the same attempt.
  uint64_t attempts_relaunched = 0;
  uint64_t attempts_lost = 0;    // attempts whose supervisor was gone without a recorded end
  uint64_t commits_failed = 0;   // batch commits that failed and were tried again
  uint64_t updates_refused = 0;  // updates the store fenced or rejected
  uint64_t runs_released = 0;    // runs let go of because another daemon drives them now
  int64_t leader_term = -1;      // the term this daemon leads in; -1 while another leads
  // The last read of kiln.toml (at start, or a reload): whether it applied whole (no error in the
  // file, no key refused), and when the last one that did was, in seconds since the epoch.
  bool config_reload_ok = true;
  int64_t config_loaded_at_s = 0;
};

}  // namespace kiln::scheduler
