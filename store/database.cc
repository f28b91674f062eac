#include "store/database.h"

#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "common/log.h"
#include "store/migrations.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

using json = nlohmann::json;

// 'kiln_mig' as an integer: the advisory lock that serializes migrations across daemons.
constexpr int64_t kMigrationLock = 0x6b696c6e5f6d6967;

struct Redacted {
  std::string text;
  std::vector<std::string> secrets;  // the passwords found, to scrub from libpq's messages
};

// %XX escapes decoded (a broken one is kept as it is): libpq reads a URI's names and values so.
std::string PercentDecoded(std::string_view text) {
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
      out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// A secret as written and as libpq reads it (which is what its messages may show).
void AddSecret(Redacted& out, std::string_view written) {
  out.secrets.emplace_back(written);
  std::string decoded = PercentDecoded(written);
  if (decoded != written) out.secrets.push_back(std::move(decoded));
}

Redacted RedactUri(std::string_view url, size_t scheme_end) {
  Redacted out;
  size_t authority_end = url.find_first_of("/?", scheme_end);
  if (authority_end == std::string_view::npos) authority_end = url.size();
  std::string_view authority = url.substr(scheme_end, authority_end - scheme_end);
  out.text = std::string(url.substr(0, scheme_end));
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    if (size_t colon = userinfo.find(':'); colon != std::string_view::npos) {
      AddSecret(out, userinfo.substr(colon + 1));
      userinfo = userinfo.substr(0, colon + 1);
      out.text += std::string(userinfo) + "***" + std::string(authority.substr(at));
    } else {
      out.text += std::string(authority);
    }
  } else {
    out.text += std::string(authority);
  }
  std::string_view rest = url.substr(authority_end);
  size_t query = rest.find('?');
  out.text += std::string(rest.substr(0, query));
  if (query == std::string_view::npos) return out;
  out.text += '?';
  std::string_view params = rest.substr(query + 1);
  while (!params.empty()) {
    size_t amp = params.find('&');
    std::string_view param = params.substr(0, amp);
    size_t eq = param.find('=');
    // The name as libpq reads it: "pass%77ord" is "password".
    if (eq != std::string_view::npos && PercentDecoded(param.substr(0, eq)) == "password") {
      AddSecret(out, param.substr(eq + 1));
      out.text += std::string(param.substr(0, eq)) + "=***";
    } else {
      out.text += std::string(param);
    }
    if (amp == std::string_view::npos) break;
    out.text += '&';
    params = params.substr(amp + 1);
  }
  return out;
}

// Keyword form: key = value pairs separated by whitespace; a value may be single-quoted with
// backslash escapes. Malformed pieces are copied as they are.
Redacted RedactKeywords(std::string_view s) {
  Redacted out;
  size_t i = 0;
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && !is_space(s[i]) && s[i] != '=') ++i;
    std::string_view key = s.substr(start, i - start);
    while (i < s.size() && is_space(s[i])) ++i;
    if (i >= s.size() || s[i] != '=') {
      out.text += std::string(s.substr(start, i - start));
      continue;
    }
    ++i;
    while (i < s.size() && is_space(s[i])) ++i;
    size_t value_start = i;
    if (i < s.size() && s[i] == '\'') {
      for (++i; i < s.size() && s[i] != '\''; ++i) {
        if (s[i] == '\\') ++i;
      }
      if (i < s.size()) ++i;
    } else {
      while (i < s.size() && !is_space(s[i])) ++i;
    }
    std::string_view value = s.substr(value_start, i - value_start);
    if (key == "password") {
      out.secrets.emplace_back(value);
      if (value.size() >= 2 && value.front() == '\'') {
        out.secrets.emplace_back(value.substr(1, value.size() - 2));
      }
      out.text += std::string(s.substr(start, value_start - start)) + "***";
    } else {
      out.text += std::string(s.substr(start, i - start));
    }
    while (i < s.size() && is_space(s[i])) out.text += s[i++];
  }
  return out;
}

Redacted Redact(std::string_view url) {
  for (std::string_view scheme : {"postgresql://", "postgres://"}) {
    if (url.starts_with(scheme)) return RedactUri(url, scheme.size());
  }
  if (url.find('=') != std::string_view::npos) return RedactKeywords(url);
  return Redacted{std::string(url), {}};
}

