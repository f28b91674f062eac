#include "daemon/notifier.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/secret_mask.h"
#include "daemon/http_out.h"
#include "dag/template.h"
#include "store/database.h"

namespace kiln::daemon {

using json = nlohmann::json;

namespace {

std::string Slack(const std::string& event, const std::string& pipeline, const json& run,
                  const std::string& subject, const std::string& url) {
  const std::string id = std::to_string(run.value("id", int64_t{0}));
  std::string text = "kiln: run " + id + " of " + pipeline;
  if (event == "retry") {
    text = "kiln: task " + subject.substr(0, subject.find('#')) + " of run " + id + " (" +
           pipeline + ") failed and is retried";
  } else if (event == "sla_missed") {
    text += " missed its SLA (still " + run.value("state", std::string()) + ")";
  } else {
    text += " " + std::string(event == "success" ? "succeeded" : event);
  }
  std::string failed;
  for (const json& t : run.value("failed_tasks", json::array())) {
    failed += (failed.empty() ? "" : ", ") + t.value("task", std::string());
    if (t["exit_code"].is_number())
      failed += " (exit " + std::to_string(t["exit_code"].get<int>()) + ")";
  }
  if (!failed.empty() && event != "success") text += "; failed: " + failed;
  if (!url.empty()) text += " <" + url + "|open the run>";
  return json{{"text", text}}.dump();
}

}  // namespace

std::string NotificationBody(const std::string& format, const std::string& event,
                             const std::string& pipeline, const std::string& run_json,
                             const std::string& subject, const std::string& run_url) {
  json run = json::parse(run_json, nullptr, /*allow_exceptions=*/false);
  if (!run.is_object()) run = json::object();
  if (!run_url.empty()) run["url"] = run_url;
  if (format == "slack") return Slack(event, pipeline, run, subject, run_url);
  json body = {{"event", event}, {"pipeline", pipeline}, {"run", run}};
  if (event == "retry") {
    const size_t hash = subject.find('#');
    body["task"] = {
        {"id", subject.substr(0, hash)},
        {"attempt", hash == std::string::npos ? 0 : std::atoi(subject.c_str() + hash + 1)}};
  }
  body["sent_at"] = FormatRfc3339(NowUtc());
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

Notifier::Notifier(NotifierOptions options) : options_(std::move(options)) {}

Notifier::~Notifier() { Stop(); }

Status Notifier::Start(const std::string& public_url) {
  {
    std::lock_guard lock(config_mu_);
    listen_url_ = public_url;
    if (!public_url.empty() && options_.public_url.empty()) options_.public_url = public_url;
  }
  auto db = store::Database::Connect(options_.database_url);
  if (!db.ok()) return db.status();
  db_ = std::move(db).value();
  // An end announced while no notifier ran (the daemon was killed between the run's commit and
  // queueing) is queued now; what was queued already is left alone (one row per event).
  auto ended = db_->RecentlyEndedRuns(options_.catch_up);
  if (!ended.ok()) return ended.status();
  for (auto& [run, pipeline, state] : *ended) events_.push_back({run, pipeline, state, ""});
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void Notifier::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Notifier::OnRunEnded(RunId run, const std::string& pipeline, const std::string& state) {
  {
    std::lock_guard lock(mu_);
    events_.push_back({run, pipeline, state, ""});
  }
  cv_.notify_all();
}

void Notifier::OnRetry(RunId run, const std::string& pipeline, const std::string& task,
                       int attempt) {
  {
    std::lock_guard lock(mu_);
    events_.push_back({run, pipeline, "retry", task + "#" + std::to_string(attempt)});
  }
  cv_.notify_all();
}

void Notifier::Touch() {
  {
    std::lock_guard lock(mu_);
    touched_ = true;
  }
  cv_.notify_all();
}

// The loop: wait for an event, a touch or the next due time; queue what happened; mark runs
// past their SLA; send what is due; sleep until the earliest of the next delivery and SLA.
void Notifier::Loop() {
  std::optional<Instant> wake;
  while (true) {
    std::vector<Event> events;
    {
      std::unique_lock lock(mu_);
      auto ready = [&] { return stopping_ || touched_ || !events_.empty(); };
      if (wake) {
        const auto delay = std::max(*wake - NowUtc(), Duration(0));
        cv_.wait_for(lock, delay, ready);
      } else {
        cv_.wait(lock, ready);
      }
      if (stopping_) return;
      events.swap(events_);
      touched_ = false;
    }
    if (!db_) {
      auto db = store::Database::Connect(options_.database_url);
      if (!db.ok()) {
        log::Error("notifications: " + db.message());
        std::lock_guard lock(mu_);
        events_.insert(events_.begin(), events.begin(), events.end());
        wake = NowUtc() + std::chrono::seconds(5);
        continue;
      }
      db_ = std::move(db).value();
    }
    if (!QueueEvents(std::move(events))) {
      wake = NowUtc() + std::chrono::seconds(5);
      continue;
    }
    Duration shortest_sla = options_.lease;
    std::optional<Instant> next_sla = CheckSlas(shortest_sla);
    std::optional<Instant> next_send = db_ ? SendDue() : NowUtc() + std::chrono::seconds(5);
    wake = next_sla;
    if (next_send && (!next_sla || *next_send < *next_sla)) wake = next_send;
    // Never asleep for good: a run this daemon did not start (queued behind a pause or a limit,
    // created by another process) is looked at within the shortest SLA, so before it is due;
    // and rows another daemon queued before it died, within the lease.
    const Instant latest = NowUtc() + shortest_sla;  // the lease at most
    if (!wake || *wake > latest) wake = latest;
    // The database's clock decides what is due; a daemon clock ahead of it must not spin here.
    if (wake && *wake < NowUtc() + std::chrono::milliseconds(100)) {
      wake = NowUtc() + std::chrono::milliseconds(100);
    }
  }
}

std::vector<dag::NotifySpec> Notifier::HooksFor(const std::string& pipeline,
                                                const std::string& event) {
  std::vector<dag::NotifySpec> hooks;
  auto add = [&](const std::vector<dag::NotifySpec>& rules) {
    for (const dag::NotifySpec& n : rules) {
      if (std::find(n.on.begin(), n.on.end(), event) != n.on.end()) hooks.push_back(n);
    }
  };
  if (options_.rules) {
    if (auto rules = options_.rules(pipeline)) add(rules->notify);
  }
  std::lock_guard lock(config_mu_);
  add(options_.global);
  return hooks;
}

void Notifier::SetGlobal(std::vector<dag::NotifySpec> global, std::string public_url) {
  std::lock_guard lock(config_mu_);
  options_.global = std::move(global);
  options_.public_url = public_url.empty() ? listen_url_ : std::move(public_url);
}

void Notifier::Failed(const Status& status) {
  log::Error("notifications: " + status.message());
  db_.reset();  // connected again at the next wake: the server may have restarted
}

bool Notifier::QueueEvents(std::vector<Event> events) {
  for (size_t i = 0; i < events.size(); ++i) {
    const Event& e = events[i];
    std::vector<store::NotificationHook> hooks;
    for (const dag::NotifySpec& n : HooksFor(e.pipeline, e.event)) {
      hooks.push_back({n.webhook, n.format});
    }
    if (hooks.empty()) continue;
    auto queued = db_->QueueNotifications(e.run, e.event, e.subject, hooks);
    if (!queued.ok()) {
      Failed(queued.status());
      // Kept, in order, for the next wake (queueing twice is harmless: one row per event).
      std::lock_guard lock(mu_);
      events_.insert(events_.begin(), events.begin() + static_cast<std::ptrdiff_t>(i),
                     events.end());
      return false;
    }
  }
  return true;
}

std::optional<Instant> Notifier::CheckSlas(Duration& shortest) {
  if (!options_.slas) return std::nullopt;
  std::optional<Instant> next;
  for (const auto& [pipeline, sla] : options_.slas()) {
    shortest = std::min(shortest, sla);
    auto scan = db_->ScanSla(pipeline, sla);
    if (!scan.ok()) {
      Failed(scan.status());
      return NowUtc() + std::chrono::seconds(5);
    }
    std::vector<store::NotificationHook> hooks;
    for (const dag::NotifySpec& n : HooksFor(pipeline, "sla_missed")) {
      hooks.push_back({n.webhook, n.format});
    }
    for (RunId run : scan->past) {
      auto marked = db_->MarkSlaMissed(run, sla, hooks);
      if (!marked.ok()) {
        Failed(marked.status());
        return NowUtc() + std::chrono::seconds(5);
      } else if (*marked) {
        log::Info(pipeline + ": run " + ToString(run) + " missed its SLA of " +
                  FormatDuration(sla));
      }
    }
    if (scan->next && (!next || *scan->next < *next)) next = scan->next;
  }
  return next;
}

// One try: the webhook rendered with its secrets (read now: a rotated one is used), the POST.
Notifier::TryResult Notifier::Send(const store::DueNotification& n) {
  TryResult t;
  dag::TemplateValues values = {{"pipeline.name", n.pipeline}, {"run.id", ToString(n.run)}};
  for (std::string_view name : dag::SecretNamesIn(n.webhook)) {
    auto value =
        options_.secret ? options_.secret(name) : Result<std::string>(Status::Error("no secrets"));
    if (!value.ok()) {
      t.error = value.message();
      return t;
    }
    t.secret_values.push_back(value.value());
    values[dag::SecretRef(name)] = std::move(value).value();
  }
  auto url = dag::Render(n.webhook, values, dag::Quoting::kNone);
  if (!url.ok()) {
    t.error = url.message();
    return t;
  }
  std::string run_url;
  {
    std::lock_guard lock(config_mu_);
    if (!options_.public_url.empty()) run_url = options_.public_url + "#/runs/" + ToString(n.run);
  }
  HttpOut request;
  request.method = "POST";
  request.url = std::move(url).value();
  request.headers = {
      {"User-Agent", "kiln"}, {"X-Kiln-Delivery", std::to_string(n.id)}, {"X-Kiln-Event", n.event}};
  request.body = NotificationBody(n.format, n.event, n.pipeline, n.run_json, n.subject, run_url);
  request.connect_timeout = options_.connect_timeout;
  request.answer_timeout = options_.answer_timeout;
  const HttpAnswer answer = SendHttp(request);
  t.status = answer.status;
  t.error = answer.error;
  if (t.error.empty() && !t.delivered()) t.error = "HTTP " + std::to_string(t.status);
  return t;
}

// A try's outcome: the row and a run event, with what was read of secrets masked in the error.
Status Notifier::Record(const store::DueNotification& n, const TryResult& t) {
  std::optional<Instant> retry_at;
  if (!t.delivered() && n.tries < options_.tries) {
    retry_at = NowUtc() + options_.first_retry * (1 << std::min(n.tries - 1, 16));
  }
  const std::string error = SecretMasker(t.secret_values).MaskAll(t.error);
  json detail = {{"event", n.event},
                 {"webhook", n.webhook},
                 {"try", n.tries},
                 {"outcome", t.delivered() ? "delivered"
                             : retry_at    ? "retrying"
                                           : "gave_up"}};
  if (!n.subject.empty()) detail["subject"] = n.subject;
  if (t.status != 0) detail["status"] = t.status;
  if (!error.empty()) detail["error"] = error;
  if (retry_at) detail["retry_at"] = FormatRfc3339(*retry_at);
  if (!t.delivered()) {
    log::Warn("notification " + std::to_string(n.id) + " (" + n.event + ", run " + ToString(n.run) +
              ") try " + std::to_string(n.tries) + ": " + error +
              (retry_at ? "; trying again at " + FormatRfc3339(*retry_at) : "; given up"));
  }
  return db_->FinishNotification(n, t.delivered(), retry_at, detail.dump());
}

std::optional<Instant> Notifier::SendDue() {
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return std::nullopt;
    }
    // One at a time: each try is sent well within its own lease (5 s + 10 s of HTTP timeouts).
    auto due = db_->ClaimNotifications(options_.lease, 1);
    if (!due.ok()) {
      Failed(due.status());
      return NowUtc() + std::chrono::seconds(5);
    }
    if (due->empty()) break;
    for (const store::DueNotification& n : *due) {
      if (Status s = Record(n, Send(n)); !s.ok()) {
        Failed(s);  // the lease runs out and the row is tried again
        return NowUtc() + std::chrono::seconds(5);
      }
    }
  }
  auto next = db_->NextNotificationDue();
  if (!next.ok()) {
    Failed(next.status());
    return NowUtc() + std::chrono::seconds(5);
  }
  return *next;
}

}  // namespace kiln::daemon
