// Database's notification outbox (migration 10): queued when a run ends, a task is retried or a
// run misses its SLA; claimed, sent and finished by daemon/notifier.h.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

using json = nlohmann::json;

namespace {

int Queue(pqxx::work& txn, RunId run, std::string_view event, std::string_view subject,
          const std::vector<NotificationHook>& hooks) {
  int queued = 0;
  for (const NotificationHook& hook : hooks) {
    pqxx::result r = txn.exec_params(
        "INSERT INTO notifications (run_id, event, subject, webhook, format) VALUES ($1, $2, $3, "
        "$4, $5) ON CONFLICT DO NOTHING",
        Value(run), std::string(event), std::string(subject), hook.webhook, hook.format);
    queued += static_cast<int>(r.affected_rows());
  }
  return queued;
}

}  // namespace

Result<int> Database::QueueNotifications(RunId run, std::string_view event,
                                         std::string_view subject,
                                         const std::vector<NotificationHook>& hooks) {
  if (hooks.empty()) return 0;
  try {
    pqxx::work txn(impl_->conn, "queue_notifications");
    const int queued = Queue(txn, run, event, subject, hooks);
    txn.commit();
    return queued;
  } catch (const std::exception& e) {
    return DbError("queueing notifications of run " + ToString(run), e);
  }
}

Result<SlaScan> Database::ScanSla(const std::string& pipeline, Duration sla) {
  try {
    pqxx::nontransaction txn(impl_->conn, "scan_sla");
    const std::string interval = std::to_string(sla.count()) + " milliseconds";
    SlaScan scan;
    // One statement, so one now(): a run whose SLA falls due between two statements would be
    // neither past (the first) nor still to come (the second), and nobody would look again. The
    // runs past it come one per row; the earliest due time still to come in one more row, with
    // no id. (Not every active run: a backlog of queued runs is not sent at every look.)
    for (const pqxx::row& row : txn.exec_params(
             "WITH active AS (SELECT r.id, greatest(r.logical_date, r.created_at) + $2::interval "
             "AS due FROM runs r WHERE r.pipeline = $1 AND r.state IN ('queued', 'running') AND "
             "NOT EXISTS (SELECT FROM events e WHERE e.run_id = r.id AND e.kind = "
             "'sla_missed')) SELECT id, NULL::int8 FROM active WHERE due <= now() UNION ALL "
             "SELECT NULL, " +
                 EpochMs("min(due)") + " FROM active WHERE due > now()",
             pipeline, interval)) {
      if (row[0].is_null()) {
        scan.next = OptInstant(row[1]);
      } else {
        scan.past.push_back(RunId{row[0].as<int64_t>()});
      }
    }
    std::sort(scan.past.begin(), scan.past.end(),
              [](RunId a, RunId b) { return Value(a) < Value(b); });
    return scan;
  } catch (const std::exception& e) {
    return DbError("looking for runs of '" + pipeline + "' past their SLA", e);
  }
}

Result<bool> Database::MarkSlaMissed(RunId run, Duration sla,
                                     const std::vector<NotificationHook>& hooks) {
  const std::string what = "marking run " + ToString(run) + " past its SLA";
  try {
    pqxx::work txn(impl_->conn, "mark_sla_missed");
    LockEventOrder(txn);
    pqxx::result locked = txn.exec_prepared("kiln_lock_run", Value(run));
    if (locked.empty())
      return Status::Error(ErrorCode::kNotFound, "run " + ToString(run) + " not found");
    auto state = dag::ParseRunState(locked[0][0].c_str());
    if (!state || dag::IsTerminal(*state)) return false;
    pqxx::result marked = txn.exec_params(
        "SELECT EXISTS (SELECT FROM events WHERE run_id = $1 AND kind = 'sla_missed')", Value(run));
    if (marked[0][0].as<bool>()) return false;
    json detail = {{"sla", FormatDuration(sla)}};
    txn.exec_prepared("kiln_record_event", Value(run), "sla_missed", "kiln", detail.dump());
    Queue(txn, run, "sla_missed", "", hooks);
    txn.commit();
    return true;
  } catch (const std::exception& e) {
    return DbError(what, e);
  }
}

