#include "tests/web/harness.h"
#include "web/metrics_text.h"

using namespace kiln;
using namespace kiln::web;
using namespace kiln::web::testing;

namespace {

scheduler::MetricsSnapshot SampleSnapshot() {
  scheduler::MetricsSnapshot m;
  m.runs_finished = {{"failed", 2}, {"success", 40}};
  m.tasks_finished = {{"success", 7}};
  m.task_duration = scheduler::Histogram({0.5, 1});
  m.task_duration.Observe(0.25);
  m.task_duration.Observe(0.75);
  m.task_duration.Observe(3);
  m.scheduling_lag = scheduler::Histogram({0.0001});
  m.commit_latency = scheduler::Histogram({});
  m.commit_latency.Observe(0.001);
  m.pools = {{"default", {4, 1, 0}}, {"gpu \"a\\b\"\nx", {2, 2, 5}}};
  m.active_runs = 3;
  m.running_attempts = 1;
  m.leader_term = 3;
  m.attempts_adopted = 4;
  m.attempts_relaunched = 1;
  m.attempts_lost = 1;
  m.commits_failed = 2;
  m.updates_refused = 3;
  m.config_reload_ok = false;
  m.config_loaded_at_s = 1796000000;
  return m;
}

constexpr char kExpected[] =
    R"(# HELP kiln_runs_finished_total Runs that ended since the daemon started, by end state.
# TYPE kiln_runs_finished_total counter
kiln_runs_finished_total{state="failed"} 2
kiln_runs_finished_total{state="success"} 40
# HELP kiln_tasks_finished_total Tasks that ended since the daemon started, by end state.
# TYPE kiln_tasks_finished_total counter
kiln_tasks_finished_total{state="success"} 7
# HELP kiln_task_duration_seconds Wall time of task attempts.
# TYPE kiln_task_duration_seconds histogram
kiln_task_duration_seconds_bucket{le="0.5"} 1
kiln_task_duration_seconds_bucket{le="1"} 2
kiln_task_duration_seconds_bucket{le="+Inf"} 3
kiln_task_duration_seconds_sum 4
kiln_task_duration_seconds_count 3
# HELP kiln_scheduling_lag_seconds Time from a task's upstreams ending to the task starting.
# TYPE kiln_scheduling_lag_seconds histogram
kiln_scheduling_lag_seconds_bucket{le="0.0001"} 0
kiln_scheduling_lag_seconds_bucket{le="+Inf"} 0
kiln_scheduling_lag_seconds_sum 0
kiln_scheduling_lag_seconds_count 0
# HELP kiln_commit_latency_seconds Time to commit one batch of state changes.
# TYPE kiln_commit_latency_seconds histogram
kiln_commit_latency_seconds_bucket{le="+Inf"} 1
kiln_commit_latency_seconds_sum 0.001
kiln_commit_latency_seconds_count 1
# HELP kiln_pool_slots Slots of each pool.
# TYPE kiln_pool_slots gauge
kiln_pool_slots{pool="default"} 4
kiln_pool_slots{pool="gpu \"a\\b\"\nx"} 2
# HELP kiln_pool_slots_in_use Slots held by running attempts, by pool.
# TYPE kiln_pool_slots_in_use gauge
kiln_pool_slots_in_use{pool="default"} 1
kiln_pool_slots_in_use{pool="gpu \"a\\b\"\nx"} 2
# HELP kiln_pool_tasks_waiting Ready tasks waiting for slots, by pool.
# TYPE kiln_pool_tasks_waiting gauge
kiln_pool_tasks_waiting{pool="default"} 0
kiln_pool_tasks_waiting{pool="gpu \"a\\b\"\nx"} 5
# HELP kiln_active_runs Runs that have not ended.
# TYPE kiln_active_runs gauge
kiln_active_runs 3
# HELP kiln_running_attempts Task attempts running now.
# TYPE kiln_running_attempts gauge
kiln_running_attempts 1
# HELP kiln_attempts_adopted_total Running attempts taken over at a restart or from another daemon.
# TYPE kiln_attempts_adopted_total counter
kiln_attempts_adopted_total 4
# HELP kiln_attempts_relaunched_total Adopted attempts whose start was recorded but never reached their supervisor, started then as the same attempt.
# TYPE kiln_attempts_relaunched_total counter
kiln_attempts_relaunched_total 1
# HELP kiln_attempts_lost_total Attempts whose supervisor went away without recording an end.
# TYPE kiln_attempts_lost_total counter
kiln_attempts_lost_total 1
# HELP kiln_commits_failed_total Batch commits that failed and were tried again.
# TYPE kiln_commits_failed_total counter
kiln_commits_failed_total 2
# HELP kiln_updates_refused_total State changes the database fenced (moved on) or rejected (values it cannot hold).
# TYPE kiln_updates_refused_total counter
kiln_updates_refused_total 3
# HELP kiln_runs_released_total Runs let go of because another daemon drives them now (or they changed in the database and were read again).
# TYPE kiln_runs_released_total counter
kiln_runs_released_total 0
# HELP kiln_leader 1 while this daemon leads the daemons on its database.
# TYPE kiln_leader gauge
kiln_leader 1
# HELP kiln_leader_term The term this daemon leads in (-1 while another leads).
# TYPE kiln_leader_term gauge
kiln_leader_term 3
# HELP kiln_config_last_reload_successful 1 when the last read of kiln.toml applied whole; 0 when it had errors or a key was refused.
# TYPE kiln_config_last_reload_successful gauge
kiln_config_last_reload_successful 0
# HELP kiln_config_last_reload_success_timestamp_seconds When kiln.toml was last read and applied whole (at start or by a reload).
# TYPE kiln_config_last_reload_success_timestamp_seconds gauge
kiln_config_last_reload_success_timestamp_seconds 1796000000
)";

}  // namespace

