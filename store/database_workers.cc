// Database: remote workers (docs/design.md, "Remote workers").
//
// An attempt for a worker is an ordinary attempts row: its start is committed by the daemon that
// drives its run, then handed out (lease_owner kDispatchedOwner, with its launch), then claimed by
// a worker's supervisor (lease_owner its lease name), whose lease holds it from then on exactly as
// a daemon's own supervisor holds its attempts. So recovery, takeover, lost attempts and fencing
// need nothing of their own.
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/sha256.h"
#include "common/text.h"
#include "store/database.h"
#include "store/outcome_json.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

using json = nlohmann::json;
using scheduler::AttemptKey;

std::string KeyText(const AttemptKey& k) { return k.ToString(); }

// The largest piece of a shipped log one row holds.
constexpr size_t kMaxLogChunk = 1 << 20;

AttemptKey ReadKey(const pqxx::row& row) {
  return AttemptKey{RunId(row[0].as<int64_t>()), row[1].as<std::string>(), row[2].as<int>()};
}

Claimed ReadClaimed(const pqxx::row& row) {
  Claimed c;
  c.key = ReadKey(row);
  if (!row[3].is_null()) c.launch = pqxx::binarystring(row[3]).str();
  c.slots = row[4].as<int>();
  c.pool = row[5].as<std::string>();
  return c;
}

}  // namespace

Result<std::vector<AttemptKey>> Database::Dispatch(const std::string& from,
                                                   std::span<const store::Dispatch> attempts) {
  if (attempts.empty()) return std::vector<AttemptKey>{};
  json rows = json::array();
  for (const store::Dispatch& d : attempts) {
    rows.push_back({{"run_id", Value(d.key.run)},
                    {"task_id", SafeUtf8(d.key.task_id)},
                    {"attempt", d.key.attempt},
                    {"pool", SafeUtf8(d.pool)},
                    {"priority", d.priority},
                    {"slots", d.slots},
                    {"launch", LowerHex(d.launch)}});
  }
  try {
    pqxx::work txn(impl_->conn, "dispatch");
    std::vector<AttemptKey> out;
    std::set<std::string> pools;
    for (const pqxx::row& row : txn.exec_params(
             "WITH m AS (SELECT * FROM " +
                 JsonRows("$2",
                          "run_id int8, task_id text, attempt int, pool text, priority int, "
                          "slots int, launch text",
                          attempts.size()) +
                 " m) UPDATE attempts a "
                 "SET lease_owner = '(dispatched)', pool = m.pool, priority = m.priority, slots = "
                 "m.slots, launch = "
                 "decode(m.launch, 'hex'), dispatched_at = now() FROM m WHERE a.run_id = m.run_id "
                 "AND "
                 "a.task_id = m.task_id AND a.attempt = m.attempt AND a.state = 'running' AND "
                 "a.lease_owner = $1 RETURNING a.run_id, a.task_id, a.attempt, a.pool",
             from, rows.dump())) {
      out.push_back(ReadKey(row));
      pools.insert(row[3].as<std::string>());
    }
    if (!pools.empty()) {
      std::vector<std::string> list(pools.begin(), pools.end());
      txn.exec_params("SELECT pg_notify('kiln_dispatch', $1)", Join(list, ","));
    }
    txn.commit();
    return out;
  } catch (const std::exception& e) {
    return DbError("handing " + std::to_string(attempts.size()) + " attempts to workers", e);
  }
}

Result<bool> Database::Withdraw(const AttemptKey& key) {
  try {
    pqxx::work txn(impl_->conn, "withdraw");
    const bool unclaimed =
        !txn.exec_params(
                "UPDATE attempts SET lease_owner = '(withdrawn)', launch = NULL WHERE "
                "run_id = $1 AND task_id = $2 AND attempt = $3 AND state = 'running' AND "
                "lease_owner = '(dispatched)' RETURNING 1",
                Value(key.run), key.task_id, key.attempt)
             .empty();
    if (!unclaimed) {
      txn.exec_params(
          "UPDATE attempts SET stop_requested = true WHERE run_id = $1 AND task_id = "
          "$2 AND attempt = $3 AND state = 'running'",
          Value(key.run), key.task_id, key.attempt);
      txn.exec_params("SELECT pg_notify('kiln_kills', $1)", KeyText(key));
    }
    txn.commit();
    return unclaimed;
  } catch (const std::exception& e) {
    return DbError("taking back attempt " + KeyText(key), e);
  }
}

Status Database::SetPools(const std::string& daemon, const std::map<std::string, int>& slots) {
  json m = json::object();
  for (const auto& [name, n] : slots) m[SafeUtf8(name)] = n;
  try {
    pqxx::nontransaction txn(impl_->conn, "set_pools");
    txn.exec_params(
        "INSERT INTO pools (name, slots, updated_by) SELECT key, value::int, $1 FROM "
        "jsonb_each_text($2::jsonb) ORDER BY key ON CONFLICT (name) DO UPDATE SET slots = "
        "excluded.slots, "
        "updated_by = excluded.updated_by, updated_at = now() WHERE pools.slots <> "
        "excluded.slots",
        daemon, m.dump());
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("writing the pools' slots", e);
  }
}

