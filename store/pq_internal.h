// Private to store/: the libpqxx side of Database and helpers shared by its .cc files. Nothing
// outside store/ may include this header.
#pragma once

#include <exception>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/time.h"
#include "store/database.h"

namespace kiln::store {

// Routes server notices (e.g. "relation ... already exists, skipping") to the debug log instead
// of libpqxx's default, stderr.
class NoticeToLog final : public pqxx::errorhandler {
 public:
  explicit NoticeToLog(pqxx::connection_base& conn) : pqxx::errorhandler(conn) {}
  bool operator()(const char message[]) noexcept override;
};

struct DatabaseImpl {
  explicit DatabaseImpl(const std::string& url) : conn(url), notices(conn) {}
  // Registers a statement; libpqxx prepares it on the server at first use.
  void Prepare(const std::string& name, const std::string& sql) {
    conn.prepare(name, sql);
    statements.push_back(name);
  }
  pqxx::connection conn;
  NoticeToLog notices;
  std::string redacted_url;
  std::vector<std::string> statements;  // names of the registered statements
};

// Collapses runs of whitespace (libpq messages span lines) into single spaces and trims.
std::string OneLine(std::string_view text);

// "database: <what>: <one-line message>". A lost connection maps to ErrorCode::kUnavailable.
Status DbError(std::string_view what, const std::exception& e);

// SQL expression giving a timestamptz column as epoch milliseconds (int8).
std::string EpochMs(std::string_view column);

// A timestamptz parameter ("2026-11-29T01:51:15.250Z").
std::string TimeParam(Instant t);
std::optional<std::string> TimeParam(const std::optional<Instant>& t);

Instant InstantFromMs(int64_t ms);
std::optional<Instant> OptInstant(const pqxx::field& ms);

template <typename T>
std::optional<T> Opt(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<T>();
}

// The prepared statements of store/batch_commit.cc, registered on every connection.
void RegisterBatchStatements(DatabaseImpl& impl);

}  // namespace kiln::store