std::string Scrub(std::string text, const std::vector<std::string>& secrets) {
  for (const auto& secret : secrets) {
    if (secret.size() < 2) continue;  // too short to tell apart from ordinary text
    for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3)) {
      text.replace(at, secret.size(), "***");
    }
  }
  return text;
}

json ParamsJson(const NewRun& run) {
  json params = json::array();
  for (const auto& [name, value] : run.params) {
    json v = std::visit([](const auto& x) { return json(x); }, value);
    // JSON has no NaN or infinities: keep them as text.
    if (const double* d = std::get_if<double>(&value); d && !std::isfinite(*d)) {
      v = std::isnan(*d) ? "nan" : (*d > 0 ? "inf" : "-inf");
    }
    params.push_back({{"name", name}, {"type", dag::TypeName(value)}, {"value", v}});
  }
  return params;
}

json TasksJson(const NewRun& run) {
  json tasks = json::array();
  for (const auto& task : run.tasks) {
    tasks.push_back({{"id", task.id}, {"pool", task.pool}, {"priority", task.priority}});
  }
  return tasks;
}

constexpr const char* kUpsertVersion = R"sql(
INSERT INTO pipeline_versions (pipeline, content_hash, source) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING)sql";

// One statement for the run, its tasks and its event; nothing when the run already exists.
constexpr const char* kInsertRun = R"sql(
WITH run AS (
  INSERT INTO runs (pipeline, version_hash, trigger, logical_date, data_interval_start,
                    data_interval_end, params, idempotency_key, created_by, note, triggered_by,
                    backfill_id, lease_owner)
  VALUES ($1, $2, $3, $4::timestamptz, $5::timestamptz, $6::timestamptz, $7::jsonb, $8, $9, $10,
          $13::bigint, $14::bigint, $15)
  ON CONFLICT DO NOTHING
  RETURNING id, created_at),
tasks AS (
  INSERT INTO task_instances (run_id, task_id, position, pool, priority)
  SELECT run.id, t.task->>'id', t.n - 1, t.task->>'pool', (t.task->>'priority')::int
  FROM run, jsonb_array_elements($11::jsonb) WITH ORDINALITY AS t(task, n))
INSERT INTO events (at, run_id, pipeline, kind, to_state, actor, detail)
SELECT run.created_at, run.id, $1, 'run_created', 'queued', $9, $12::jsonb FROM run
RETURNING run_id)sql";

// The run that made kInsertRun do nothing, whether it was found by the idempotency key, and
// whether its params equal $5 (compared as sets by name: the order of the array does not count).
constexpr const char* kFindExistingRun = R"sql(
SELECT id, coalesce(idempotency_key = $2, false),
       (SELECT coalesce(jsonb_object_agg(p->>'name', p), '{}')
        FROM jsonb_array_elements(params) p) =
       (SELECT coalesce(jsonb_object_agg(p->>'name', p), '{}')
        FROM jsonb_array_elements($5::jsonb) p)
FROM runs
WHERE pipeline = $1
  AND (idempotency_key = $2
       OR ($3 = 'schedule' AND trigger = 'schedule' AND logical_date = $4::timestamptz))
ORDER BY idempotency_key = $2 DESC NULLS LAST
LIMIT 1)sql";

// Event ids must become visible in id order: a reader of the event stream that has seen id N
// goes on with "id > N", so an event committed later with an id below N would never reach it.
// An identity column alone does not give that: ids are handed out when rows are inserted, but
// transactions commit in any order (T1 takes id 7, T2 takes id 8 and commits first; a reader
// sees 8, then 7 appears). So every transaction that inserts events takes this transaction-scoped
// advisory lock before its first event insert and keeps it until its commit is visible
// (PostgreSQL marks a transaction committed for new snapshots before it releases its locks).
// Event-writing transactions thus take their ids and commit one after the other, and everything
// committed later has larger ids than everything visible now. (The identity's sequence has the
// default CACHE 1, so ids are handed out in call order across sessions.)
//
// The price is that these transactions are serialized from the lock to their commit, so each
// takes it as late as it can: just before its first event insert, or, when it locks rows of
// runs or task_instances, before those row locks, in the same order as CommitBatches (which
// inserts an event in its first statement), so that the two can never deadlock.
//
// The same statement queues a notification on 'kiln_events', sent at commit (and dropped by a
// rollback), which wakes every EventListener.
std::string LockEventOrderStatement() {
  return "SELECT pg_advisory_xact_lock(" + std::to_string(kEventOrderLock) +
         "), pg_notify('kiln_events', '')";
}

}  // namespace

