#include "store/pipeline.h"

#include <libpq-fe.h>

#include <pqxx/except>

namespace kiln::store {

namespace {

// A result that frees itself.
struct ResultPtr {
  explicit ResultPtr(PGresult* r) : r(r) {}
  ~ResultPtr() {
    if (r != nullptr) PQclear(r);
  }
  ResultPtr(const ResultPtr&) = delete;
  ResultPtr& operator=(const ResultPtr&) = delete;
  PGresult* r;
};

std::string ErrorOf(PGconn* conn) {
  const char* m = PQerrorMessage(conn);
  return m != nullptr ? std::string(m) : std::string("unknown error");
}

// The server's error in `r` as libpqxx reports one: message, statement, SQLSTATE.
pqxx::sql_error ErrorIn(const PGresult* r, const std::string& query) {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* message = PQresultErrorMessage(r);
  return pqxx::sql_error(message != nullptr ? message : "statement failed", query,
                         state != nullptr ? state : "");
}

ResultRows RowsOf(const PGresult* r) {
  ResultRows rows;
  const int n = PQntuples(r);
  const int cols = PQnfields(r);
  rows.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto& row = rows.emplace_back();
    row.reserve(static_cast<size_t>(cols));
    for (int c = 0; c < cols; ++c) {
      if (PQgetisnull(r, i, c)) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(
            std::string(PQgetvalue(r, i, c), static_cast<size_t>(PQgetlength(r, i, c))));
      }
    }
  }
  return rows;
}

}  // namespace

PipelineConnection::~PipelineConnection() {
  if (conn_ != nullptr) PQfinish(conn_);
}

void PipelineConnection::Fail(const std::string& what) {
  std::string message = what + ": " + ErrorOf(conn_);
  Close();
  throw pqxx::broken_connection(message);
}

void PipelineConnection::Connect(const std::string& url,
                                 const std::vector<std::pair<std::string, std::string>>& statements,
                                 const std::string& setup) {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = PQconnectdb(url.c_str());
  if (conn_ == nullptr) throw pqxx::broken_connection("out of memory");
  if (PQstatus(conn_) != CONNECTION_OK) Fail("connecting");
  try {
    if (!setup.empty()) {
      ResultPtr r(PQexec(conn_, setup.c_str()));
      if (r.r == nullptr) Fail("setting up the session");
      if (PQresultStatus(r.r) != PGRES_TUPLES_OK && PQresultStatus(r.r) != PGRES_COMMAND_OK) {
        throw ErrorIn(r.r, setup);
      }
    }
    PrepareAll(statements);
  } catch (...) {
    // Half prepared is no use: the next commit connects again.
    Close();
    throw;
  }
}

// All in one round trip: a Parse per statement, then one Sync.
void PipelineConnection::PrepareAll(
    const std::vector<std::pair<std::string, std::string>>& statements) {
  if (statements.empty()) return;
  if (PQenterPipelineMode(conn_) != 1) Fail("entering pipeline mode");
  for (const auto& [name, sql] : statements) {
    if (PQsendPrepare(conn_, name.c_str(), sql.c_str(), 0, nullptr) != 1) {
      Fail("preparing " + name);
    }
  }
  if (PQpipelineSync(conn_) != 1) Fail("sending the sync");
  std::optional<pqxx::sql_error> error;
  for (const auto& [name, sql] : statements) {
    ResultPtr r(PQgetResult(conn_));
    if (r.r == nullptr) Fail("preparing " + name);
    const ExecStatusType status = PQresultStatus(r.r);
    if (status == PGRES_FATAL_ERROR && PQstatus(conn_) == CONNECTION_BAD) Fail("preparing " + name);
    if (status == PGRES_FATAL_ERROR && !error) {
      error.emplace(ErrorIn(r.r, sql));
    } else if (status != PGRES_COMMAND_OK && status != PGRES_PIPELINE_ABORTED &&
               status != PGRES_FATAL_ERROR) {
      Fail("unexpected result preparing " + name);
    }
    ResultPtr end(PQgetResult(conn_));
    if (end.r != nullptr) Fail("preparing " + name);
  }
  ReadSync(error);
  if (PQexitPipelineMode(conn_) != 1) Fail("leaving pipeline mode");
  if (error) throw *error;
}