Result<std::vector<Claimed>> Database::Claim(const std::string& worker,
                                             const std::string& supervisor,
                                             std::span<const std::string> pools, int slots) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  try {
    // One call (migration 14's kiln_claim), committed on its own.
    pqxx::nontransaction txn(impl_->conn, "claim");
    std::vector<Claimed> out;
    for (const pqxx::row& row :
         txn.exec_params("SELECT * FROM kiln_claim($1, $2, $3, string_to_array($4, ','), $5)",
                         worker, supervisor, SafeUtf8(host), Join(pools, ","), slots)) {
      out.push_back(ReadClaimed(row));
    }
    return out;
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() == "KL001") {
      // A supervisor whose lease has lapsed would have its claims declared lost at once; and
      // the worker's row must be this host's (another worker of the same name took it over).
      return Status::Error(ErrorCode::kConflict,
                           "worker " + worker + " claims nothing: its supervisor's lease (" +
                               supervisor +
                               ") has lapsed, or a worker of the same name on another host holds "
                               "its row");
    }
    return DbError("claiming attempts for worker " + worker, e);
  } catch (const std::exception& e) {
    return DbError("claiming attempts for worker " + worker, e);
  }
}

Result<std::vector<Claimed>> Database::ClaimedBy(const std::string& supervisor) {
  try {
    pqxx::nontransaction txn(impl_->conn, "claimed_by");
    std::vector<Claimed> out;
    for (const pqxx::row& row : txn.exec_params(
             "SELECT run_id, task_id, attempt, launch, slots, pool FROM attempts WHERE "
             "lease_owner = $1 AND state = 'running' AND outcome IS NULL AND worker IS NOT NULL "
             "ORDER BY claimed_at",
             supervisor)) {
      out.push_back(ReadClaimed(row));
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading the attempts of " + supervisor, e);
  }
}

Result<std::vector<AttemptKey>> Database::RecordWorkerEnds(
    const std::string& worker, const std::string& supervisor,
    std::span<const RecordedOutcome> outcomes) {
  if (outcomes.empty()) return std::vector<AttemptKey>{};
  json rows = json::array();
  for (const RecordedOutcome& o : outcomes) {
    rows.push_back({{"run_id", Value(o.key.run)},
                    {"task_id", SafeUtf8(o.key.task_id)},
                    {"attempt", o.key.attempt},
                    {"outcome", json::parse(OutcomeJson(o.outcome))}});
  }
  try {
    // One statement, committed on its own: the ends, their history and the daemons' notice.
    pqxx::nontransaction txn(impl_->conn, "record_worker_ends");
    std::vector<AttemptKey> refused;
    for (
        const pqxx::row& row : txn.exec_params(
            "WITH m AS (SELECT * FROM " +
                JsonRows("$3", "run_id int8, task_id text, attempt int, outcome jsonb",
                         outcomes.size()) +
                " m), u AS (UPDATE attempts a SET outcome = "
                "m.outcome, launch = NULL FROM m WHERE a.run_id = m.run_id AND a.task_id = "
                "m.task_id AND a.attempt = m.attempt AND a.state = 'running' AND a.outcome IS NULL "
                "AND a.lease_owner = $2 RETURNING a.run_id, a.task_id, a.attempt), r AS (SELECT "
                "m.run_id, m.task_id, m.attempt, u.run_id IS NOT NULL AS taken FROM m LEFT JOIN u "
                "ON u.run_id = m.run_id AND u.task_id = m.task_id AND u.attempt = m.attempt), h AS "
                "(INSERT INTO worker_history (worker, kind, run_id, task_id, attempt) SELECT $1, "
                "CASE WHEN taken THEN 'end' ELSE 'refused' END, run_id, task_id, attempt FROM r), "
                "n AS (SELECT pg_notify('kiln_outcomes', string_agg(DISTINCT run_id::text, ',')) "
                "FROM r WHERE taken HAVING count(*) > 0) SELECT run_id, task_id, attempt, taken, "
                "(SELECT count(*) FROM n) FROM r",
            worker, supervisor, rows.dump())) {
      if (!row[3].as<bool>()) refused.push_back(ReadKey(row));
    }
    return refused;
  } catch (const std::exception& e) {
    return DbError("recording " + std::to_string(outcomes.size()) + " ends of worker " + worker, e);
  }
}

Result<int64_t> Database::RenewWorker(const std::string& name, std::span<const std::string> pools,
                                      int slots, Duration lease) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  try {
    pqxx::nontransaction txn(impl_->conn, "renew_worker");
    pqxx::result rows = txn.exec_params(
        "WITH r AS (INSERT INTO daemons (name, hostname, pid, kind, daemon, expires_at, "
        "heartbeat_at, pools, slots) VALUES ($1, $2, $3::int, 'worker', $1, now() + $4::int8 * "
        "interval '1 millisecond', now(), string_to_array($5, ','), $6::int) ON CONFLICT (name) "
        "DO UPDATE SET hostname = excluded.hostname, pid = excluded.pid, kind = excluded.kind, "
        "daemon = excluded.daemon, expires_at = excluded.expires_at, heartbeat_at = "
        "excluded.heartbeat_at, pools = excluded.pools, slots = excluded.slots WHERE "
        "daemons.hostname = excluded.hostname OR daemons.expires_at < now() RETURNING term), "
        "h AS (INSERT INTO worker_history (worker, kind) SELECT $1, 'renew' FROM r) SELECT term "
        "FROM r",
        name, SafeUtf8(host), static_cast<int>(getpid()), static_cast<int64_t>(lease.count()),
        Join(pools, ","), slots);
    if (rows.empty()) {
      // Two workers of one name would keep each other's attempts alive: one of them must go.
      const std::string holder =
          txn.exec_params1("SELECT hostname FROM daemons WHERE name = $1", name)[0]
              .as<std::string>();
      return Status::Error(ErrorCode::kConflict,
                           "worker name '" + name + "' is in use by a worker on " + holder +
                               " whose lease has not expired; give this one another --name");
    }
    return rows[0][0].as<int64_t>();
  } catch (const std::exception& e) {
    return DbError("renewing the lease of worker " + name, e);
  }
}

