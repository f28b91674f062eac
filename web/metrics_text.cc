#include "web/metrics_text.h"

#include <charconv>
#include <cmath>
#include <map>
#include <string_view>

namespace kiln::web {

namespace {

// Shortest text that reads back as the same double, in the style of Go's %g as the Prometheus
// client libraries write it ("0.0001", "3600", "1e-05"); Prometheus' spelling of the specials.
std::string Number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::general);
  return std::string(buf, end);
}

// Label values escape backslash, double quote and line feed.
std::string LabelValue(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void Header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

template <typename Map, typename Get>
void Labelled(std::string& out, std::string_view name, std::string_view type, std::string_view help,
              std::string_view label, const Map& values, Get get) {
  Header(out, name, type, help);
  for (const auto& [key, value] : values) {
    out.append(name).append("{").append(label).append("=\"").append(LabelValue(key));
    out.append("\"} ").append(std::to_string(get(value))).append("\n");
  }
}

void Gauge(std::string& out, std::string_view name, std::string_view help, int64_t value) {
  Header(out, name, "gauge", help);
  out.append(name).append(" ").append(std::to_string(value)).append("\n");
}

void Counter(std::string& out, std::string_view name, std::string_view help, uint64_t value) {
  Header(out, name, "counter", help);
  out.append(name).append(" ").append(std::to_string(value)).append("\n");
}

void HistogramText(std::string& out, std::string_view name, std::string_view help,
                   const scheduler::Histogram& h) {
  Header(out, name, "histogram", help);
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    out.append(name).append("_bucket{le=\"").append(Number(h.bounds()[i])).append("\"} ");
    out.append(std::to_string(h.counts()[i])).append("\n");
  }
  out.append(name).append("_bucket{le=\"+Inf\"} ").append(std::to_string(h.count())).append("\n");
  out.append(name).append("_sum ").append(Number(h.sum())).append("\n");
  out.append(name).append("_count ").append(std::to_string(h.count())).append("\n");
}

}  // namespace

std::string RenderMetrics(const scheduler::MetricsSnapshot& m) {
  std::string out;
  auto itself = [](uint64_t v) { return v; };
  Labelled(out, "kiln_runs_finished_total", "counter",
           "Runs that ended since the daemon started, by end state.", "state", m.runs_finished,
           itself);
  Labelled(out, "kiln_tasks_finished_total", "counter",
           "Tasks that ended since the daemon started, by end state.", "state", m.tasks_finished,
           itself);
  HistogramText(out, "kiln_task_duration_seconds", "Wall time of task attempts.", m.task_duration);
  HistogramText(out, "kiln_scheduling_lag_seconds",
                "Time from a task's upstreams ending to the task starting.", m.scheduling_lag);
  HistogramText(out, "kiln_commit_latency_seconds", "Time to commit one batch of state changes.",
                m.commit_latency);
  Labelled(out, "kiln_pool_slots", "gauge", "Slots of each pool.", "pool", m.pools,
           [](const scheduler::PoolFigures& p) { return p.slots; });
  Labelled(out, "kiln_pool_slots_in_use", "gauge", "Slots held by running attempts, by pool.",
           "pool", m.pools, [](const scheduler::PoolFigures& p) { return p.in_use; });
  Labelled(out, "kiln_pool_tasks_waiting", "gauge", "Ready tasks waiting for slots, by pool.",
           "pool", m.pools, [](const scheduler::PoolFigures& p) { return p.waiting; });
  Gauge(out, "kiln_active_runs", "Runs that have not ended.", static_cast<int64_t>(m.active_runs));
  Gauge(out, "kiln_running_attempts", "Task attempts running now.",
        static_cast<int64_t>(m.running_attempts));
  Counter(out, "kiln_attempts_adopted_total",
          "Running attempts taken over at a restart or from another daemon.", m.attempts_adopted);
  Counter(out, "kiln_attempts_relaunched_total",
          "Adopted attempts whose start was recorded but never reached their supervisor, "
          "started then as the same attempt.",
          m.attempts_relaunched);
  Counter(out, "kiln_attempts_lost_total",
          "Attempts whose supervisor went away without recording an end.", m.attempts_lost);
  Counter(out, "kiln_commits_failed_total", "Batch commits that failed and were tried again.",
          m.commits_failed);
  Counter(out, "kiln_updates_refused_total",
          "State changes the database fenced (moved on) or rejected (values it cannot hold).",
          m.updates_refused);
  Counter(out, "kiln_runs_released_total",
          "Runs let go of because another daemon drives them now (or they changed in the "
          "database and were read again).",
          m.runs_released);
  Gauge(out, "kiln_leader", "1 while this daemon leads the daemons on its database.",
        m.leader_term >= 0 ? 1 : 0);
  Gauge(out, "kiln_leader_term", "The term this daemon leads in (-1 while another leads).",
        m.leader_term);
  Gauge(out, "kiln_config_last_reload_successful",
        "1 when the last read of kiln.toml applied whole; 0 when it had errors or a key was "
        "refused.",
        m.config_reload_ok ? 1 : 0);
  Gauge(out, "kiln_config_last_reload_success_timestamp_seconds",
        "When kiln.toml was last read and applied whole (at start or by a reload).",
        m.config_loaded_at_s);
  return out;
}

}  // namespace kiln::web