bool NoticeToLog::operator()(const char message[]) noexcept {
  try {
    log::Debug("database notice: " + OneLine(message));
  } catch (...) {
  }
  return false;
}

std::string RedactUrl(std::string_view url) { return Redact(url).text; }

std::string OneLine(std::string_view text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

Status DbError(std::string_view what, const std::exception& e) {
  std::string message = "database: " + std::string(what) + ": " + OneLine(e.what());
  // A lost connection, also in the middle of a commit (in doubt: the caller's retry is fenced if
  // the commit did happen).
  bool lost = dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
              dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr;
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    // 08: connection exceptions; 57P01..57P03: the server is ending the session (shutdown,
    // pg_terminate_backend, crash recovery).
    lost = lost || sql->sqlstate().starts_with("08") || sql->sqlstate().starts_with("57P0");
  }
  return Status::Error(lost ? ErrorCode::kUnavailable : ErrorCode::kInternal, message);
}

std::string JsonRows(std::string_view param, std::string_view columns, size_t rows) {
  return "(SELECT * FROM jsonb_to_recordset(" + std::string(param) + "::jsonb) AS m(" +
         std::string(columns) + ") LIMIT " + std::to_string(rows) + ")";
}

std::string EpochMs(std::string_view column) {
  return "(extract(epoch FROM " + std::string(column) + ") * 1000)::int8";
}

std::string TimeParam(Instant t) { return FormatRfc3339(t); }

std::optional<std::string> TimeParam(const std::optional<Instant>& t) {
  if (!t) return std::nullopt;
  return FormatRfc3339(*t);
}

Instant InstantFromMs(int64_t ms) { return Instant(Duration(ms)); }

std::optional<Instant> OptInstant(const pqxx::field& ms) {
  if (ms.is_null()) return std::nullopt;
  return InstantFromMs(ms.as<int64_t>());
}

Database::Database(std::unique_ptr<DatabaseImpl> impl) : impl_(std::move(impl)) {}
Database::~Database() = default;

const std::string& Database::redacted_url() const { return impl_->redacted_url; }

int Database::Socket() const {
  try {
    return impl_->conn.sock();
  } catch (...) {
    return -1;
  }
}

Status Database::SetStatementTimeout(std::chrono::milliseconds timeout) {
  try {
    impl_->conn.set_variable("statement_timeout", std::to_string(timeout.count()));
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("setting statement_timeout", e);
  }
}

Status ConnectError(const std::string& url, const std::exception& e) {
  Redacted redacted = Redact(url);
  return Status::Error(ErrorCode::kUnavailable,
                       redacted.text + ": " + Scrub(OneLine(e.what()), redacted.secrets));
}

// `url` with connect_timeout=5 unless it sets one: a server that accepts and never answers (a
// frozen one) would otherwise hold the caller forever. Over TCP, also a bound on unacknowledged
// data (tcp_user_timeout, 10 s) and keepalives (idle 10 s, every 5 s, 3 lost): a network that
// drops packets (a cut link, a machine gone) fails a call or an idle LISTEN connection within
// seconds instead of the kernel's retransmission time (about 15 minutes). libpq ignores them on
// Unix sockets. Each is added only when the URL does not set it.
std::string WithConnectTimeout(const std::string& url) {
  const std::pair<const char*, const char*> defaults[] = {{"connect_timeout", "5"},
                                                          {"tcp_user_timeout", "10000"},
                                                          {"keepalives_idle", "10"},
                                                          {"keepalives_interval", "5"},
                                                          {"keepalives_count", "3"}};
  bool uri = false;
  for (std::string_view scheme : {"postgresql://", "postgres://"})
    uri = uri || url.starts_with(scheme);
  if (!uri && url.find('=') == std::string::npos) {
    return url;  // a bare database name or empty: libpq's defaults (and PGCONNECT_TIMEOUT)
  }
  std::string out = url;
  for (const auto& [key, value] : defaults) {
    if (url.find(key) != std::string::npos) continue;
    if (uri) {
      out += (out.find('?') == std::string::npos ? "?" : "&");
    } else {
      out += ' ';
    }
    out += std::string(key) + "=" + value;
  }
  return out;
}

