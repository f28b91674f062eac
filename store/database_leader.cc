// Database: the leader lease of the daemons on one database (docs/design.md, "Several daemons").
//
// One row in `leader`. Its holder fires schedules and takes over the runs of daemons whose lease
// expired; everyone else follows. Taking, keeping and growing the term is one statement, so two
// daemons that try at once are ordered by the row: one keeps or takes it, the other finds it
// live and follows. Every fire and takeover re-checks its term inside its own transaction
// (CheckLeaderFence): a leader that lost the lease while it was frozen or cut off writes nothing.
#include <algorithm>

#include "common/text.h"
#include "store/database.h"
#include "store/pq_internal.h"

namespace kiln::store {

namespace {

// $1 holder, $2 lease in ms. Keeps or takes the lease; no row while another holder's is live.
// Every SET expression reads the row as it was, so `term` and `since` compare the old holder.
constexpr const char* kLead = R"sql(
WITH took AS (
  INSERT INTO leader AS l (id, holder, term, since, expires_at)
  VALUES (true, $1, (SELECT coalesce(max(term), 0) + 1 FROM leader_terms), now(),
          now() + $2::int8 * interval '1 millisecond')
  ON CONFLICT (id) DO UPDATE
  SET term = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.term
                  ELSE l.term + 1 END,
      since = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.since
                   ELSE now() END,
      holder = excluded.holder,
      expires_at = excluded.expires_at
  WHERE l.holder = excluded.holder OR l.expires_at <= now()
  RETURNING term, holder, since
), history AS (
  INSERT INTO leader_terms (term, holder, began_at) SELECT term, holder, since FROM took
  ON CONFLICT (term) DO NOTHING
)
SELECT term FROM took)sql";

}  // namespace

Status CheckLeaderFence(pqxx::transaction_base& txn, const LeaderFence& fence) {
  // The clock now, not at the transaction's start (it may have waited for locks); FOR SHARE
  // keeps the lease from changing hands until this transaction ends.
  pqxx::result live = txn.exec_params(
      "SELECT 1 FROM leader WHERE holder = $1 AND term = $2 AND expires_at > clock_timestamp() "
      "FOR SHARE",
      fence.holder, fence.term);
  if (!live.empty()) return Status::Ok();
  return Status::Error(ErrorCode::kConflict, "'" + fence.holder + "' is not the leader (term " +
                                                 std::to_string(fence.term) +
                                                 " is over): another daemon leads");
}

Result<std::optional<int64_t>> Database::Lead(const std::string& holder, Duration lease) {
  try {
    pqxx::work txn(impl_->conn, "lead");
    // A fence held by a long transaction must not hold the renewal past the lease.
    txn.exec("SET LOCAL lock_timeout = " +
             std::to_string(std::max<int64_t>(1, static_cast<int64_t>(lease.count()) / 3)));
    pqxx::result row =
        txn.exec_params(kLead, SafeUtf8(holder), static_cast<int64_t>(lease.count()));
    txn.commit();
    if (row.empty()) return std::optional<int64_t>();
    return std::optional<int64_t>(row[0][0].as<int64_t>());
  } catch (const std::exception& e) {
    return DbError("renewing the leader lease", e);
  }
}

Status Database::ResignLead(const std::string& holder) {
  try {
    pqxx::work txn(impl_->conn, "resign_lead");
    pqxx::result row = txn.exec_params(
        "UPDATE leader SET expires_at = now() WHERE holder = $1 AND expires_at > now() "
        "RETURNING term",
        SafeUtf8(holder));
    if (!row.empty()) txn.exec_params("SELECT pg_notify('kiln_leader', $1)", SafeUtf8(holder));
    txn.commit();
    return Status::Ok();
  } catch (const std::exception& e) {
    return DbError("giving up the leader lease", e);
  }
}

Result<std::optional<LeaderState>> Database::Leader() {
  try {
    pqxx::nontransaction txn(impl_->conn, "leader");
    pqxx::result row = txn.exec("SELECT holder, term, " + EpochMs("since") + ", " +
                                EpochMs("expires_at") + ", expires_at > now() FROM leader");
    if (row.empty()) return std::optional<LeaderState>();
    LeaderState out;
    out.holder = row[0][0].as<std::string>();
    out.term = row[0][1].as<int64_t>();
    out.since = InstantFromMs(row[0][2].as<int64_t>());
    out.expires_at = InstantFromMs(row[0][3].as<int64_t>());
    out.live = row[0][4].as<bool>();
    return std::optional<LeaderState>(std::move(out));
  } catch (const std::exception& e) {
    return DbError("reading the leader lease", e);
  }
}

}  // namespace kiln::store