Result<std::vector<DueNotification>> Database::ClaimNotifications(Duration lease, int limit) {
  try {
    pqxx::work txn(impl_->conn, "claim_notifications");
    std::vector<DueNotification> out;
    pqxx::result rows = txn.exec_params(
        "UPDATE notifications n SET next_at = now() + $1::interval, tries = n.tries + 1 FROM "
        "(SELECT id FROM notifications WHERE state = 'pending' AND next_at <= now() ORDER BY "
        "next_at LIMIT $2 FOR UPDATE SKIP LOCKED) due WHERE n.id = due.id RETURNING n.id, "
        "n.run_id, n.event, n.subject, n.webhook, n.format, n.tries",
        std::to_string(lease.count()) + " milliseconds", limit);
    for (const pqxx::row& row : rows) {
      DueNotification n;
      n.id = row[0].as<int64_t>();
      n.run = RunId{row[1].as<int64_t>()};
      n.event = row[2].as<std::string>();
      n.subject = row[3].as<std::string>();
      n.webhook = row[4].as<std::string>();
      n.format = row[5].as<std::string>();
      n.tries = row[6].as<int>();
      pqxx::result run = txn.exec_params("SELECT pipeline, state, " + EpochMs("logical_date") +
                                             ", params::text FROM runs WHERE id = $1",
                                         Value(n.run));
      if (run.empty()) continue;
      n.pipeline = run[0][0].as<std::string>();
      json params = json::object();
      for (const auto& [name, value] : ParseParams(run[0][3].as<std::string>("{}"))) {
        json& slot = params[name];  // clang 14 cannot capture a binding
        std::visit([&slot](const auto& v) { slot = v; }, value);
      }
      json failed = json::array();
      for (const pqxx::row& t : txn.exec_params(
               "SELECT task_id, state, exit_code FROM task_instances WHERE run_id = $1 AND state "
               "IN ('failed', 'upstream_failed') ORDER BY position",
               Value(n.run))) {
        json task = {{"task", t[0].as<std::string>()}, {"state", t[1].as<std::string>()}};
        task["exit_code"] = t[2].is_null() ? json(nullptr) : json(t[2].as<int>());
        failed.push_back(std::move(task));
      }
      json record = {{"id", Value(n.run)},
                     {"state", run[0][1].as<std::string>()},
                     {"logical_date", FormatRfc3339(InstantFromMs(run[0][2].as<int64_t>()))},
                     {"params", std::move(params)},
                     {"failed_tasks", std::move(failed)}};
      n.run_json = record.dump(-1, ' ', false, json::error_handler_t::replace);
      out.push_back(std::move(n));
    }
    txn.commit();
    return out;
  } catch (const std::exception& e) {
    return DbError("claiming notifications", e);
  }
}

Status Database::FinishNotification(const DueNotification& n, bool delivered,
                                    std::optional<Instant> retry_at,
                                    const std::string& detail_json) {
  try {
    pqxx::work txn(impl_->conn, "finish_notification");
    LockEventOrder(txn);
    const std::string state = delivered ? "delivered" : retry_at ? "pending" : "failed";
    // Only the claim that made this try may finish it (a lease that ran out let another
    // daemon claim the row: its try counts, this one's outcome is still recorded as an event).
    txn.exec_params(
        "UPDATE notifications SET state = $2, next_at = coalesce($3::timestamptz, next_at) "
        "WHERE id = $1 AND tries = $4 AND state = 'pending'",
        n.id, state, TimeParam(retry_at), n.tries);
    txn.exec_prepared("kiln_record_event", Value(n.run), "notification", "kiln", detail_json);
    txn.commit();
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("recording a notification of run " + ToString(n.run), e);
  }
}

Result<std::vector<std::tuple<RunId, std::string, std::string>>> Database::RecentlyEndedRuns(
    Duration window) {
  try {
    pqxx::nontransaction txn(impl_->conn, "recently_ended_runs");
    std::vector<std::tuple<RunId, std::string, std::string>> out;
    for (const pqxx::row& row : txn.exec_params(
             "SELECT id, pipeline, state FROM runs WHERE ended_at > now() - $1::interval AND "
             "state IN ('success', 'failed', 'cancelled') ORDER BY ended_at",
             std::to_string(window.count()) + " milliseconds")) {
      out.emplace_back(RunId{row[0].as<int64_t>()}, row[1].as<std::string>(),
                       row[2].as<std::string>());
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading the runs that ended lately", e);
  }
}

Result<std::optional<Instant>> Database::NextNotificationDue() {
  try {
    pqxx::nontransaction txn(impl_->conn, "next_notification");
    pqxx::result r = txn.exec("SELECT " + EpochMs("min(next_at)") +
                              " FROM notifications WHERE state = 'pending'");
    return OptInstant(r[0][0]);
  } catch (const std::exception& e) {
    return DbError("reading when the next notification is due", e);
  }
}

}  // namespace kiln::store