Status Database::ShipLogs(std::span<const ShippedLog> chunks) {
  if (chunks.empty()) return Status::Ok();
  try {
    pqxx::work txn(impl_->conn, "ship_logs");
    std::set<std::string> keys;
    for (const ShippedLog& whole : chunks) {
      // Stored in pieces of at most kMaxLogChunk: a read finds the piece that holds an offset
      // in one index range (ReadShippedLog).
      for (size_t at = 0; at < whole.data.size(); at += kMaxLogChunk) {
        const ShippedLog c{whole.key, whole.offset + at, whole.data.substr(at, kMaxLogChunk)};
        txn.exec_params(
            "INSERT INTO log_chunks (run_id, task_id, attempt, \"offset\", data) SELECT $1, $2, "
            "$3, "
            "$4, $5 WHERE EXISTS (SELECT 1 FROM attempts WHERE run_id = $1 AND task_id = $2 AND "
            "attempt = $3) ON CONFLICT DO NOTHING",
            Value(c.key.run), c.key.task_id, c.key.attempt, static_cast<int64_t>(c.offset),
            pqxx::binarystring(c.data));
      }
      if (!whole.data.empty()) keys.insert(KeyText(whole.key));
    }
    for (const std::string& k : keys) txn.exec_params("SELECT pg_notify('kiln_logs', $1)", k);
    txn.commit();
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("shipping " + std::to_string(chunks.size()) + " log chunks", e);
  }
}

Result<std::pair<std::string, uint64_t>> Database::ReadShippedLog(const AttemptKey& key,
                                                                  uint64_t offset,
                                                                  size_t max_bytes) {
  try {
    pqxx::nontransaction txn(impl_->conn, "read_shipped_log");
    const auto off = static_cast<int64_t>(offset);
    // The last piece, by the primary key backwards: its end is the log's size.
    pqxx::result last = txn.exec_params(
        "SELECT \"offset\" + length(data) FROM log_chunks WHERE run_id = $1 AND task_id = $2 "
        "AND attempt = $3 ORDER BY \"offset\" DESC LIMIT 1",
        Value(key.run), key.task_id, key.attempt);
    const uint64_t size = last.empty() ? 0 : last[0][0].as<int64_t>();
    if (max_bytes == 0 || offset >= size) return std::make_pair(std::string(), size);
    std::string data;
    for (const pqxx::row& row : txn.exec_params(
             "SELECT \"offset\", data FROM log_chunks WHERE run_id = $1 AND task_id = $2 AND "
             "attempt = $3 AND \"offset\" > $4::int8 - $6::int8 AND \"offset\" < $4::int8 + "
             "$5::int8 ORDER BY "
             "\"offset\"",
             Value(key.run), key.task_id, key.attempt, off, static_cast<int64_t>(max_bytes),
             static_cast<int64_t>(kMaxLogChunk))) {
      const uint64_t at = row[0].as<int64_t>();
      const std::string bytes = pqxx::binarystring(row[1]).str();
      const uint64_t want = offset + data.size();  // the next byte wanted
      if (at > want) break;                        // a gap: what follows is not here yet
      const uint64_t skip = want - at;
      if (skip >= bytes.size()) continue;
      data.append(bytes, skip, max_bytes - data.size());
      if (data.size() >= max_bytes) break;
    }
    return std::make_pair(std::move(data), size);
  } catch (const std::exception& e) {
    return DbError("reading the log of attempt " + KeyText(key), e);
  }
}

}  // namespace kiln::store