TEST_CASE("metrics render in the Prometheus text format") {
  CHECK(RenderMetrics(SampleSnapshot()) == kExpected);
}

TEST_CASE("every metric is declared even before anything happened") {
  std::string text = RenderMetrics(scheduler::MetricsSnapshot{});
  for (const char* name :
       {"kiln_runs_finished_total counter", "kiln_tasks_finished_total counter",
        "kiln_task_duration_seconds histogram", "kiln_scheduling_lag_seconds histogram",
        "kiln_commit_latency_seconds histogram", "kiln_pool_slots gauge",
        "kiln_pool_slots_in_use gauge", "kiln_pool_tasks_waiting gauge", "kiln_active_runs gauge",
        "kiln_running_attempts gauge", "kiln_attempts_adopted_total counter",
        "kiln_attempts_relaunched_total counter", "kiln_attempts_lost_total counter",
        "kiln_commits_failed_total counter", "kiln_updates_refused_total counter",
        "kiln_runs_released_total counter", "kiln_config_last_reload_successful gauge",
        "kiln_config_last_reload_success_timestamp_seconds gauge"}) {
    CHECK(text.find(std::string("# TYPE ") + name + "\n") != std::string::npos);
  }
  CHECK(text.find("kiln_task_duration_seconds_bucket{le=\"0.001\"} 0\n") != std::string::npos);
  CHECK(text.find("kiln_task_duration_seconds_bucket{le=\"3600\"} 0\n") != std::string::npos);
  CHECK(text.find("kiln_commit_latency_seconds_bucket{le=\"0.0001\"} 0\n") != std::string::npos);
}

TEST_CASE("/metrics serves the snapshot, /readyz and /healthz say how the daemon is") {
  TestServer server;
  server.service.metrics = SampleSnapshot();
  auto client = server.Client();
  auto r = client->Get("/metrics", AsViewer());
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(r->body == kExpected);

  CHECK(Body(client->Get("/healthz")) == json{{"status", "ok"}});
  CHECK(Body(client->Get("/readyz", AsViewer())) == json{{"status", "ready"}});
  server.service.ready = Status::Error(ErrorCode::kUnavailable, "database: connection refused");
  auto down = client->Get("/readyz", AsViewer());
  CHECK(down->status == 503);
  CHECK(Body(down) == ErrorBody("unavailable", "database: connection refused"));
}
