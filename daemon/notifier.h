// Notifications ([[notify]] in pipeline files and kiln.toml, [pipeline] sla): webhook POSTs about
// runs that end, tasks that are retried and runs that miss their SLA (docs/pipelines.md).
//
// Durable and at least once: what to send is queued in the database (store's notification
// outbox, one row per run, event, subject and webhook) before anything is sent; a daemon claims
// one due row at a time (a lease of 60 s, longer than a try can take, SKIP LOCKED: several
// daemons do not send one row at once), POSTs, and records each try as a 'notification' event. A
// failed try is retried after 1 s, 2 s, 4 s, ... up to `tries` tries. A SIGKILL loses nothing
// queued; a try under way when it comes is sent again after its lease (receivers can tell by the
// X-Kiln-Delivery header, the row's id).
//
// Everything runs on the notifier's own thread with its own connection: an endpoint that does
// not answer never holds the scheduler.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "common/time.h"
#include "dag/spec.h"

namespace kiln::store {
class Database;
struct DueNotification;
}  // namespace kiln::store

namespace kiln::daemon {

struct NotifyRules {
  Duration sla{0};
  std::vector<dag::NotifySpec> notify;
};

struct NotifierOptions {
  std::string database_url;
  std::string public_url;               // run links: <public_url>#/runs/<id>
  std::vector<dag::NotifySpec> global;  // kiln.toml [[notify]]
  // The current rules of a pipeline (nullopt: unknown). Called on the notifier's thread.
  std::function<std::optional<NotifyRules>(const std::string& pipeline)> rules;
  // Every pipeline with an SLA. Called on the notifier's thread.
  std::function<std::map<std::string, Duration>()> slas;
  // Secret values for webhooks (config::SecretReader).
  std::function<Result<std::string>(std::string_view name)> secret;
  int tries = 5;
  Duration first_retry = std::chrono::seconds(1);
  Duration lease = std::chrono::seconds(60);
  // At start, runs that ended this long ago or less have their ends queued again (duplicates are
  // ignored): an end is not lost to a SIGKILL between the run's commit and its queueing.
  Duration catch_up = std::chrono::hours(1);
  Duration connect_timeout = std::chrono::seconds(5);
  Duration answer_timeout = std::chrono::seconds(10);
};

class Notifier {
 public:
  explicit Notifier(NotifierOptions options);
  ~Notifier();  // Stop()
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Connects and starts the thread; it first sends what is due and looks at SLAs. `public_url`
  // replaces the options' when not empty (the daemon knows its port only once it listens).
  Status Start(const std::string& public_url = "");
  // Stops after the try under way, if any. What is queued stays queued.
  void Stop();

  // Thread-safe and cheap (queued for the thread): a run of `pipeline` ended in `state`
  // (success, failed or cancelled); a task is retried; runs were created (SLAs to watch).
  void OnRunEnded(RunId run, const std::string& pipeline, const std::string& state);
  void OnRetry(RunId run, const std::string& pipeline, const std::string& task, int attempt);
  void Touch();
  // kiln.toml reloaded: its [[notify]] tables and public_url (empty: the address the daemon
  // listens on, as at start) hold from the next event and the next try on. Thread-safe.
  void SetGlobal(std::vector<dag::NotifySpec> global, std::string public_url);

 private:
  struct Event {
    RunId run;
    std::string pipeline;
    std::string event;
    std::string subject;
  };
  void Loop();
  // Queues what happened; false (the rest kept for the next wake) when the database failed.
  bool QueueEvents(std::vector<Event> events);
  // Logs a database failure and drops the connection (made again at the next wake).
  void Failed(const Status& status);
  // Marks runs past their SLA; the earliest SLA still to come. Lowers `shortest` to the
  // shortest SLA of any pipeline.
  std::optional<Instant> CheckSlas(Duration& shortest);
  // Sends what is due; when the next delivery is due.
  std::optional<Instant> SendDue();
  struct TryResult {
    int status = 0;                          // the webhook's answer; 0 = none
    std::string error;                       // why it was not delivered
    std::vector<std::string> secret_values;  // read for this try: masked in what is written
    bool delivered() const { return status >= 200 && status < 300; }
  };
  TryResult Send(const store::DueNotification& n);
  Status Record(const store::DueNotification& n, const TryResult& t);
  std::vector<dag::NotifySpec> HooksFor(const std::string& pipeline, const std::string& event);

  NotifierOptions options_;  // its global and public_url under config_mu_ once started
  std::mutex config_mu_;
  std::string listen_url_;  // Start's: public_url when kiln.toml names none
  std::unique_ptr<store::Database> db_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
  bool touched_ = true;
  bool stopping_ = false;
  std::thread thread_;
};

// The body of one notification (exposed for tests): `format` json or slack.
std::string NotificationBody(const std::string& format, const std::string& event,
                             const std::string& pipeline, const std::string& run_json,
                             const std::string& subject, const std::string& run_url);

}  // namespace kiln::daemon