// Reads up to the sync's result; an error before it (of the commit itself) goes to `error` when
// that is still empty.
void PipelineConnection::ReadSync(std::optional<pqxx::sql_error>& error) {
  bool after_null = false;
  while (true) {
    ResultPtr r(PQgetResult(conn_));
    if (r.r == nullptr) {  // the end of an error's results; never two in a row
      if (after_null || PQstatus(conn_) == CONNECTION_BAD) Fail("reading the sync");
      after_null = true;
      continue;
    }
    after_null = false;
    const ExecStatusType status = PQresultStatus(r.r);
    if (status == PGRES_PIPELINE_SYNC) return;
    if (status != PGRES_FATAL_ERROR) Fail("reading the sync");
    if (PQstatus(conn_) == CONNECTION_BAD) Fail("committing");
    if (!error) error.emplace(ErrorIn(r.r, "COMMIT"));
  }
}

std::vector<ResultRows> PipelineConnection::Transaction(std::span<const Statement> statements,
                                                        const std::function<void()>& before_sync) {
  if (conn_ == nullptr) throw pqxx::broken_connection("not connected");
  // Left in pipeline mode by a failure that did not close it: its unread results would be taken
  // for this transaction's.
  if (PQpipelineStatus(conn_) != PQ_PIPELINE_OFF) Fail("a pipeline left open");
  try {
    return Run(statements, before_sync);
  } catch (const pqxx::failure&) {
    throw;
  } catch (...) {
    Close();
    throw;
  }
}

void PipelineConnection::Close() {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
}

std::vector<ResultRows> PipelineConnection::Run(std::span<const Statement> statements,
                                                const std::function<void()>& before_sync) {
  if (PQenterPipelineMode(conn_) != 1) Fail("entering pipeline mode");
  std::vector<const char*> values;
  for (const Statement& s : statements) {
    values.clear();
    for (const auto& p : s.params) values.push_back(p ? p->c_str() : nullptr);
    if (PQsendQueryPrepared(conn_, s.name, static_cast<int>(values.size()), values.data(), nullptr,
                            nullptr, 0) != 1) {
      Fail(std::string("sending ") + s.name);
    }
  }
  // Without a hook the statements and the Sync leave in one write.
  if (before_sync) {
    if (PQflush(conn_) != 0) Fail("sending statements");
    before_sync();
  }
  if (PQpipelineSync(conn_) != 1) Fail("sending the sync");
  // One result (then a null) per statement, then the sync. After a failure the server skips the
  // rest (PGRES_PIPELINE_ABORTED) up to the sync; the first error is the one to report.
  std::vector<ResultRows> out;
  out.reserve(statements.size());
  std::optional<pqxx::sql_error> error;
  for (size_t i = 0; i < statements.size(); ++i) {
    ResultPtr r(PQgetResult(conn_));
    if (r.r == nullptr) Fail("reading results");
    const ExecStatusType status = PQresultStatus(r.r);
    if (status == PGRES_FATAL_ERROR && PQstatus(conn_) == CONNECTION_BAD) Fail("reading results");
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
      out.push_back(RowsOf(r.r));
    } else if (status == PGRES_FATAL_ERROR && !error) {
      error.emplace(ErrorIn(r.r, statements[i].name));
    } else if (status != PGRES_PIPELINE_ABORTED && status != PGRES_FATAL_ERROR) {
      Fail(std::string("unexpected result of ") + statements[i].name);
    }
    // The null that ends this statement's results.
    ResultPtr end(PQgetResult(conn_));
    if (end.r != nullptr) Fail("reading results");
  }
  // Then the sync; an error of the commit itself (a deferred constraint, a serialization
  // failure) comes before it, as a statement error.
  ReadSync(error);
  if (PQexitPipelineMode(conn_) != 1) Fail("leaving pipeline mode");
  if (error) throw *error;
  return out;
}

}  // namespace kiln::store