Result<std::unique_ptr<Database>> Database::Connect(const std::string& url) {
  try {
    auto impl = std::make_unique<DatabaseImpl>(WithConnectTimeout(url));
    impl->redacted_url = RedactUrl(url);
    impl->Prepare("kiln_upsert_version", kUpsertVersion);
    impl->Prepare("kiln_insert_run", kInsertRun);
    impl->Prepare("kiln_find_existing_run", kFindExistingRun);
    impl->Prepare("kiln_event_order", LockEventOrderStatement());
    RegisterBatchStatements(*impl);
    RegisterApiStatements(*impl);
    RegisterLeaseStatements(*impl);
    impl->Prepare("kiln_get_run", GetRunStatement());
    RegisterEventStatements(*impl);
    return std::unique_ptr<Database>(new Database(std::move(impl)));
  } catch (const std::exception& e) {
    return ConnectError(url, e);
  }
}

// On the commit path's connection, in one round trip (one each on this libpqxx connection, where
// a statement is prepared at its first use instead).
Status Database::PrepareStatements() {
  try {
    if (!impl_->pipeline.connected()) {
      impl_->pipeline.Connect(impl_->url, impl_->sql, impl_->pipeline_setup);
    }
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("preparing statements (is the schema migrated?)", e);
  }
}

Status Database::Migrate() {
  auto migrations = Migrations();
  int latest = migrations.empty() ? 0 : migrations.back().version;
  try {
    pqxx::work txn(impl_->conn, "migrate");
    // Transaction-scoped: released by the commit or the rollback, even on a lost connection.
    txn.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLock) + ")");
    if (txn.exec1("SELECT to_regclass('schema_migrations') IS NULL")[0].as<bool>()) {
      txn.exec(
          "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
          "applied_at timestamptz NOT NULL DEFAULT now())");
    }
    int current = txn.exec1("SELECT coalesce(max(version), 0) FROM schema_migrations")[0].as<int>();
    if (current > latest) {
      return Status::Error(ErrorCode::kConflict,
                           "database: schema version " + std::to_string(current) +
                               " is newer than this kiln knows (" + std::to_string(latest) +
                               "); upgrade kiln or point it at another database");
    }
    for (const Migration& m : migrations) {
      if (m.version <= current) continue;
      log::Info("database: applying migration " + std::to_string(m.version) + " (" +
                std::string(m.name) + ")");
      txn.exec(std::string(m.sql));
      txn.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                      std::string(m.name));
    }
    txn.commit();
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("migrating the schema", e);
  }
}

Result<CreatedRun> InsertRun(pqxx::transaction_base& txn, const NewRun& run) {
  const std::string params = ParamsJson(run).dump();
  json detail = {{"trigger", run.trigger}, {"tasks", run.tasks.size()}};
  // Under READ COMMITTED, ON CONFLICT DO NOTHING waits for a concurrent insert of the same
  // key to commit (or roll back) and then does nothing (or inserts): exactly one request
  // creates the run, and the read below (a new snapshot) sees it.
  pqxx::result inserted = txn.exec_prepared(
      "kiln_insert_run", run.pipeline, run.version_hash, run.trigger, TimeParam(run.logical_date),
      TimeParam(run.data_interval_start), TimeParam(run.data_interval_end), params,
      run.idempotency_key, run.created_by, run.note, TasksJson(run).dump(), detail.dump(),
      run.triggered_by ? std::optional<int64_t>(Value(*run.triggered_by)) : std::nullopt,
      run.backfill, run.lease_owner);
  if (!inserted.empty()) return CreatedRun{RunId(inserted[0][0].as<int64_t>()), false};
  pqxx::result existing =
      txn.exec_prepared("kiln_find_existing_run", run.pipeline, run.idempotency_key, run.trigger,
                        TimeParam(run.logical_date), params);
  if (existing.empty()) {
    return Status::Error(ErrorCode::kConflict, "database: creating a run of '" + run.pipeline +
                                                   "': it conflicts with an existing run");
  }
  const auto id = RunId(existing[0][0].as<int64_t>());
  if (existing[0][1].as<bool>() && !existing[0][2].as<bool>()) {
    return Status::Error(ErrorCode::kConflict, "idempotency key '" + *run.idempotency_key +
                                                   "' was already used for run " + ToString(id) +
                                                   " with other params");
  }
  return CreatedRun{id, true};
}

// NewRun::asked_by, under the event-order lock (which serializes run creation, so that two asks
// never both pass the cooldown).
Result<CreatedRun> InsertAskedRun(pqxx::transaction_base& txn, const NewRun& run) {
  const NewRun::Ask& ask = *run.asked_by;
  json detail = {{"task", ask.task}, {"pipeline", run.pipeline}};
  if (run.idempotency_key) {
    pqxx::result same =
        txn.exec_params("SELECT id FROM runs WHERE pipeline = $1 AND idempotency_key = $2",
                        run.pipeline, *run.idempotency_key);
    if (!same.empty()) return CreatedRun{RunId(same[0][0].as<int64_t>()), true};
  }
  if (ask.cooldown > Duration(0)) {
    pqxx::result recent = txn.exec_params(
        "SELECT id FROM runs WHERE pipeline = $1 AND trigger = $2 AND created_at > now() - "
        "make_interval(secs => $3::float8 / 1000) ORDER BY id DESC LIMIT 1",
        run.pipeline, run.trigger, static_cast<int64_t>(ask.cooldown.count()));
    if (!recent.empty()) {
      const auto id = RunId(recent[0][0].as<int64_t>());
      detail["recent_run"] = Value(id);
      detail["cooldown_ms"] = ask.cooldown.count();
      txn.exec_prepared("kiln_record_event", Value(ask.run), "drift_trigger_skipped",
                        run.created_by, detail.dump());
      return CreatedRun{id, true, true};
    }
  }
  auto created = InsertRun(txn, run);
  if (!created.ok()) return created;
  detail["run"] = Value(created->id);
  txn.exec_prepared("kiln_record_event", Value(ask.run), "drift_triggered", run.created_by,
                    detail.dump());
  return created;
}

Result<CreatedRun> Database::CreateRun(const NewRun& run) {
  try {
    pqxx::work txn(impl_->conn, "create_run");
    txn.exec_prepared("kiln_upsert_version", run.pipeline, run.version_hash, run.source);
    LockEventOrder(txn);
    auto created = run.asked_by ? InsertAskedRun(txn, run) : InsertRun(txn, run);
    if (created.ok()) txn.commit();
    return created;
  } catch (const std::exception& e) {
    return DbError("creating a run of '" + run.pipeline + "'", e);
  }
}

Result<std::vector<Result<CreatedRun>>> Database::CreateRuns(std::span<const NewRun* const> runs) {
  try {
    pqxx::work txn(impl_->conn, "create_runs");
    std::set<std::pair<std::string, std::string>> versions;
    for (const NewRun* run : runs) {
      if (versions.emplace(run->pipeline, run->version_hash).second) {
        txn.exec_prepared("kiln_upsert_version", run->pipeline, run->version_hash, run->source);
      }
    }
    LockEventOrder(txn);
    std::vector<Result<CreatedRun>> out;
    out.reserve(runs.size());
    for (const NewRun* run : runs) {
      out.push_back(run->asked_by ? InsertAskedRun(txn, *run) : InsertRun(txn, *run));
    }
    txn.commit();
    return out;
  } catch (const std::exception& e) {
    return DbError("creating " + std::to_string(runs.size()) + " runs", e);
  }
}

Result<bool> Database::ClaimRun(RunId run, const std::string& owner) {
  try {
    pqxx::nontransaction txn(impl_->conn, "claim_run");
    pqxx::result rows = txn.exec_params(
        "UPDATE runs SET lease_owner = $2 WHERE id = $1 AND state = 'queued' AND "
        "(lease_owner IS NULL OR lease_owner = $2) RETURNING id",
        Value(run), owner);
    return !rows.empty();
  } catch (const std::exception& e) {
    return DbError("claiming run " + ToString(run), e);
  }
}

void LockEventOrder(pqxx::transaction_base& txn) { txn.exec_prepared("kiln_event_order"); }

Status Database::Ping() {
  try {
    pqxx::nontransaction txn(impl_->conn, "ping");
    txn.exec("SELECT 1");
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("ping", e);
  }
}

}  // namespace kiln::store
